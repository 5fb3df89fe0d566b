"""Turning user images (files, PIL images, arrays, tensors) into RGB PIL images, with clear errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.errors import VisionportsError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class ImageInputError(VisionportsError, ValueError):
    """An input cannot be used as an image; the message names it and says what was expected."""


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image file, honouring its EXIF orientation."""
    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"{path}: no such image file")
    try:
        with Image.open(path) as handle:
            handle.load()
            image = ImageOps.exif_transpose(handle)
    except UnidentifiedImageError as err:
        raise ImageInputError(f"{path}: not an image file PIL can read") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageInputError(f"{path}: truncated or corrupt image ({err})") from err
    return to_rgb(image, name=str(path))


def to_rgb(image: Any, name: str = "image") -> Image.Image:
    """An RGB PIL image from a PIL image, a numpy array or a torch tensor (HWC or CHW).

    Grayscale is replicated, alpha is composited over white, 16-bit data is scaled to 8 bits, float arrays
    are read as values in [0, 1]; PIL images are rotated as their EXIF orientation says.
    """
    if isinstance(image, Image.Image):
        pil = ImageOps.exif_transpose(image)
    elif isinstance(image, np.ndarray | torch.Tensor):
        pil = Image.fromarray(_array_to_uint8(image, name))
    else:
        raise ImageInputError(
            f"{name}: expected a PIL image, numpy array or torch tensor, got {type(image).__name__}"
        )
    if pil.width == 0 or pil.height == 0:
        raise ImageInputError(f"{name}: the image is empty ({pil.width}x{pil.height})")
    if pil.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pil = Image.fromarray(_array_to_uint8(np.asarray(pil), name))
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        rgba = pil.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        pil = Image.alpha_composite(background, rgba)
    return pil.convert("RGB") if pil.mode != "RGB" else pil


def _array_to_uint8(array: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    data = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if data.ndim == 3 and data.shape[0] in (1, 3, 4) and data.shape[-1] not in (1, 3, 4):
        data = np.moveaxis(data, 0, -1)  # CHW -> HWC
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[-1] not in (3, 4)):
        raise ImageInputError(
            f"{name}: expected an array of shape [H, W], [H, W, 1|3|4] or [1|3|4, H, W], got {list(data.shape)}"
        )
    if data.size == 0:
        raise ImageInputError(f"{name}: the image is empty (shape {list(data.shape)})")
    if data.dtype == np.uint8:
        return np.ascontiguousarray(data)
    if data.dtype == np.uint16 or (np.issubdtype(data.dtype, np.integer) and data.max() > 255):
        return np.ascontiguousarray((data.astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8))
    if np.issubdtype(data.dtype, np.integer) or data.dtype == np.bool_:
        return np.ascontiguousarray(data.astype(np.uint8) * (255 if data.dtype == np.bool_ else 1))
    if np.issubdtype(data.dtype, np.floating):
        if not np.isfinite(data).all():
            raise ImageInputError(f"{name}: the image holds NaN or infinite values")
        return np.ascontiguousarray((data.clip(0.0, 1.0) * 255.0).round().astype(np.uint8))
    raise ImageInputError(f"{name}: unsupported pixel type {data.dtype}")


def as_image_list(images: Any) -> list[Any]:
    """A list of single images from one image, a list of images or a batched array/tensor [B, ...]."""
    if isinstance(images, np.ndarray | torch.Tensor) and images.ndim == 4:
        return list(images)
    if isinstance(images, Sequence) and not isinstance(images, str | bytes):
        if len(images) == 0:
            raise ImageInputError("images: got an empty list")
        return list(images)
    return [images]


def collect_image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly or found (non-recursively, sorted) in the given folders."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageInputError(
                    f"{item}: folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise ImageInputError(f"{item}: no such file or folder")
    return files
