from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visionports.utils.drawing import PALETTE, Detection, blend_masks, caption_masks, draw_detections


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


def test_masks_are_blended_in_their_class_colour() -> None:
    image = Image.new("RGB", (20, 10), (100, 100, 100))
    mask = np.zeros((10, 20), bool)
    mask[2:5, 3:8] = True
    out = np.asarray(blend_masks(image, [mask, np.zeros_like(mask)], [1, 2], alpha=0.5))
    expected = np.round(0.5 * 100 + 0.5 * np.array(PALETTE[1])).astype(np.uint8)
    assert (out[mask] == expected).all() and (out[~mask] == 100).all()


def test_captions_sit_at_the_centre_of_non_empty_masks() -> None:
    image = Image.new("RGB", (200, 100))
    left, empty = np.zeros((100, 200), bool), np.zeros((100, 200), bool)
    left[30:70, 10:90] = True
    out = np.asarray(caption_masks(image, [left, empty], [3, 4], ["#1 cat", "#2 dog"]))
    assert np.asarray(image).max() == 0  # the original is untouched
    white = out.min(-1) > 200  # the (anti-aliased) white text
    ys, xs = np.nonzero(white)
    assert white.any() and abs(xs.mean() - 49.5) < 8 and abs(ys.mean() - 49.5) < 8  # centred on the mask
    assert (out == np.array(PALETTE[3])).all(-1).any() and not (out == np.array(PALETTE[4])).all(-1).any()
