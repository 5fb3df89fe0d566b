"""`--model owner/name` and pipelines on a Hub id, resolved from a local Hugging Face cache (never downloaded)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from transformers import pipeline

from golden import FIXTURES
from visionports.cli import main
from visionports.core.errors import ModelFolderError
from visionports.core.files import require_family_folder, resolve_model_folder

CHECKPOINT = FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth"
REPO = "owner/tiny-deimv2"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def converted(convert: Callable[..., Path]) -> Path:
    return convert("deimv2", CHECKPOINT)


@pytest.fixture
def hub_cache(converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache (HF_HOME / HF_HUB_CACHE, offline) holding REPO: ``models--owner--name`` layout."""
    home = tmp_path / "hf"
    cache = home / "hub"
    repo = cache / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(converted, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for name, value in (("HF_HOME", str(home)), ("HF_HUB_CACHE", str(cache)), ("HF_HUB_OFFLINE", "1")):
        monkeypatch.setenv(name, value)
    # huggingface_hub reads these once, at import: set them as a fresh process would read the environment
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(path)
    return path


def test_resolves_a_cached_hub_id_to_its_snapshot(hub_cache: Path) -> None:
    snapshot = resolve_model_folder(REPO)
    assert snapshot == hub_cache / "models--owner--tiny-deimv2" / "snapshots" / COMMIT
    folder, family = require_family_folder(REPO, "detect")
    assert folder == snapshot and family.name == "deimv2"


def test_a_local_folder_wins_and_other_paths_pass_through(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "tiny-deimv2").mkdir(parents=True)
    assert resolve_model_folder(REPO) == Path(REPO)
    assert resolve_model_folder("no/such/folder") == Path("no/such/folder")  # not an owner/name id


def test_detect_with_a_cached_hub_id(hub_cache: Path, image: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["detect", str(image), "--model", REPO, "--output", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "detections.json").read_text())
    assert set(payload["images"]) == {str(image)}


def test_pipeline_with_a_cached_hub_id(hub_cache: Path, image: Path) -> None:
    import visionports  # noqa: F401  (registers the model types with transformers)

    detector = pipeline("object-detection", model=REPO)
    detections = detector(str(image), threshold=0.0)
    assert detections and {"score", "label", "box"} <= set(detections[0])


def test_a_hub_id_not_in_the_cache_is_one_clear_error(hub_cache: Path, image: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["detect", str(image), "--model", "owner/missing", "--output", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        f"Error: --model owner/missing: not a local folder and not in the Hugging Face cache ({hub_cache}); "
        "download it with `huggingface-cli download owner/missing`"
    ]
    assert not (tmp_path / "out").exists()
    with pytest.raises(ModelFolderError, match="not in the Hugging Face cache"):
        resolve_model_folder("owner/missing")
