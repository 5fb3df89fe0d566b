"""The full SAM3-LiteText model: conversion of the detector case, reuse of features, padding, processor."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModel

from golden import FIXTURES
from visionports.cli import main
from visionports.models.sam3_lite_text import (
    Sam3LiteTextImageProcessor,
    Sam3LiteTextModel,
    Sam3LiteTextTokenizer,
)
from visionports.utils.boxes import center_to_corners

CASE = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5"


def test_round_trip_and_outputs(model_dir: Path) -> None:
    model = AutoModel.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    assert type(model) is Sam3LiteTextModel and type(processor) is Sam3LiteTextImageProcessor
    inputs, outputs = (
        load_file(str(CASE / "inputs.safetensors")),
        load_file(str(CASE / "outputs.safetensors")),
    )
    pixels = processor(inputs["image_uint8"].permute(1, 2, 0).numpy())["pixel_values"]
    assert torch.equal(pixels, inputs["pixel_values"])  # SAM3 preprocessing, bit-exact
    with torch.no_grad():
        out = model(pixel_values=pixels, input_ids=inputs["input_ids"][:1])
    torch.testing.assert_close(out.pred_logits, outputs["p0_pred_logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.pred_masks, outputs["p0_pred_masks"], atol=1e-4, rtol=0)


def test_feature_reuse_and_padding(model_dir: Path) -> None:
    model = AutoModel.from_pretrained(model_dir).eval()
    tokenizer = Sam3LiteTextTokenizer(16)
    ids = tokenizer(["a cat", "person wearing a red hat"])["input_ids"]
    images = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        text = model.get_text_features(ids[:1])
        per_image = [model(pixel_values=images[i : i + 1], text_outputs=text) for i in range(2)]
        again = model(pixel_values=images[1:], input_ids=ids[:1])
        vision = model.get_image_features(images[:1])
        both_prompts = model(input_ids=ids, vision_outputs=vision)
        direct = [model(pixel_values=images[:1], input_ids=ids[i : i + 1]) for i in range(2)]
        noisy = model.get_text_features(ids[:1])
        noisy.last_hidden_state = noisy.last_hidden_state.clone()
        padding = ids[:1] == 0  # "a cat": 4 real tokens, 12 padding
        noise = 10 * torch.randn_like(noisy.last_hidden_state)
        noisy.last_hidden_state = noisy.last_hidden_state + noise * padding[..., None]
        masked = model(pixel_values=images[:1], text_outputs=noisy)
    torch.testing.assert_close(per_image[1].pred_logits, again.pred_logits, atol=1e-5, rtol=0)
    for i in range(2):
        torch.testing.assert_close(
            both_prompts.pred_logits[i : i + 1], direct[i].pred_logits, atol=1e-4, rtol=0
        )
    assert torch.equal(masked.pred_logits, per_image[0].pred_logits)  # padding is masked in the detector


def test_post_processing_matches_the_original() -> None:
    case, outputs = json.loads((CASE / "case.json").read_text()), load_file(str(CASE / "outputs.safetensors"))
    thresholds = case["config"]["confidence_threshold"]
    processor = Sam3LiteTextImageProcessor(size=112)
    for k in (0, 1):
        raw = {"pred_logits": outputs[f"p{k}_pred_logits"], "presence_logits": outputs[f"p{k}_presence_logit_dec"],
               "pred_boxes": outputs[f"p{k}_pred_boxes"], "pred_masks": outputs[f"p{k}_pred_masks"]}  # fmt: skip
        assert torch.equal(center_to_corners(raw["pred_boxes"]), outputs[f"p{k}_pred_boxes_xyxy"])
        result = processor.post_process_instance_segmentation(
            raw, threshold=thresholds[k], target_sizes=[(112, 112)]
        )[0]
        assert torch.equal(result["scores"], outputs[f"p{k}_post_scores"])
        assert torch.equal(result["boxes"], outputs[f"p{k}_post_boxes_xyxy"])
        assert torch.equal(result["mask_probs"], outputs[f"p{k}_post_masks_prob"][:, 0])
        assert torch.equal(result["masks"], outputs[f"p{k}_post_masks"][:, 0])


def test_bad_inputs(model_dir: Path) -> None:
    model = AutoModel.from_pretrained(model_dir).eval()
    ids = Sam3LiteTextTokenizer(16)(["a cat"])["input_ids"]
    with pytest.raises(ValueError, match=re.escape("[batch, 3, 112, 112]")):
        model(pixel_values=torch.randn(1, 3, 64, 64), input_ids=ids)
    with pytest.raises(ValueError, match="input_ids"):
        model(pixel_values=torch.randn(1, 3, 112, 112))
    processor = Sam3LiteTextImageProcessor(size=112)
    raw = {"pred_logits": torch.zeros(1, 5, 1), "presence_logits": torch.zeros(1, 1), "pred_boxes": torch.rand(1, 5, 4),
           "pred_masks": torch.zeros(1, 5, 8, 8)}  # fmt: skip
    with pytest.raises(ValueError, match="target_sizes must hold 1"):
        processor.post_process_instance_segmentation(raw, target_sizes=[(1, 1), (2, 2)])
    with pytest.raises(ValueError, match="threshold must be in"):
        processor.post_process_instance_segmentation(raw, threshold=2.0, target_sizes=[(1, 1)])


def test_pipeline_and_segment_cli(model_dir: Path, tmp_path: Path) -> None:
    import warnings

    import numpy as np
    from PIL import Image
    from transformers import pipeline

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 150, 3), dtype=np.uint8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        segmenter = pipeline("text-prompted-segmentation", model=str(model_dir))
        found = segmenter(image, prompts=["a cat", "a dog"], threshold=0.05)
    assert not [w for w in caught if "visionports" in str(w.filename) or "transformers" in str(w.filename)]
    assert found and set(found[0]) == {"score", "label", "box", "mask"}
    assert found[0]["label"] in ("a cat", "a dog") and found[0]["mask"].shape == (90, 150)
    assert [f["score"] for f in found] == sorted((f["score"] for f in found), reverse=True)
    with pytest.raises(ValueError, match="non-empty text prompt"):
        segmenter(image, prompts=[" "])

    folder = tmp_path / "images"
    folder.mkdir()
    image.save(folder / "a.png")
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(folder / "b.jpg")
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(main, ["segment", str(folder), "--prompt", "a cat", "--model", str(model_dir),
                                  "--threshold", "0.2", "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Image.open(out / "a.png").size == (150, 90) and Image.open(out / "b.png").size == (60, 40)
    payload = json.loads((out / "segments.json").read_text())
    assert payload["prompts"] == ["a cat"] and set(payload["images"]) == {
        str(folder / "a.png"),
        str(folder / "b.jpg"),
    }
    (folder / "c.png").write_bytes(b"broken")
    bad = runner.invoke(main, ["segment", str(folder), "--prompt", "a cat", "--model", str(model_dir),
                               "--output", str(tmp_path / "bad")])  # fmt: skip
    assert bad.exit_code != 0 and "c.png" in bad.output and not (tmp_path / "bad").exists()
    empty = runner.invoke(main, ["segment", str(folder / "a.png"), "--prompt", "", "--model", str(model_dir)])
    assert empty.exit_code != 0 and "non-empty text prompt" in empty.output
