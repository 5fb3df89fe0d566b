"""DEIMv2's dense one-to-one data recipe: per-image ops, Mosaic, the batch mixes and the epoch policy."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionports.data.coco_dataset import load_coco_split
from visionports.data.detection_data import CocoDetectionDataset
from visionports.data.detection_mixing import RecipeCollate, copy_blend, mixup
from visionports.data.detection_mosaic import Mosaic, affine_matrix, warp_affine
from visionports.data.detection_recipe import AugmentationPlan, RecipeAugmentation, multiscale_sizes
from visionports.data.detection_transforms import (
    DetectionSample,
    HorizontalFlip,
    IoUCrop,
    PhotometricDistort,
    Resize,
    SanitizeBoxes,
    ZoomOut,
    box_areas,
)
from visionports.data.synthetic_coco import make_synthetic_coco
from visionports.models.deimv2 import Deimv2ImageProcessor

BOXES = [[4, 6, 30, 20], [40, 30, 60, 70], [10, 50, 26, 90]]


def _sample(
    width: int = 64, height: int = 96, boxes: list | None = None, first_label: int = 1
) -> DetectionSample:
    """A black image with each box filled in its own colour; labels ``first_label, first_label + 1, ...``."""
    boxes = BOXES if boxes is None else boxes
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        pixels[y1:y2, x1:x2] = (60 + 60 * index, 255 - 50 * index, 30 * index + 20)
    labels = torch.arange(first_label, first_label + len(boxes), dtype=torch.int64)
    return DetectionSample(Image.fromarray(pixels), torch.tensor(boxes, dtype=torch.float32), labels)


def _inside(sample: DetectionSample) -> bool:
    width, height = sample.size
    b = sample.boxes
    return bool(((b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= width) & (b[:, 3] <= height)).all())


def _by_label(sample: DetectionSample) -> dict[int, torch.Tensor]:
    return {int(label): box for label, box in zip(sample.labels, sample.boxes, strict=True)}


def _plan(**changes: object) -> AugmentationPlan:
    settings = dict(size=(64, 64), policy_epochs=(2, 4, 6), mosaic_prob=1.0, min_box_size=1.0, mixup_prob=0.0,
                    mixup_epochs=(0, 0), copyblend_prob=0.0, copyblend_epochs=(0, 0), multiscale_stop_epoch=0,
                    multiscale_sizes=None)  # fmt: skip
    return AugmentationPlan(**{**settings, **changes})


def test_flip_mirrors_boxes_and_pixels_keeping_areas() -> None:
    sample = _sample()
    flipped = HorizontalFlip(p=1.0)(sample, random.Random(0))
    assert torch.equal(flipped.labels, sample.labels) and _inside(flipped)
    assert torch.allclose(box_areas(flipped.boxes), box_areas(sample.boxes))
    assert np.array_equal(np.asarray(flipped.image), np.asarray(sample.image)[:, ::-1])
    x1, y1, x2, y2 = flipped.boxes[0].int().tolist()
    assert (np.asarray(flipped.image)[y1:y2, x1:x2] == np.asarray(sample.image)[6, 4]).all()
    assert HorizontalFlip(p=0.0)(sample, random.Random(0)) is sample


def test_resize_scales_boxes_and_areas() -> None:
    sample = _sample()
    resized = Resize(48, 32)(sample)  # (height, width): aspect ratio not kept
    assert resized.size == (32, 48) and torch.equal(resized.labels, sample.labels) and _inside(resized)
    assert torch.allclose(box_areas(resized.boxes), box_areas(sample.boxes) * (32 / 64) * (48 / 96))
    assert torch.allclose(resized.boxes[1], torch.tensor([20.0, 15.0, 30.0, 35.0]))


def test_zoom_out_keeps_pixel_area_and_content() -> None:
    sample = _sample()
    for seed in range(5):
        zoomed = ZoomOut(fill=0, p=1.0)(sample, random.Random(seed))
        assert zoomed.size[0] >= 64 and zoomed.size[1] >= 96 and _inside(zoomed)
        assert torch.equal(box_areas(zoomed.boxes), box_areas(sample.boxes))
        assert torch.equal(zoomed.labels, sample.labels)
        for before, after in zip(sample.boxes.int().tolist(), zoomed.boxes.int().tolist(), strict=True):
            original = np.asarray(sample.image)[before[1] : before[3], before[0] : before[2]]
            moved = np.asarray(zoomed.image)[after[1] : after[3], after[0] : after[2]]
            assert np.array_equal(original, moved)
    assert ZoomOut(p=0.0)(sample, random.Random(0)) is sample


def test_iou_crop_never_enlarges_and_keeps_labels_with_boxes() -> None:
    sample = _sample()
    source = _by_label(sample)
    cropped_any = False
    for seed in range(20):
        cropped = IoUCrop(p=1.0)(sample, random.Random(seed))
        width, height = cropped.size
        assert width <= 64 and height <= 96 and _inside(cropped) and len(cropped.boxes) >= 1
        for label, box in _by_label(cropped).items():
            assert box_areas(box[None])[0] <= box_areas(source[label][None])[0] + 1e-4
            assert box[2] - box[0] <= source[label][2] - source[label][0] + 1e-4  # the same object
        cropped_any |= cropped.size != sample.size
    assert cropped_any
    empty = DetectionSample(sample.image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert IoUCrop(p=1.0)(empty, random.Random(0)) is empty


def test_sanitize_drops_degenerate_boxes_with_their_labels() -> None:
    boxes = torch.tensor(
        [
            [4, 6, 30, 20],  # kept
            [5, 5, 5, 40],  # zero width
            [10, 10, 13, 40],  # narrower than min_size 4
            [50, 10, 70, 30],  # reaches outside the 64-wide image
            [float("nan"), 0, 10, 10],
            [20, 60, 40, 90],  # kept
        ]
    )
    sample = DetectionSample(_sample().image, boxes, torch.arange(6))
    kept = SanitizeBoxes(min_size=4)(sample)
    assert kept.labels.tolist() == [0, 5] and torch.equal(kept.boxes, boxes[[0, 5]])


def test_photometric_distortion_changes_pixels_only() -> None:
    sample = _sample()
    changed = [PhotometricDistort(p=1.0)(sample, random.Random(seed)) for seed in range(3)]
    for out in changed:
        assert out.size == sample.size and torch.equal(out.boxes, sample.boxes)
        assert not np.array_equal(np.asarray(out.image), np.asarray(sample.image))
    same = PhotometricDistort(p=0.0)(sample, random.Random(0))
    assert np.array_equal(np.asarray(same.image), np.asarray(sample.image))


def test_mosaic_tiles_four_cached_sources() -> None:
    mosaic = Mosaic(32, rotation=0.0, translation=(0.0, 0.0), scaling=(1.0, 1.0), max_cached=3)
    rng = random.Random(0)
    sources = {}
    for index in range(5):
        sample = _sample(first_label=10 * index)
        out = mosaic(sample, rng)
        sources.update({10 * index + k: b * (32 / 64) for k, b in enumerate(sample.boxes)})  # shorter side 32
        assert out.size == (64, 96) and _inside(out)  # cells of 32 x 48
        first = out.labels < 10 * index + 3
        assert out.labels[:3].tolist() == [10 * index, 10 * index + 1, 10 * index + 2]  # the sample: top-left
        assert first[:3].all()
        for position, (label, box) in enumerate(zip(out.labels.tolist(), out.boxes, strict=True)):
            cell = position // 3  # every source holds 3 boxes
            offset = torch.tensor([32 * (cell % 2), 48 * (cell // 2)] * 2, dtype=torch.float32)
            assert torch.allclose(box - offset, sources[label], atol=1e-4)
    assert len(mosaic.cache) == 3 and mosaic.cache[-1].labels[0] == 40  # newest kept, overflow evicted


def test_mosaic_affine_boxes_enclose_their_objects() -> None:
    sample = _sample(96, 96, [[10, 10, 40, 30], [50, 55, 80, 90]])
    forward = affine_matrix(math.radians(10), 0.8, (48, 48), (5, -4))
    warped = warp_affine(sample, forward)
    assert warped.size == (96, 96) and _inside(warped) and warped.labels.tolist() == [1, 2]
    pixels = np.asarray(warped.image).any(-1)
    ys, xs = np.nonzero(pixels)
    covered = np.zeros_like(pixels)
    for x1, y1, x2, y2 in warped.boxes.tolist():
        covered[math.floor(y1) - 1 : math.ceil(y2) + 1, math.floor(x1) - 1 : math.ceil(x2) + 1] = True
        assert pixels[int(y1) : int(y2), int(x1) : int(x2)].mean() > 0.5  # the box holds its object
    assert covered[ys, xs].all()  # every object pixel lies in a box
    ratio = box_areas(warped.boxes) / box_areas(sample.boxes)
    assert (ratio > 0.64 * 0.95).all() and (ratio < 0.64 * 1.5).all()  # scaled 0.8, rotated boxes grow a bit


def test_recipe_policy_switches_ops_by_epoch() -> None:
    augment = RecipeAugmentation(_plan())
    assert [augment.stage(e) for e in range(8)] == ["plain"] * 2 + ["mosaic"] * 2 + ["distort"] * 2 + [
        "plain"
    ] * 2
    sample = _sample()
    for epoch in (0, 1, 6, 7):  # flip and resize only
        out = augment(sample, epoch, random.Random(epoch))
        resized = np.asarray(Resize(64, 64)(sample).image)
        assert out.size == (64, 64) and len(out.boxes) == 3
        assert np.array_equal(np.asarray(out.image), resized) or np.array_equal(
            np.asarray(out.image), resized[:, ::-1]
        )
    assert not augment.mosaic.cache
    augment(sample, 2, random.Random(0))
    assert len(augment.mosaic.cache) == 1  # Mosaic ran (probability 1)
    for seed in range(3):
        augment(sample, 4, random.Random(seed))
    assert len(augment.mosaic.cache) == 1  # no Mosaic once it stopped


def test_multiscale_sizes_match_the_original_formula() -> None:
    assert multiscale_sizes(640, 3) == (480, 512, 544, 576, 608, 640, 640, 640, 800, 768, 736, 704, 672)
    assert multiscale_sizes(320, 1) == (224, 256, 288, 320, 384, 352, 320)


def _batch(values: tuple[float, ...], boxes: list[list[list[float]]]) -> tuple[torch.Tensor, list[dict]]:
    pixels = torch.stack([torch.full((3, 32, 32), v) for v in values])
    targets = [
        {"boxes": torch.tensor(b, dtype=torch.float32).reshape(-1, 4),
         "class_labels": torch.arange(len(b)) + 10 * i, "image_id": torch.tensor(i)}
        for i, b in enumerate(boxes)
    ]  # fmt: skip
    return pixels, targets


def test_mixup_blends_images_and_unites_boxes() -> None:
    pixels, targets = _batch((0.0, 1.0, 0.5), [[[0.5, 0.5, 0.2, 0.2]], [[0.3, 0.3, 0.1, 0.1]] * 2, []])
    mixed, united = mixup(pixels, targets, 0.45)
    assert torch.allclose(
        mixed[:, 0, 0, 0], torch.tensor([0.45 * 0 + 0.55 * 0.5, 0.45 * 1 + 0.55 * 0, 0.45 * 0.5 + 0.55])
    )
    assert [len(t["boxes"]) for t in united] == [1, 3, 2]  # own + the previous image's
    assert united[1]["class_labels"].tolist() == [10, 11, 0] and united[0]["class_labels"].tolist() == [0]
    assert torch.equal(united[1]["boxes"][2], targets[0]["boxes"][0]) and united[1]["image_id"] == 1


def test_copy_blend_pastes_objects_blended() -> None:
    pixels, targets = _batch((0.0, 0.5), [[[0.5, 0.5, 0.5, 0.5]], []])
    pixels[0, :, 8:24, 8:24] = 1.0  # the one object of image 0, 16 x 16 pixels
    blended, updated = copy_blend(pixels, targets, 0.5, random.Random(0), min_area=100)
    assert [len(t["boxes"]) for t in updated] == [2, 1] and updated[1]["class_labels"].tolist() == [0]
    cx, cy, w, h = (updated[1]["boxes"][0] * 32).tolist()
    assert (w, h) == (16, 16)
    region = blended[1, :, int(cy - h / 2) : int(cy + h / 2), int(cx - w / 2) : int(cx + w / 2)]
    assert torch.allclose(
        region, torch.tensor(0.5 * 0.5 + 0.5 * 1.0)
    )  # destination 0.5 blended with the object
    assert torch.equal(pixels[1], torch.full((3, 32, 32), 0.5))  # the input batch is left as it was
    small, _ = copy_blend(pixels, targets, 0.5, random.Random(0), min_area=300)  # 256 px objects only
    assert torch.equal(small, pixels)


def _items(count: int) -> list[dict]:
    return [
        {"pixel_values": torch.full((3, 32, 32), float(i)),
         "labels": {"class_labels": torch.tensor([i]), "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]])}}
        for i in range(count)
    ]  # fmt: skip


def test_collate_schedule_switches_mixes_and_scales() -> None:
    plan = _plan(size=(32, 32), mixup_prob=1.0, mixup_epochs=(1, 2), copyblend_prob=1.0, copyblend_epochs=(1, 3),
                 multiscale_stop_epoch=1, multiscale_sizes=(64, 96))  # fmt: skip
    collate = RecipeCollate(plan, seed=0)
    sizes = set()
    for _ in range(6):
        batch = collate(_items(2))
        sizes.add(batch["pixel_values"].shape[-1])
        assert [len(t["boxes"]) for t in batch["labels"]] == [1, 1]
    assert sizes == {64, 96}
    collate.set_epoch(1)  # Mixup (it wins over CopyBlend), no multi-scale any more
    batch = collate(_items(2))
    assert batch["pixel_values"].shape[-1] == 32 and [len(t["boxes"]) for t in batch["labels"]] == [2, 2]
    collate.set_epoch(2)  # CopyBlend: each image receives both 256-pixel objects of the batch
    assert [len(t["boxes"]) for t in collate(_items(2))["labels"]] == [3, 3]
    collate.set_epoch(3)
    batch = collate(_items(2))
    assert torch.equal(batch["pixel_values"], torch.stack([i["pixel_values"] for i in _items(2)]))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_coco(tmp_path_factory.mktemp("shapes"), 4, 1, (96, 128), 3, seed=2)


def test_recipe_items_are_deterministic_per_seed_and_rank(shapes: Path) -> None:
    split = load_coco_split(shapes, "train")
    processor = Deimv2ImageProcessor(size={"height": 64, "width": 64})

    def items(seed: int, rank: int) -> list[dict]:
        dataset = CocoDetectionDataset(split, processor, seed=seed, rank=rank,
                                       augmentation=RecipeAugmentation(_plan(policy_epochs=(0, 2, 4))))  # fmt: skip
        dataset.set_epoch(1)
        return [dataset[i] for i in range(4)]

    def same(a: list[dict], b: list[dict]) -> bool:
        return all(torch.equal(x["pixel_values"], y["pixel_values"]) for x, y in zip(a, b, strict=True))

    first = items(0, 0)
    assert same(first, items(0, 0)) and not same(first, items(0, 1)) and not same(first, items(1, 0))
    for item in first:
        boxes = item["labels"]["boxes"]
        assert item["pixel_values"].shape == (3, 64, 64) and ((boxes >= 0) & (boxes <= 1)).all()
        assert len(boxes) == len(item["labels"]["class_labels"])
    draws = [
        RecipeCollate(_plan(multiscale_stop_epoch=9, multiscale_sizes=(32, 64, 96)), 0, rank)
        for rank in (0, 0, 1)
    ]
    shapes_drawn = [[c(_items(1))["pixel_values"].shape[-1] for _ in range(12)] for c in draws]
    assert shapes_drawn[0] == shapes_drawn[1] and shapes_drawn[0] != shapes_drawn[2]
