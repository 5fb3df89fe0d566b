"""The README's offline quick start runs as written (output paths redirected to a temporary folder)."""

from __future__ import annotations

import shlex
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from visionports.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _offline_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("Right now, offline", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.strip().splitlines() if line.strip()]


def test_offline_quick_start(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    commands = _offline_commands()
    assert [c.split()[:2] for c in commands] == [["visionports", "convert"], ["visionports", "detect"]]
    runner = CliRunner()
    for command in commands:
        outputs = ("deimv2-atto-random", "detections")  # written into the current folder by the README
        args = [str(tmp_path / a) if a in outputs else a for a in shlex.split(command)[1:]]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    picture = tmp_path / "detections" / "golden_atto_input.png"
    assert Image.open(picture).size == (320, 320)
