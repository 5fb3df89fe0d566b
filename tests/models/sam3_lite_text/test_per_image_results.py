"""SAM3-LiteText results per image: every prompt's instances labelled with the prompt, sizes given per image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from golden import FIXTURES
from visionports.models.sam3_lite_text import Sam3LiteTextImageProcessor, Sam3LiteTextTokenizer

CASE = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5"
KEYS = ("scores", "boxes", "mask_probs", "masks")


def _raw() -> dict[str, torch.Tensor]:
    """Two recorded queries, without image or prompt ids."""
    outputs = load_file(str(CASE / "outputs.safetensors"))
    return {name: torch.cat([outputs[f"p{k}_{source}"] for k in (0, 1)])
            for name, source in (("pred_logits", "pred_logits"), ("presence_logits", "presence_logit_dec"),
                                 ("pred_boxes", "pred_boxes"), ("pred_masks", "pred_masks"))}  # fmt: skip


def test_one_image_with_two_prompts_takes_that_images_size() -> None:
    processor, raw = Sam3LiteTextImageProcessor(size=112), _raw()
    results = processor.post_process_instance_segmentation(
        raw, threshold=0.05, target_sizes=[(50, 80)], prompts=["a cat", "a dog"]
    )
    assert [(r["image_index"], r["prompt_index"], r["prompt"]) for r in results] == [
        (0, 0, "a cat"),
        (0, 1, "a dog"),
    ]
    per_query = processor.post_process_instance_segmentation(raw, threshold=0.05, target_sizes=[(50, 80)] * 2)
    assert all("prompt" not in r for r in per_query)  # without prompts, the results are as before
    for result, same in zip(results, per_query, strict=True):
        assert result["masks"].shape[-2:] == (50, 80)
        for key in KEYS:
            assert torch.equal(result[key], same[key])
    one_prompt = processor.post_process_instance_segmentation(
        raw, threshold=0.05, target_sizes=[(50, 80), (30, 20)], prompts=["a cat"]
    )  # one prompt on every image
    assert [(r["image_index"], r["prompt"]) for r in one_prompt] == [(0, "a cat"), (1, "a cat")]
    with pytest.raises(ValueError, match="target_sizes must hold 1 or 2"):
        processor.post_process_instance_segmentation(raw, target_sizes=[(1, 1)] * 3)
    with pytest.raises(ValueError, match="one prompt or one per query"):
        processor.post_process_instance_segmentation(raw, target_sizes=[(1, 1)], prompts=["a", "b", "c"])
    with pytest.raises(ValueError, match="the outputs read 2 prompts"):
        processor.post_process_instance_segmentation(
            {**raw, "text_ids": torch.tensor([0, 1])}, target_sizes=[(1, 1)], prompts=["a"]
        )


def test_per_image_results_gather_every_prompt(model_dir: Path) -> None:
    from transformers import AutoImageProcessor, AutoModel

    model, processor = (
        AutoModel.from_pretrained(model_dir).eval(),
        AutoImageProcessor.from_pretrained(model_dir),
    )
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size, dtype=np.uint8) for size in ((90, 150, 3), (60, 40, 3), (30, 50, 3))]
    prompts = ["a cat", "a dog", "a hat"]
    inputs = processor(images, return_tensors="pt")
    with torch.no_grad():
        out = model(pixel_values=inputs["pixel_values"], input_ids=Sam3LiteTextTokenizer(16)(prompts)["input_ids"],
                    image_ids=[0, 0, 1], text_ids=[0, 1, 2])  # fmt: skip
    sizes = inputs["original_sizes"]
    per_image = processor.post_process_per_image(out, prompts, threshold=0.05, target_sizes=sizes)
    queries = processor.post_process_instance_segmentation(
        out, threshold=0.05, target_sizes=sizes, prompts=prompts
    )
    assert len(per_image) == 3 and per_image[2] == []  # image 2 is read by no query
    for image, found in enumerate(per_image):
        expected = [
            (float(s), q["prompt"]) for q in queries if q["image_index"] == image for s in q["scores"]
        ]
        assert sorted(expected, key=lambda e: -e[0]) == [(f["score"], f["label"]) for f in found]
        for f in found:
            assert set(f) == {"score", "label", "box", "mask"} and set(f["box"]) == {
                "xmin",
                "ymin",
                "xmax",
                "ymax",
            }
            assert f["mask"].dtype == bool and f["mask"].shape == tuple(sizes[image].tolist())
    assert {f["label"] for f in per_image[0]} <= {"a cat", "a dog"} and per_image[1]
    assert {f["label"] for f in per_image[1]} == {"a hat"}


def test_pipeline_returns_the_per_image_results(model_dir: Path) -> None:
    from transformers import AutoImageProcessor, AutoModel, pipeline

    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (70, 110, 3), dtype=np.uint8))
    prompts = ["a cat", "a dog"]
    found = pipeline("text-prompted-segmentation", model=str(model_dir))(
        image, prompts=prompts, threshold=0.05
    )
    model, processor = (
        AutoModel.from_pretrained(model_dir).eval(),
        AutoImageProcessor.from_pretrained(model_dir),
    )
    inputs = processor(image, return_tensors="pt")
    with torch.no_grad():  # the pipeline's path: the image's features once, then every prompt
        vision = model.get_image_features(inputs["pixel_values"])
        out = model(input_ids=Sam3LiteTextTokenizer(16)(prompts)["input_ids"], vision_outputs=vision)
    assert out.image_ids.tolist() == [0, 0]  # one image with every prompt
    (expected,) = processor.post_process_per_image(out, prompts, threshold=0.05, target_sizes=[(70, 110)])
    assert found and [(f["score"], f["label"], f["box"]) for f in found] == [
        (f["score"], f["label"], f["box"]) for f in expected
    ]
    assert all(np.array_equal(a["mask"], b["mask"]) for a, b in zip(found, expected, strict=True))
    assert json.dumps([f["box"] for f in found])  # plain floats


def test_deferred_masks_equal_the_resized_masks() -> None:
    """Masks kept at the model's resolution until read equal post-processing's own, bit for bit."""
    processor, raw = Sam3LiteTextImageProcessor(size=112), _raw()
    sizes, prompts = [(333, 517), (90, 41)], ["a cat", "a dog"]
    full = processor.post_process_per_image(raw, prompts, threshold=0.0, target_sizes=sizes)
    deferred = processor.post_process_per_image(
        raw, prompts, threshold=0.0, target_sizes=sizes, deferred_masks=True
    )
    assert [len(found) for found in full] == [len(found) for found in deferred] and sum(map(len, full)) > 2
    for image, (wanted, got) in enumerate(zip(full, deferred, strict=True)):
        for a, b in zip(wanted, got, strict=True):
            assert (a["score"], a["label"], a["box"]) == (b["score"], b["label"], b["box"])
            assert not isinstance(b["mask"], np.ndarray) and b["mask"].shape == sizes[image]
            np.testing.assert_array_equal(np.asarray(b["mask"]), a["mask"])
