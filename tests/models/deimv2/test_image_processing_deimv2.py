"""Deimv2ImageProcessor: pixel parity with the original preprocessing and post-processor parity on golden cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoImageProcessor

from golden import FIXTURES, golden_cases
from visionports import Deimv2Config, Deimv2ImageProcessor
from visionports.models.deimv2.family import make_processor
from visionports.utils.images import ImageInputError

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _uint8_image(pixels: torch.Tensor, normalized: bool) -> Image.Image:
    if normalized:
        pixels = pixels * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    array = (pixels * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array)


@pytest.mark.parametrize("case", ["atto_s0_b1_320", "dinov3_s_tiny_s0_b1_256"])
def test_pixel_parity_with_golden_inputs(case: str) -> None:
    """The fixtures' inputs are 8-bit images preprocessed by the original pipeline: reproduce them exactly."""
    folder = FIXTURES / "deimv2" / case
    reference = load_file(str(folder / "inputs.safetensors"))["pixel_values"]
    normalized = reference.min() < 0
    size = reference.shape[-1]
    processor = Deimv2ImageProcessor(size={"height": size, "width": size}, do_normalize=normalized,
                                     image_mean=MEAN if normalized else None, image_std=STD if normalized else None)  # fmt: skip
    images = [_uint8_image(p, normalized) for p in reference]
    ours = processor(images, return_tensors="pt")["pixel_values"]
    assert ours.dtype == torch.float32 and ours.shape == reference.shape
    assert torch.equal(ours, reference)  # bit-exact: same PIL resize, x / 255, (x - mean) / std in float32


def test_resize_is_pil_bilinear_without_aspect() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (123, 301, 3), dtype=np.uint8))
    processor = make_processor(Deimv2Config.from_preset("femto"))
    pixels = processor(image)["pixel_values"]
    assert pixels.shape == (1, 3, 416, 416)
    expected = (
        torch.from_numpy(np.array(image.resize((416, 416), Image.BILINEAR))).permute(2, 0, 1).float() / 255.0
    )
    assert torch.equal(pixels[0], expected)


def test_variant_sizes_and_normalisation() -> None:
    sizes = {
        name: make_processor(Deimv2Config.from_preset(name)) for name in ("atto", "femto", "pico", "s", "x")
    }
    assert {k: v.size["height"] for k, v in sizes.items()} == {
        "atto": 320,
        "femto": 416,
        "pico": 640,
        "s": 640,
        "x": 640,
    }
    assert not sizes["pico"].do_normalize and sizes["s"].do_normalize and sizes["x"].image_std == STD


def test_input_kinds_agree() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    processor = Deimv2ImageProcessor(size={"height": 32, "width": 32})
    expected = processor(Image.fromarray(rgb))["pixel_values"]
    for variant in (rgb, np.moveaxis(rgb, -1, 0), torch.from_numpy(rgb).permute(2, 0, 1), rgb / 255.0,
                    rgb.astype(np.uint16) * 257):  # fmt: skip
        assert torch.equal(processor(variant)["pixel_values"], expected)
    batch = processor(torch.from_numpy(np.stack([rgb, rgb])).permute(0, 3, 1, 2))["pixel_values"]
    assert batch.shape == (2, 3, 32, 32) and torch.equal(batch[1], expected[0])
    gray = rgb[..., 0]
    grey_pixels = processor(Image.fromarray(gray))["pixel_values"][0]
    assert torch.equal(grey_pixels[0], grey_pixels[1]) and torch.equal(grey_pixels[1], grey_pixels[2])
    sixteen = Image.fromarray(gray.astype(np.uint16) * 257)
    assert sixteen.mode.startswith("I")
    assert torch.equal(processor(sixteen)["pixel_values"], grey_pixels[None])
    transparent = np.zeros((40, 60, 4), dtype=np.uint8)  # fully transparent black -> white
    assert torch.equal(
        processor(Image.fromarray(transparent, "RGBA"))["pixel_values"], torch.ones(1, 3, 32, 32)
    )


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    image = Image.new("RGB", (60, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    image.save(tmp_path / "rotated.jpg", exif=exif)
    from visionports.utils.images import open_image

    assert open_image(tmp_path / "rotated.jpg").size == (20, 60)


def test_bad_images_are_named() -> None:
    processor = Deimv2ImageProcessor(size={"height": 32, "width": 32})
    cases = [
        (np.zeros((0, 5, 3), dtype=np.uint8), "images\\[0\\]: the image is empty"),
        (np.zeros((5, 5, 5), dtype=np.uint8), "images\\[0\\]: expected an array of shape"),
        (np.full((4, 4, 3), np.nan), "NaN"),
        ("street.jpg", "expected a PIL image"),
        ([], "empty list"),
    ]
    for image, message in cases:
        with pytest.raises(ImageInputError, match=message):
            processor(image)
    with pytest.raises(ImageInputError, match="images\\[1\\]"):
        processor([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 0, 3), np.uint8)])


CASES = [
    c
    for c in golden_cases("deimv2")
    if (c / "outputs.safetensors").is_file()
    and "orig_target_sizes" in load_file(str(c / "inputs.safetensors"))
]


@pytest.mark.parametrize("case_dir", CASES, ids=[c.name for c in CASES])
def test_post_processing_matches_the_original(case_dir: Path) -> None:
    """Fed the original's logits and boxes, post-processing reproduces its post.* tensors exactly."""
    inputs = load_file(str(case_dir / "inputs.safetensors"))
    for filename in ("outputs.safetensors", "outputs_float64.safetensors"):
        if not (case_dir / filename).is_file():
            continue
        ref = load_file(str(case_dir / filename))
        processor = Deimv2ImageProcessor(num_top_queries=ref["post.scores"].shape[1])
        outputs = {"logits": ref["pred_logits"], "pred_boxes": ref["pred_boxes"]}
        hw = inputs["orig_target_sizes"].flip(1)  # the original's (w, h) -> transformers' (h, w)
        results = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=hw)
        for i, result in enumerate(results):
            assert torch.equal(result["labels"], ref["post.labels"][i])
            assert torch.equal(result["scores"], ref["post.scores"][i])
            assert torch.equal(result["boxes"], ref["post.boxes"][i])


def test_post_processing_arguments() -> None:
    processor = Deimv2ImageProcessor()
    outputs = {"logits": torch.randn(2, 10, 80), "pred_boxes": torch.rand(2, 10, 4)}
    results = processor.post_process_object_detection(
        outputs, threshold=0.6, target_sizes=[(100, 200), (50, 60)]
    )
    assert len(results) == 2 and all((r["scores"] > 0.6).all() for r in results)
    assert all(r["boxes"].shape[1] == 4 for r in results)
    top = processor.post_process_object_detection(outputs, threshold=0.0, top_k=5)
    assert top[0]["scores"].shape == (5,) and top[0]["boxes"].max() <= 1.5  # normalised without target_sizes
    with pytest.raises(ValueError, match="threshold must be in \\[0, 1\\]"):
        processor.post_process_object_detection(outputs, threshold=1.5)
    with pytest.raises(ValueError, match="target_sizes has 1 entries but the batch has 2"):
        processor.post_process_object_detection(outputs, target_sizes=[(10, 10)])
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        processor.post_process_object_detection(outputs, top_k=0)


def test_processor_round_trip(tmp_path: Path) -> None:
    processor = make_processor(Deimv2Config.from_preset("s"))
    processor.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is Deimv2ImageProcessor
    assert loaded.to_dict() == processor.to_dict()
