"""float16 / bfloat16 inference of the golden DEIMv2 checkpoints on CPU.

The golden checkpoints are tiny and ill-conditioned: in float32, merely rounding the input pixels to
float16 reorders the top-k queries and moves single boxes by up to 1.0. So outputs are compared per encoder
token (the queries both runs selected), by the median error over those queries, not per-query maxima:

* boxes: median |delta| <= 5e-3 (float16) / 2.5e-2 (bfloat16) normalised. Measured 2e-4..1.5e-3 and
  2e-3..1.2e-2; float32 on pixels rounded to the dtype alone gives 1e-4..3e-4 and 8e-4..1.5e-3.
* scores (sigmoid, every class): median |delta| <= 1e-2 / 5e-2 (measured up to 5e-3 / 3.3e-2); the
  best score within 1e-2 / 2e-2.
* labels: the arg-max class agrees on the queries whose float32 top-2 logit margin exceeds 0.5 (float16) /
  2.0 (bfloat16; its logits move by up to 2.7, by 1.7 on a query with a flipped label).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from golden import FIXTURES
from visionports.core.conversion import convert_checkpoint
from visionports.core.registry import get_family

CASES = {
    "atto": FIXTURES / "deimv2" / "atto_s0_b1_320",
    "dinov3_s": FIXTURES / "deimv2" / "dinov3_s_tiny_s0_b1_256",
}
TOLERANCES = {  # dtype: (box median, score median, best score)
    torch.float16: (5e-3, 1e-2, 1e-2),
    torch.bfloat16: (2.5e-2, 5e-2, 2e-2),
}
LABEL_MARGINS = {torch.float16: 0.5, torch.bfloat16: 2.0}
CALLS = 4


def _run(case: Path, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """float32 outputs, then ``CALLS`` identical calls of the model cast to ``dtype``."""
    model = convert_checkpoint(
        get_family("deimv2"), case / "checkpoint.pth", None, progress=False
    ).model.eval()
    pixels = load_file(str(case / "inputs.safetensors"))["pixel_values"]
    keys = ("logits", "pred_boxes", "enc_topk_indices")
    with torch.no_grad():
        reference = model(pixels)
        model.to(dtype)
        runs = [model(pixels.to(dtype)) for _ in range(CALLS)]
    return {k: reference[k] for k in keys}, [{k: r[k] for k in keys} for r in runs]


@pytest.fixture(
    scope="module", params=[(c, d) for c in CASES for d in TOLERANCES], ids=lambda p: f"{p[0]}-{p[1]}"
)
def half_run(request: pytest.FixtureRequest) -> tuple[torch.dtype, dict, list[dict]]:
    name, dtype = request.param
    return (dtype, *_run(CASES[name], dtype))


def _matched(
    half: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices into each run's queries of the encoder tokens both selected (batch 0)."""
    position = {t: i for i, t in enumerate(half["enc_topk_indices"][0].tolist())}
    pairs = [(position[t], j) for j, t in enumerate(ref["enc_topk_indices"][0].tolist()) if t in position]
    assert len(pairs) >= 0.9 * ref["enc_topk_indices"].shape[1]
    return torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


def test_outputs_are_finite_and_repeatable(half_run: tuple) -> None:
    dtype, _, runs = half_run
    for run in runs:
        assert run["logits"].dtype == dtype and run["pred_boxes"].dtype == dtype
        assert torch.isfinite(run["logits"]).all() and torch.isfinite(run["pred_boxes"]).all()
    for run in runs[1:]:
        assert all(torch.equal(run[k], runs[0][k]) for k in run)


def test_outputs_are_close_to_float32(half_run: tuple) -> None:
    dtype, ref, runs = half_run
    box_tol, score_tol, best_tol = TOLERANCES[dtype]
    mine, theirs = _matched(runs[0], ref)
    boxes = (runs[0]["pred_boxes"][0, mine].float() - ref["pred_boxes"][0, theirs]).abs()
    assert boxes.median() <= box_tol
    scores, ref_scores = runs[0]["logits"][0, mine].float().sigmoid(), ref["logits"][0, theirs].sigmoid()
    assert (scores - ref_scores).abs().median() <= score_tol
    assert abs(scores.max() - ref_scores.max()) <= best_tol


def test_confident_labels_agree(half_run: tuple) -> None:
    dtype, ref, runs = half_run
    mine, theirs = _matched(runs[0], ref)
    top2 = ref["logits"][0, theirs].topk(2, dim=-1).values
    confident = (top2[:, 0] - top2[:, 1]) > LABEL_MARGINS[dtype]
    labels = runs[0]["logits"][0, mine].argmax(-1)
    assert torch.equal(labels[confident], ref["logits"][0, theirs].argmax(-1)[confident])
