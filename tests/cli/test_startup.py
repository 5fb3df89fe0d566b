"""Start-up stays light: ``--help`` and ``import visionports`` load no torch nor transformers model code, and
the families are still registered with transformers before a converted folder is loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers.models")


def _imported_modules(*args: str) -> set[str]:
    """Names of the modules a fresh ``python -X importtime ARGS`` imports (it must exit 0)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rpartition("|")[2].strip() for line in lines[1:]}  # the first line is the header


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m in HEAVY or m.startswith(tuple(f"{h}." for h in HEAVY)))


@pytest.mark.parametrize("verb", [[], ["detect"], ["convert"], ["parity"], ["train"]], ids=" ".join)
def test_help_imports_no_model_code(verb: list[str]) -> None:
    modules = _imported_modules("-m", "visionports.cli", *verb, "--help")
    assert "visionports.cli.common" in modules
    assert _heavy(modules) == []


def test_import_visionports_imports_no_model_code() -> None:
    modules = _imported_modules("-c", "import visionports")
    assert "visionports" in modules and _heavy(modules) == []


@pytest.fixture(scope="module")
def atto_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random DEIMv2 detector saved with its image processor."""
    from visionports import Deimv2Config, Deimv2ForObjectDetection
    from visionports.models.deimv2.family import make_processor

    folder = tmp_path_factory.mktemp("atto") / "model"
    config = Deimv2Config.from_preset("atto")
    Deimv2ForObjectDetection(config).save_pretrained(folder)
    make_processor(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("transformers_first", [False, True], ids=["visionports-first", "transformers-first"])
def test_import_visionports_then_auto_classes_load_a_converted_folder(
    atto_folder: Path, transformers_first: bool
) -> None:
    script = (
        ("import transformers\n" if transformers_first else "") + "import visionports\n"
        "from transformers import AutoImageProcessor, AutoModel, AutoModelForObjectDetection\n"
        f"folder = {str(atto_folder)!r}\n"
        "print(type(AutoModelForObjectDetection.from_pretrained(folder)).__name__)\n"
        "print(type(AutoModel.from_pretrained(folder)).__name__)\n"
        "print(type(AutoImageProcessor.from_pretrained(folder)).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["Deimv2ForObjectDetection", "Deimv2Model", "Deimv2ImageProcessor"]


def test_public_names_load_on_first_use() -> None:
    script = (
        "import sys, visionports\n"
        "assert 'visionports.models.deimv2' not in sys.modules\n"
        "from visionports import Deimv2Config, pack_images\n"
        "print(Deimv2Config.__module__, pack_images.__module__, 'Deimv2Config' in dir(visionports))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [
        "visionports.models.deimv2.configuration_deimv2",
        "visionports.models.packed.packing",
        "True",
    ]


def test_the_lazy_table_shows_each_verbs_own_help() -> None:
    from visionports.cli import load_all_commands, main

    script = (
        "from click.testing import CliRunner\n"
        "from visionports.cli import load_all_commands, main\n"
        "lazy = CliRunner().invoke(main, ['--help']).output\n"
        "assert not main.commands, main.commands\n"
        "load_all_commands()\n"
        "assert CliRunner().invoke(main, ['--help']).output == lazy\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    commands = load_all_commands()
    assert set(commands) == set(main.lazy_commands)
    for name, (_, _, short_help) in main.lazy_commands.items():
        assert " ".join(commands[name].help.split()).startswith(short_help), name
