"""Annotated pictures: boxes with label names and scores, translucent masks with contours and captions.

Every key (class id, track id, label) keeps one colour across frames and runs, fills are computed once from
the original pixels (so the frame always shows through), labels avoid each other and stay inside the picture.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# 20 well-separated colours (Kelly/Glasbey-like)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128),
)  # fmt: skip

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Rect = tuple[int, int, int, int]  # left, top, right, bottom (exclusive)


@dataclass(frozen=True)
class Detection:
    label_id: int
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels

    def to_json(self) -> dict:
        return {"label_id": self.label_id, "label": self.label, "score": round(self.score, 6),
                "box": [round(v, 2) for v in self.box]}  # fmt: skip


def key_colour(key: Hashable) -> tuple[int, int, int]:
    """The colour of ``key``, the same in every frame and run: integers index the palette (so nearby ids
    differ), anything else by the CRC-32 of its text (never Python's salted ``hash``)."""
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return PALETTE[int(key) % len(PALETTE)]
    return PALETTE[zlib.crc32(str(key).encode()) % len(PALETTE)]


def _text_colour(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


@lru_cache(maxsize=8)
def _load_font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _font_size(width: int, height: int) -> int:
    """The label font size for a ``width`` x ``height`` picture: 12 px at least, 1/40 of the shorter side."""
    return max(12, min(width, height) // 40)


def _font(width: int, height: int) -> Font:
    return _load_font(_font_size(width, height))


def _line_width(width: int, height: int) -> int:
    return max(1, round(2 * max(width, height) / 640))


# ---------------------------------------------------------------- labels


def _overlap(rects: np.ndarray, placed: np.ndarray) -> np.ndarray:
    """The area each of ``rects`` [N, 4] shares with all of ``placed`` [M, 4] together (summed)."""
    ix = np.minimum(rects[:, None, 2], placed[None, :, 2]) - np.maximum(rects[:, None, 0], placed[None, :, 0])
    iy = np.minimum(rects[:, None, 3], placed[None, :, 3]) - np.maximum(rects[:, None, 1], placed[None, :, 1])
    return (ix.clip(0) * iy.clip(0)).sum(1)


class _Labeller:
    """Places filled text tags that avoid the ones placed before and stay inside the picture."""

    def __init__(self, canvas: Image.Image) -> None:
        self.canvas = canvas
        self.draw = ImageDraw.Draw(canvas)
        self.font = _font(*canvas.size)
        self.pad = max(2, _font_size(*canvas.size) // 6)
        self.placed: list[Rect] = []

    def _fit(self, text: str) -> tuple[str, int, int, int, int]:
        """``text`` (cut short with '..' if wider than the picture), its ink offset and its tag's size."""
        limit, kept = self.canvas.width - 2 * self.pad, text
        while True:
            left, top, right, bottom = self.draw.textbbox((0, 0), text, font=self.font)
            if right - left <= limit or not kept:
                return text, left, top, right - left + 2 * self.pad, bottom - top + 2 * self.pad
            kept = kept[:-1]
            text = kept + ".."

    def height(self, text: str) -> int:
        """The height of ``text``'s tag."""
        return self._fit(text)[4]

    def _best(self, x: float, y: float, w: int, h: int) -> Rect:
        """Of the positions near (x, y), stepped down, up, then sideways, the first least overlapping one."""
        W, H = self.canvas.size
        steps = [0] + [s for k in range(1, H // max(h, 1) + 2) for s in (k, -k)]
        cands = np.array([(x + dx * w, y + dy * h) for dx in (0, 1, -1, 2, -2) for dy in steps])
        left = cands[:, 0].clip(0, max(W - w, 0)).round().astype(np.int64)
        top = cands[:, 1].clip(0, max(H - h, 0)).round().astype(np.int64)
        rects = np.stack([left, top, left + w, top + h], 1)
        best = rects[int(_overlap(rects, np.array(self.placed, dtype=np.int64).reshape(-1, 4)).argmin())]
        return tuple(int(v) for v in best)  # type: ignore[return-value]

    def tag(self, text: str, x: float, y: float, colour: tuple[int, int, int]) -> Rect:
        """Draw ``text`` on a ``colour`` tag whose top-left is near (x, y); the tag's rectangle."""
        text, left, top, w, h = self._fit(text)
        rect = self._best(x, y, w, h)
        self.placed.append(rect)
        self.draw.rectangle((rect[0], rect[1], rect[2] - 1, rect[3] - 1), fill=colour)
        origin = (rect[0] + self.pad - left, rect[1] + self.pad - top)
        self.draw.text(origin, text, fill=_text_colour(colour), font=self.font)
        return rect


# ---------------------------------------------------------------- boxes


def _clip_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """``box`` ordered, rounded and clipped to the picture; None when it lies wholly outside."""
    x1, x2 = sorted((float(box[0]), float(box[2])))
    y1, y2 = sorted((float(box[1]), float(box[3])))
    if x2 < 0 or y2 < 0 or x1 > width - 1 or y1 > height - 1:
        return None
    clip = lambda v, hi: int(round(min(max(v, 0.0), hi)))  # noqa: E731
    return clip(x1, width - 1), clip(y1, height - 1), clip(x2, width - 1), clip(y2, height - 1)


def draw_detections(image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """A copy of ``image`` with each detection's box (clipped to the picture) and ``label score`` tag
    (above the box, or inside it when there is no room above; best scores drawn last)."""
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    line = _line_width(*canvas.size)
    labeller = _Labeller(canvas)
    shown = [(det, box) for det in detections if (box := _clip_box(det.box, *canvas.size)) is not None]
    for det, box in sorted(shown, key=lambda item: item[0].score):
        draw.rectangle(box, outline=key_colour(det.label_id), width=line)
    for det, box in sorted(shown, key=lambda item: -item[0].score):  # the best get the best places
        text = f"{det.label} {det.score:.2f}"
        above = box[1] - labeller.height(text)
        labeller.tag(text, box[0], above if above >= 0 else box[1], key_colour(det.label_id))
    return canvas


POSITIVE_PROMPT, NEGATIVE_PROMPT = (40, 220, 60), (230, 40, 40)


def draw_prompts(
    image: Image.Image,
    boxes: Sequence[Sequence[float]] = (),
    box_labels: Sequence[int] | None = None,
    points: Sequence[Sequence[float]] = (),
    point_labels: Sequence[int] | None = None,
) -> Image.Image:
    """A copy of ``image`` with the prompt's box exemplars (dashed outlines) and points (ringed dots): green for
    positive (label 1, the default), red for negative (label 0)."""
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    line = _line_width(*canvas.size)
    dash = 4 * line
    for box, label in zip(boxes, box_labels or [1] * len(boxes), strict=True):
        clipped = _clip_box(box, *canvas.size)
        if clipped is None:
            continue
        x1, y1, x2, y2 = clipped
        colour = POSITIVE_PROMPT if label else NEGATIVE_PROMPT
        for start in range(x1, x2 + 1, 2 * dash):
            for y in (y1, y2):
                draw.line([(start, y), (min(start + dash, x2), y)], fill=colour, width=line)
        for start in range(y1, y2 + 1, 2 * dash):
            for x in (x1, x2):
                draw.line([(x, start), (x, min(start + dash, y2))], fill=colour, width=line)
    radius = 3 * line
    for (x, y), label in zip(points, point_labels or [1] * len(points), strict=True):
        colour = POSITIVE_PROMPT if label else NEGATIVE_PROMPT
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(255, 255, 255),
                     width=max(1, line // 2))  # fmt: skip
    return canvas


# ---------------------------------------------------------------- masks


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` shrunk by ``steps`` pixels (4-neighbourhood; the picture's border does not erode)."""
    for _ in range(steps):
        p = np.pad(mask, 1, mode="edge")
        mask = mask & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask


def blend_masks(
    image: Image.Image,
    masks: Sequence,
    label_ids: Sequence[Hashable],
    alpha: float = 0.4,
    *,
    contour: bool = True,
) -> Image.Image:
    """A copy of ``image`` with each boolean mask [H, W] filled in its key's colour and outlined.

    Each pixel is blended once, from the original frame and the colour of the smallest mask covering it,
    so however many masks overlap the frame keeps ``1 - alpha`` of its contrast. Masks are read one at a time
    (a mask that is resized when read, like SAM3-LiteText's ``DeferredMask``, is never held with the others)."""
    frame = np.asarray(image.convert("RGB"))
    if len(masks) != len(label_ids):
        raise ValueError(f"{len(masks)} masks but {len(label_ids)} keys")
    if not len(masks):
        return Image.fromarray(frame.copy())
    colours = np.array([key_colour(k) for k in label_ids], dtype=np.float32)
    order = np.argsort([-_region(m).sum() for m in masks], kind="stable")  # largest first, smallest on top
    top = np.full(frame.shape[:2], -1, dtype=np.int32)
    for i in order:
        top[_region(masks[i])] = i
    out = frame.astype(np.float32)
    covered = top >= 0
    out[covered] = (1 - alpha) * out[covered] + alpha * colours[top[covered]]
    if contour:
        steps = 1 if min(frame.shape[:2]) < 400 else 2
        for i in order:
            region = _region(masks[i])
            out[region & ~_erode(region, steps)] = colours[i]
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


def _region(mask) -> np.ndarray:
    return np.asarray(mask, dtype=bool)


def caption_masks(
    image: Image.Image, masks: Sequence, label_ids: Sequence[Hashable], captions: Sequence[str]
) -> Image.Image:
    """A copy of ``image`` with each (non-empty) mask's caption on a tag in its key's colour, its top-left
    at the mask's topmost pixel, moved so that tags do not overlap and stay inside the picture."""
    canvas = image.convert("RGB")
    labeller = _Labeller(canvas)
    for mask, key, caption in zip(masks, label_ids, captions, strict=True):
        region = np.asarray(mask, dtype=bool)
        rows = np.flatnonzero(region.any(1))
        if len(rows):
            labeller.tag(caption, int(region[rows[0]].argmax()), rows[0], key_colour(key))
    return canvas
