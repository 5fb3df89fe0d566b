"""transformers' pipelines on every device present, in every precision: ``device=`` and ``dtype=`` (or the
older ``torch_dtype=``) reach the model, and half-precision results stay finite and close to float32."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from golden import FIXTURES
from visionports.core.devices import DTYPES

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DEVICES += ["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else []
IMAGE = Image.fromarray(np.random.default_rng(3).integers(0, 256, (96, 128, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def folders(convert: Callable[..., Path]) -> dict[str, Path]:
    sam3 = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5" / "checkpoint.pt"
    return {
        "object-detection": convert("deimv2", FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth"),
        "text-prompted-segmentation": convert("sam3_lite_text", sam3, "--set", "num_attention_heads=8"),
    }


def _run(task: str, folder: Path, **kwargs) -> tuple[torch.nn.Module, list[dict]]:
    pipe = pipeline(task, model=str(folder), **kwargs)
    if task == "object-detection":
        return pipe.model, pipe(IMAGE, threshold=0.0)
    return pipe.model, pipe(IMAGE, prompts=["a cat", "a dog"], threshold=0.0)


def _scores(found: list[dict]) -> np.ndarray:
    return np.sort(np.array([f["score"] for f in found]))[::-1]


@pytest.mark.parametrize("task", ["object-detection", "text-prompted-segmentation"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_pipeline_runs_where_asked(folders: dict[str, Path], task: str, device: str, dtype: str) -> None:
    _, reference = _run(task, folders[task])
    model, found = _run(task, folders[task], device=device, dtype=DTYPES[dtype])
    weight = next(model.parameters())
    assert weight.device.type == device and weight.dtype == DTYPES[dtype]
    assert found and len(found) == len(reference)
    got, want = _scores(found), _scores(reference)
    assert np.isfinite(got).all() and all(np.isfinite(list(f["box"].values())).all() for f in found)
    bound = 0 if (device, dtype) == ("cpu", "float32") else 0.1  # random weights, ranked scores compared
    np.testing.assert_allclose(got, want, atol=bound, rtol=0)


def test_torch_dtype_keyword_still_works(folders: dict[str, Path]) -> None:
    # transformers logs its own deprecation of the older name and passes it on as dtype
    model, found = _run("object-detection", folders["object-detection"], torch_dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16 and found
