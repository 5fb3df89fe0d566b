"""Python snippets of the docs run as written, on tiny converted golden-case models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from transformers import AutoImageProcessor, AutoModel

from golden import FIXTURES
from visionports.cli import main
from visionports.models.sam3_lite_text import Sam3LiteTextTokenizer

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _snippet(page: str, heading: str) -> str:
    """The first ```python block under ``heading`` of a docs page."""
    section = (DOCS / page).read_text().split(f"\n## {heading}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def sam3_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sam3") / "model"
    case = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5"
    result = CliRunner().invoke(main, ["convert", "sam3-lite-text", str(case / "checkpoint.pt"), str(folder),
                                       "--set", "num_attention_heads=8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return folder


def test_sam3_lite_text_batches_snippet(sam3_folder: Path) -> None:
    rng = np.random.default_rng(0)
    namespace = {
        "model": AutoModel.from_pretrained(sam3_folder).eval(),
        "processor": AutoImageProcessor.from_pretrained(sam3_folder),
        "tokenizer": Sam3LiteTextTokenizer(16),
        "img_a": rng.integers(0, 256, (90, 150, 3), dtype=np.uint8),
        "img_b": rng.integers(0, 256, (60, 40, 3), dtype=np.uint8),
    }
    code = _snippet("models/sam3_lite_text.md", "Batches")
    exec(compile(code, "sam3_lite_text.md#batches", "exec"), namespace)
    results = namespace["results"]
    assert len(results) == 3
    assert (results[2]["image_index"], results[2]["prompt_index"]) == (1, 2)
    assert results[2]["masks"].shape[-2:] == (60, 40) and results[0]["masks"].shape[-2:] == (90, 150)
    assert [r["prompt"] for r in results] == ["a cat", "a dog", "a hat"]
    per_image = namespace["per_image"]
    assert len(per_image) == 2 and {f["label"] for f in per_image[1]} <= {"a hat"}
    assert {f["label"] for f in per_image[0]} <= {"a cat", "a dog"}
    assert all(f["mask"].shape == (60, 40) for f in per_image[1])


def test_safety_catching_errors_snippet(tmp_path: Path) -> None:
    original = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3" / "checkpoint.pth"
    data = bytearray(original.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(b ^ 0xFF for b in data[middle : middle + 4096])
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(data)
    namespace = {"damaged_checkpoint": damaged, "output_dir": tmp_path / "out"}
    exec(compile(_snippet("safety.md", "Catching errors"), "safety.md#catching-errors", "exec"), namespace)
    assert "fails its CRC-32 check" in namespace["message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.pth"]


def test_sam3_lite_text_use_and_text_encoder_snippets(sam3_folder: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sam3-lite-s0").symlink_to(sam3_folder, target_is_directory=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "street.jpg")
    exec(compile(_snippet("models/sam3_lite_text.md", "Use"), "sam3_lite_text.md#use", "exec"), {})
    namespace: dict = {}
    code = _snippet("models/sam3_lite_text.md", "Text encoder")
    exec(compile(code, "sam3_lite_text.md#text-encoder", "exec"), namespace)
    model = namespace["model"]
    shape = (2, model.config.text.context_length, model.config.detector["d_model"])
    assert tuple(namespace["text"].last_hidden_state.shape) == shape
