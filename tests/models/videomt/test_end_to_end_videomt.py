"""VidEoMT end-to-end golden case (raw frames -> processor -> model -> VIS / VSS / VPS), spec §9."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from golden import FIXTURES
from visionports.models.videomt import VideomtConfig
from visionports.models.videomt.family import make_processor
from visionports.models.videomt.parity_videomt import (
    VideomtParity,
    _block_outputs,
    canonical_order,
    is_end_to_end,
    relaxed_thresholds,
    roundoff_ambiguous,
    settings_overrides,
)
from visionports.models.videomt.postprocessing_videomt import restore_mask_size

CASE = FIXTURES / "videomt" / "e2e_dinov2_micro_s0_t3"
ADAPTER = VideomtParity()


@pytest.fixture(scope="module")
def case() -> tuple[dict, dict, dict]:
    spec = json.loads((CASE / "case.json").read_text())
    return spec, load_file(str(CASE / "inputs.safetensors")), load_file(str(CASE / "outputs.safetensors"))


def _processor(spec: dict):
    overrides = ADAPTER.conversion_options(spec)["config_overrides"]
    config = VideomtConfig(num_labels=spec["config"]["NUM_CLASSES"], **overrides)
    return make_processor(config)


def _reference_post(spec: dict, inputs: dict, outputs: dict) -> dict:
    """Our post-processing run on the ORIGINAL model's logits (no model round-off involved)."""
    logits = {"class_logits": outputs["class_logits"], "mask_logits": outputs["mask_logits"]}
    return ADAPTER.postprocess(_processor(spec), logits, inputs, spec)


def test_case_is_recognised_by_its_inputs(case) -> None:
    spec, inputs, _ = case
    assert is_end_to_end(inputs) and not is_end_to_end({**inputs, "pixel_values": torch.zeros(1)})
    assert inputs["frames_uint8"].ndim == 4 and inputs["frames_uint8"].dtype == torch.uint8
    assert settings_overrides(spec["test_settings"]) == {
        "max_num_instances": 6, "object_mask_threshold": 0.8, "overlap_threshold": 0.8, "num_thing_classes": 2,
    }  # fmt: skip
    assert "vis_scores" in ADAPTER.final_outputs(spec) and "propagated_queries" not in ADAPTER.final_outputs(
        spec
    )


def test_relaxed_thresholds_forms() -> None:
    assert relaxed_thresholds({"relaxed_vps": {"OBJECT_MASK_THRESHOLD": 0.3, "OVERLAP_THRESHOLD": 0.4}}) == (
        0.3,
        0.4,
    )
    assert relaxed_thresholds({"relaxed_vps": {"overlap_threshold": 0.4, "object_threshold": 0.2}}) == (
        0.2,
        0.4,
    )
    assert relaxed_thresholds({"relaxed_vps": [0.5, 0.6]}) == (0.5, 0.6)


def test_processor_reproduces_the_padded_frames(case) -> None:
    spec, inputs, outputs = case
    made = ADAPTER.preprocess(_processor(spec), inputs, spec)
    assert list(made) == ["padded_pixel_values"]
    assert tuple(made["padded_pixel_values"].shape[-2:]) == tuple(spec["padded_hw"])
    assert torch.equal(made["padded_pixel_values"], outputs["padded_pixel_values"])
    h, w = spec["resized_hw"]
    assert (made["padded_pixel_values"][..., h:, :] == 0).all() and (
        made["padded_pixel_values"][..., w:] == 0
    ).all()


def test_post_processing_of_the_original_logits_is_exact(case) -> None:
    spec, inputs, outputs = case
    ours = _reference_post(spec, inputs, outputs)
    ours["video_class_logits"] = outputs["video_class_logits"]
    reference = {**outputs, **ADAPTER.case_tensors(spec)}
    aligned = ADAPTER.align(ours, reference, inputs, spec)
    for name in ("vis_labels", "vis_query_ids", "vis_masks", "vis_canonical_order", "vss_semseg", "vps_panoptic",
                 "vps_query_ids", "vps_relaxed_panoptic", "vps_relaxed_query_ids"):  # fmt: skip
        assert torch.equal(aligned[name].to(reference[name].dtype), reference[name]), name
    assert torch.allclose(aligned["vis_scores"], reference["vis_scores"], rtol=0, atol=1e-6)
    for name in ("vps", "vps_relaxed"):  # the scalar results of case.json, surfaced as reference tensors
        infos = spec["postprocessing"][name]["segments_infos"]
        assert reference[f"{name}_segments.category_id"].tolist() == [i["category_id"] for i in infos]
        assert aligned[f"{name}_segments.isthing"].tolist() == [int(i["isthing"]) for i in infos]
        assert aligned[f"{name}_segments.id"].tolist() == [i["id"] for i in infos]
        assert aligned[f"{name}_query_ids"].tolist() == spec["postprocessing"][name]["pred_ids"]
    assert len(spec["postprocessing"]["vps_relaxed"]["segments_infos"]) > 1  # the relaxed thresholds fire


def test_vis_results_are_compared_in_canonical_order(case) -> None:
    spec, inputs, outputs = case
    ours = _reference_post(spec, inputs, outputs)
    ours["video_class_logits"] = outputs["video_class_logits"]
    assert (ours["vis_scores"][:-1] >= ours["vis_scores"][1:]).all()  # ours: sorted by score
    assert not torch.equal(
        ours["vis_query_ids"], outputs["vis_query_ids"]
    )  # the original's topk(sorted=False)
    aligned = ADAPTER.align(ours, dict(outputs), inputs, spec)
    assert torch.equal(aligned["vis_query_ids"], outputs["vis_query_ids"])
    order = canonical_order(outputs["vis_scores"], outputs["vis_query_ids"], outputs["vis_labels"], 5)
    assert torch.equal(order, outputs["vis_canonical_order"])


def test_canonical_order_breaks_score_ties_by_query_and_label() -> None:
    scores = torch.tensor([0.5, 0.9, 0.5, 0.5])
    queries, labels = torch.tensor([3, 0, 1, 1]), torch.tensor([0, 2, 4, 1])
    assert canonical_order(scores, queries, labels, 5).tolist() == [1, 3, 2, 0]


def test_mask_pixels_differ_only_where_the_logit_is_within_tolerance_of_zero(case) -> None:
    spec, inputs, outputs = case
    ours = _reference_post(spec, inputs, outputs)
    ours["video_class_logits"] = outputs["video_class_logits"]
    sizes = (tuple(spec["padded_hw"]), tuple(spec["resized_hw"]), tuple(spec["output_hw"]))
    resized = restore_mask_size(outputs["mask_logits"][0][outputs["vis_query_ids"]], *sizes)
    confident = torch.unravel_index(resized.abs().argmax(), resized.shape)
    assert float(resized.abs().max()) > 1.0
    logits = outputs["mask_logits"][0][outputs["vis_query_ids"]]
    band = restore_mask_size(1e-5 + 1e-4 * logits.abs(), *sizes) + 1e-6  # the tolerance carried through
    queries = {"vis_query_ids": outputs["vis_query_ids"]}
    ambiguous = roundoff_ambiguous(outputs, queries, spec, 1e-5, 1e-4)["vis_masks"]
    assert torch.equal(ambiguous, resized.abs() <= band)
    assert 0 < int(ambiguous.sum()) < resized.numel() // 100 and not ambiguous[confident]
    exact = roundoff_ambiguous(outputs, queries, spec, 0.0, 0.0)["vis_masks"]
    assert torch.equal(exact, resized.abs() <= 1e-6)
    reference = {**outputs, **ADAPTER.case_tensors(spec)}
    aligned = ADAPTER.align(ours, reference, inputs, spec)  # now in the reference's order
    assert torch.equal(aligned["vis_masks"], outputs["vis_masks"])
    aligned["vis_masks"] = aligned["vis_masks"].clone()
    aligned["vis_masks"][confident] ^= True
    again = ADAPTER.align(aligned, reference, inputs, spec)["vis_masks"]
    assert int((again != outputs["vis_masks"]).sum()) == 1  # a confident pixel is never forgiven


def test_id_map_pixel_flip_is_caught(case) -> None:
    spec, inputs, outputs = case
    ours = _reference_post(spec, inputs, outputs)
    ours["video_class_logits"] = outputs["video_class_logits"]
    ours["vss_semseg"] = ours["vss_semseg"].clone()
    ours["vps_relaxed_panoptic"] = ours["vps_relaxed_panoptic"].clone()
    ours["vss_semseg"][0, 0, 0] = (ours["vss_semseg"][0, 0, 0] + 1) % 5
    ours["vps_relaxed_panoptic"][1, 5, 5] = ours["vps_relaxed_panoptic"].max() + 1
    aligned = ADAPTER.align(ours, dict(outputs), inputs, spec)
    assert int((aligned["vss_semseg"] != outputs["vss_semseg"]).sum()) == 1
    assert int((aligned["vps_relaxed_panoptic"] != outputs["vps_relaxed_panoptic"]).sum()) == 1


def test_block_outputs_accept_both_hidden_state_conventions() -> None:
    model = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=3))
    blocks = [torch.full((1,), float(i)) for i in range(3)]
    assert _block_outputs(model, blocks) == blocks
    assert _block_outputs(model, [torch.zeros(1), *blocks]) == blocks  # embeddings first (L + 1)


def test_weights_case_preprocess_makes_pixel_values() -> None:
    base = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3"
    spec = json.loads((base / "case.json").read_text())
    inputs = load_file(str(base / "inputs.safetensors"))
    config = VideomtConfig(**ADAPTER.conversion_options(spec)["config_overrides"])
    made = ADAPTER.preprocess(make_processor(config), inputs, spec)
    assert torch.equal(made["pixel_values"], inputs["pixel_values"])
    assert ADAPTER.postprocess(make_processor(config), {}, inputs, spec) == {}
    assert np.isclose(relaxed_thresholds({"relaxed_vps": (0.1, 0.2)})[1], 0.2)
