"""Binary masks: COCO run-length encodings (the compressed string of ``pycocotools.mask.encode``), the sizes
of their connected regions and their bounding boxes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """``{"size": [H, W], "counts": str}`` of a 2-D mask (nonzero = inside), as ``pycocotools`` writes it.

    Run lengths over the column-major pixels, starting with a (possibly empty) run of zeros; from the fourth
    on, each is stored as its difference with the run two before, in 5-bit groups offset by 48.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W], got shape {list(mask.shape)}")
    height, width = mask.shape
    flat = mask.ravel(order="F").astype(bool)
    return {"size": [int(height), int(width)], "counts": _counts_to_string(_run_lengths(flat))}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """The bool ``[H, W]`` mask of ``{"size": [H, W], "counts": str | bytes | list[int]}``."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = _string_to_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if sum(runs) != height * width or any(r < 0 for r in runs):
        raise ValueError(
            f"RLE counts cover {sum(runs)} pixels, the size {height}x{width} needs {height * width}"
        )
    values = np.arange(len(runs)) % 2 == 1  # runs alternate zeros, ones, zeros, ...
    flat = np.repeat(values, runs)
    return flat.reshape((width, height)).T.copy()


def _run_lengths(flat: np.ndarray) -> list[int]:
    if not flat.size:
        return [0]  # pycocotools' count for an empty image
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def _counts_to_string(counts: list[int]) -> str:
    chars = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative differences end at -1
            more = x != -1 if c & 0x10 else x != 0
            chars.append(chr((c | 0x20 if more else c) + 48))
    return "".join(chars)


def _string_to_counts(text: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                raise ValueError("RLE counts string ends inside a number")
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        counts.append(x + counts[-2] if len(counts) > 2 else x)
    return counts


def region_sizes(regions: torch.Tensor) -> torch.Tensor:
    """For bool maps ``[..., H, W]``: at each ``True`` pixel the size of its 8-connected region, 0 elsewhere."""
    from scipy import ndimage

    flat = regions.reshape(-1, *regions.shape[-2:]).cpu().numpy()
    sizes = np.zeros(flat.shape, dtype=np.int64)
    for k, region in enumerate(flat):
        labels, count = ndimage.label(region, structure=np.ones((3, 3), dtype=bool))
        if count:
            counts = np.bincount(labels.ravel())
            counts[0] = 0
            sizes[k] = counts[labels]
    return torch.from_numpy(sizes).reshape(regions.shape).to(regions.device)


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` of a bool ``[H, W]`` mask, max edges exclusive; zeros for an empty mask."""
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return 0.0, 0.0, 0.0, 0.0
    return float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)
