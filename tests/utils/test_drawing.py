from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visionports.utils.drawing import (
    PALETTE,
    Detection,
    blend_masks,
    caption_masks,
    draw_detections,
    key_colour,
)


@pytest.mark.parametrize("size", [(64, 48), (2000, 1500)])
def test_boxes_and_tags_are_drawn_inside_the_image(size: tuple[int, int]) -> None:
    image = Image.new("RGB", size, (0, 0, 0))
    w, h = size
    det = Detection(label_id=0, label="person", score=0.87, box=(w * 0.25, h * 0.25, w * 0.75, h * 0.75))
    edge = Detection(label_id=1, label="bicycle", score=0.5, box=(0, 0, w * 0.1, h * 0.1))
    out = np.asarray(draw_detections(image, [det, edge]))
    assert out.shape == (h, w, 3)
    colour = np.array(PALETTE[0])
    assert (out[int(h * 0.5), int(w * 0.25)] == colour).all()  # left edge of the box
    assert (out == np.array(PALETTE[1])).all(-1).any()  # the tag of a box at the corner is drawn, inside
    # line width and text grow with the image
    line_pixels = (out[int(h * 0.5), : int(w * 0.3)] == colour).all(-1).sum()
    assert line_pixels >= (1 if w < 100 else 5)


def test_original_image_is_untouched() -> None:
    image = Image.new("RGB", (50, 50))
    draw_detections(image, [Detection(2, "car", 0.9, (5, 5, 40, 40))])
    assert np.asarray(image).max() == 0


def test_masks_are_filled_in_their_key_colour_and_outlined() -> None:
    image = Image.new("RGB", (40, 30), (100, 100, 100))
    mask = np.zeros((30, 40), bool)
    mask[5:15, 8:28] = True
    out = np.asarray(blend_masks(image, [mask, np.zeros_like(mask)], [1, 2], alpha=0.5))
    inner = np.zeros_like(mask)
    inner[6:14, 9:27] = True
    expected = np.round(0.5 * 100 + 0.5 * np.array(PALETTE[1])).astype(np.uint8)
    assert (out[inner] == expected).all() and (out[~mask] == 100).all()
    assert (out[mask & ~inner] == PALETTE[1]).all()  # a 1 px contour in the full colour
    plain = np.asarray(blend_masks(image, [mask], [1], alpha=0.5, contour=False))
    assert (plain[mask] == expected).all()


def test_overlapping_masks_never_hide_the_frame() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    full = np.ones((40, 60), bool)
    alpha = 0.4
    out = np.asarray(blend_masks(Image.fromarray(frame), [full] * 10, list(range(10)), alpha=alpha))
    # each pixel is blended once: out = (1 - alpha) * frame + alpha * colour, whatever the number of masks
    rest = out.astype(float) - (1 - alpha) * frame
    assert np.abs(rest - alpha * np.array(key_colour(9))).max() <= 1
    assert np.abs(out.astype(float) - frame).mean() <= alpha * 255 / 2


def test_smaller_masks_show_on_top_of_larger_ones() -> None:
    image = Image.new("RGB", (40, 40), (0, 0, 0))
    big, small = np.ones((40, 40), bool), np.zeros((40, 40), bool)
    small[10:30, 10:30] = True
    out = np.asarray(blend_masks(image, [small, big], [0, 1], contour=False))
    assert (out[20, 20] == np.round(0.4 * np.array(PALETTE[0]))).all()
    assert (out[0, 0] == np.round(0.4 * np.array(PALETTE[1]))).all()


def test_key_colours_are_stable_and_distinct() -> None:
    assert key_colour("person") == key_colour("person") == key_colour("person")
    assert key_colour(7) == PALETTE[7] and key_colour(np.int64(27)) == PALETTE[7]
    assert len({key_colour(k) for k in range(12)}) == 12
    assert len({key_colour(k) for k in ("person", "car", "dog")}) == 3


def _tags(out: np.ndarray, colour: tuple[int, int, int]) -> tuple[int, int, int, int] | None:
    """The bounding box (x1, y1, x2, y2) of the pixels in exactly ``colour``."""
    ys, xs = np.nonzero((out == np.array(colour)).all(-1))
    return (xs.min(), ys.min(), xs.max(), ys.max()) if len(xs) else None


def test_captions_are_tagged_at_the_top_left_of_non_empty_masks() -> None:
    image = Image.new("RGB", (200, 100))
    left, empty = np.zeros((100, 200), bool), np.zeros((100, 200), bool)
    left[30:70, 10:90] = True
    out = np.asarray(caption_masks(image, [left, empty], [3, 4], ["#1 cat", "#2 dog"]))
    assert np.asarray(image).max() == 0  # the original is untouched
    tag = _tags(out, PALETTE[3])
    assert tag is not None and tag[:2] == (10, 30) and tag[3] - tag[1] >= 12  # readable, at the corner
    assert _tags(out, PALETTE[4]) is None
    text = out[tag[1] : tag[3] + 1, tag[0] : tag[2] + 1]
    assert (text != PALETTE[3]).any(-1).sum() > 20  # the caption is written on the tag


def test_captions_of_stacked_masks_do_not_overlap_and_stay_inside() -> None:
    w, h = 100, 72
    image = Image.new("RGB", (w, h))
    mask = np.zeros((h, w), bool)
    mask[30:40, 80:99] = True  # all share one centroid, near the right edge
    keys = list(range(5))
    out = np.asarray(caption_masks(image, [mask] * 5, keys, [f"#{k} a long caption" for k in keys]))
    boxes = [_tags(out, key_colour(k)) for k in keys]
    assert all(b is not None for b in boxes)
    for i, a in enumerate(boxes):
        assert a[0] >= 0 and a[1] >= 0 and a[2] < w and a[3] < h
        for b in boxes[i + 1 :]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]  # disjoint


def test_boxes_are_clipped_and_keep_their_tags() -> None:
    image = Image.new("RGB", (200, 120))
    dets = [Detection(0, "person", 0.9, (-1176, -30, 80, 100)), Detection(1, "car", 0.8, (150, 50, 900, 400)),
            Detection(2, "gone", 0.7, (-50, -50, -10, -10))]  # fmt: skip
    out = np.asarray(draw_detections(image, dets))
    person = _tags(out, PALETTE[0])
    assert person is not None and person[:2] == (0, 0) and person[2] == 80  # box clipped at the picture
    tag = (out[2:14, 2:40] == PALETTE[0]).all(-1).mean()
    assert tag > 0.5 and (out[2:14, 2:40] != PALETTE[0]).any(-1).any()  # its tag, inside, with text
    car = _tags(out, PALETTE[1])
    assert car is not None and car[2] == 199 and car[3] == 119
    assert _tags(out, PALETTE[2]) is None  # wholly outside: not drawn
