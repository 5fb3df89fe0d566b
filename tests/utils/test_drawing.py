from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visionports.utils.drawing import PALETTE, Detection, draw_detections


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
