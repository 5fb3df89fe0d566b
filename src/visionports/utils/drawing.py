"""Annotated pictures: boxes with label names and scores, blended masks and their captions, readable at any size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

# 20 well-separated colours (Kelly/Glasbey-like), cycled by class id
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128),
)  # fmt: skip


@dataclass(frozen=True)
class Detection:
    label_id: int
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels

    def to_json(self) -> dict:
        return {"label_id": self.label_id, "label": self.label, "score": round(self.score, 6),
                "box": [round(v, 2) for v in self.box]}  # fmt: skip


def _text_colour(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


@lru_cache(maxsize=8)
def _font(longest_side: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The label font for an image whose longer side is ``longest_side`` pixels (13 px at 640)."""
    return ImageFont.load_default(size=max(10, round(13 * longest_side / 640)))


def draw_detections(image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """A copy of ``image`` with each detection's box and ``label score`` tag (best scores drawn last)."""
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    scale = max(canvas.size) / 640
    line = max(1, round(2 * scale))
    font = _font(max(canvas.size))
    for det in sorted(detections, key=lambda d: d.score):
        colour = PALETTE[det.label_id % len(PALETTE)]
        x1, y1, x2, y2 = det.box
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=line)
        text = f"{det.label} {det.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = max(1, line)
        height, width = bottom - top + 2 * pad, right - left + 2 * pad
        tag_y = y1 - height if y1 - height >= 0 else y1
        tag_x = min(max(0.0, x1), max(0.0, canvas.width - width))
        draw.rectangle((tag_x, tag_y, tag_x + width, tag_y + height), fill=colour)
        draw.text((tag_x + pad - left, tag_y + pad - top), text, fill=_text_colour(colour), font=font)
    return canvas


def blend_masks(
    image: Image.Image, masks: Sequence, label_ids: Sequence[int], alpha: float = 0.45
) -> Image.Image:
    """A copy of ``image`` with each boolean mask [H, W] blended in its class colour."""
    import numpy as np

    canvas = np.asarray(image.convert("RGB")).astype(np.float32)
    for mask, label_id in zip(masks, label_ids, strict=True):
        region = np.asarray(mask, dtype=bool)
        colour = np.array(PALETTE[label_id % len(PALETTE)], dtype=np.float32)
        canvas[region] = (1 - alpha) * canvas[region] + alpha * colour
    return Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8))


def caption_masks(
    image: Image.Image, masks: Sequence, label_ids: Sequence[int], captions: Sequence[str]
) -> Image.Image:
    """A copy of ``image`` with each caption written at the centre of its (non-empty) boolean mask [H, W],
    white outlined in the mask's class colour."""
    import numpy as np

    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    font = _font(max(canvas.size))
    for mask, label_id, caption in zip(masks, label_ids, captions, strict=True):
        ys, xs = np.nonzero(np.asarray(mask, dtype=bool))
        if len(xs):
            colour = PALETTE[label_id % len(PALETTE)]
            centre = (float(xs.mean()), float(ys.mean()))
            draw.text(
                centre,
                caption,
                fill=(255, 255, 255),
                font=font,
                anchor="mm",
                stroke_width=2,
                stroke_fill=colour,
            )
    return canvas
