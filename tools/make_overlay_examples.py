"""Write docs/assets/overlay_masks.png, overlay_boxes.png, overlay_prompts.png and overlay_single_object.png: the
overlays drawn on synthetic pictures (the last two through ``visionports segment``'s own renderer, box exemplars,
clicks and boxes included).

Run: .venv/bin/python tools/make_overlay_examples.py [output folder]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from visionports.utils.drawing import Detection, blend_masks, caption_masks, draw_detections

SIZE = (640, 400)  # width, height


def scene(width: int = SIZE[0], height: int = SIZE[1]) -> Image.Image:
    """A synthetic 'photo': a sky-to-ground gradient, a few shaded discs and a light texture."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([120 + 60 * y / height, 160 + 40 * y / height, 220 - 80 * y / height], -1)
    ground = np.stack([90 + 0 * y, 120 + 30 * np.sin(x / 23), 60 + 0 * y], -1)
    img = np.where((y > height * 0.55)[..., None], ground, sky)
    for cx, cy, r, c in [
        (150, 230, 70, (180, 60, 50)),
        (420, 190, 90, (70, 70, 160)),
        (540, 300, 50, (200, 200, 80)),
    ]:
        disc = (x - cx) ** 2 + (y - cy) ** 2 < r**2
        img[disc] = np.array(c) * (0.7 + 0.3 * np.cos((x[disc] - cx) / r))[:, None]
    img += (6 * np.sin(x / 7) * np.cos(y / 11))[..., None]  # a little texture
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def ellipse(
    cx: float, cy: float, rx: float, ry: float, width: int = SIZE[0], height: int = SIZE[1]
) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def masks_picture() -> Image.Image:
    """12 overlapping tracked masks, several sharing a centre, captioned like the video task does."""
    shapes = [(320, 200, 300, 190), (320, 200, 200, 120), (320, 200, 120, 80), (320, 200, 60, 40),
              (150, 230, 80, 80), (150, 230, 40, 60), (420, 190, 95, 95), (540, 300, 60, 60),
              (600, 40, 80, 50), (30, 370, 60, 50), (470, 120, 40, 30), (250, 330, 90, 40)]  # fmt: skip
    names = ["ground", "field", "car", "dog", "person", "bag", "ball", "cat", "bird", "bench", "kite", "bike"]
    masks = [ellipse(*s) for s in shapes]
    keys = [3, 7, 11, 12, 14, 15, 18, 21, 25, 30, 31, 40]
    captions = [f"#{k} {n} 0.{90 - i}" for i, (k, n) in enumerate(zip(keys, names, strict=True))]
    return caption_masks(blend_masks(scene(), masks, keys), masks, keys, captions)


def boxes_picture() -> Image.Image:
    """Boxes partly outside the picture (as detectors return them) and several stacked on one object."""
    dets = [Detection(0, "person", 0.91, (-1176, 120, 210, 380)), Detection(2, "car", 0.88, (330, -40, 520, 260)),
            Detection(5, "bus", 0.62, (560, 250, 900, 520)), Detection(16, "dog", 0.77, (100, 180, 200, 300)),
            Detection(16, "dog", 0.55, (105, 185, 205, 305)), Detection(15, "cat", 0.49, (110, 175, 195, 310)),
            Detection(14, "bird", 0.83, (560, 10, 620, 60))]  # fmt: skip
    return draw_detections(scene(), dets)


def prompts_picture() -> Image.Image:
    """What ``segment --box ... --negative-box ... --point ...`` draws: found instances, then the exemplars
    (dashed boxes and dots, green positive, red negative)."""
    from visionports.tasks.segment_images import _render

    discs = [(150, 230, 70, 0.83), (420, 190, 90, 0.77)]
    found = [{"label": "visual", "score": score, "mask": ellipse(cx, cy, r, r),
              "box": {"xmin": cx - r, "ymin": cy - r, "xmax": cx + r, "ymax": cy + r}}
             for cx, cy, r, score in discs]  # fmt: skip
    geometry = {"input_boxes": [[75, 155, 225, 305], [490, 250, 590, 350]], "input_boxes_labels": [1, 0],
                "input_points": [[420, 190], [540, 300]], "input_points_labels": [1, 0]}  # fmt: skip
    return _render(["visual"], geometry)(scene(), found)


def single_object_picture() -> Image.Image:
    """What ``segment --point ... --box ... --single-object`` draws: the one object's mask, then the prompts."""
    from visionports.tasks.segment_images import _render

    found = [{"label": "object", "score": 0.91, "mask": ellipse(420, 190, 90, 90),
              "box": {"xmin": 330, "ymin": 100, "xmax": 510, "ymax": 280}}]  # fmt: skip
    geometry = {"input_boxes": [[320, 95, 515, 290]], "input_boxes_labels": [1], "input_points": [[420, 190]],
                "input_points_labels": [1]}  # fmt: skip
    return _render(["object"], geometry)(scene(), found)


def tracking_picture() -> Image.Image:
    """Three frames of what ``segment-video --prompt ball`` writes with a SAM3-LiteText model: each track in its
    own colour with ``#id prompt score`` (the drawing functions the task uses, on two moving balls)."""
    from PIL import ImageDraw

    from visionports.utils.drawing import blend_masks, caption_masks

    strip = Image.new("RGB", (3 * 320, 200))
    for t in range(3):
        frame = scene().resize((320, 200))
        balls = [(75 + 20 * t, 115, 35, (200, 190, 60)), (210 - 15 * t, 95 + 5 * t, 45, (230, 120, 40))]
        draw = ImageDraw.Draw(frame)
        for cx, cy, r, colour in balls:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        masks = [ellipse(cx, cy, r, r, 320, 200) for cx, cy, r, _ in balls]
        keys, captions = [0, 1], ["#0 ball 0.91", "#1 ball 0.87"]
        strip.paste(caption_masks(blend_masks(frame, masks, keys), masks, keys, captions), (320 * t, 0))
    return strip


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pictures = [("overlay_masks.png", masks_picture()), ("overlay_boxes.png", boxes_picture()),
                ("overlay_prompts.png", prompts_picture()), ("overlay_single_object.png", single_object_picture()),
                ("overlay_tracking.png", tracking_picture())]  # fmt: skip
    for name, picture in pictures:
        picture.save(folder / name, optimize=True)
        print(folder / name, (folder / name).stat().st_size // 1024, "KB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "assets")
