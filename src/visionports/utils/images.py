"""Turning user images (files, PIL images, arrays, tensors) into RGB PIL images, with clear errors.

Accepted pixel values (anything else is an :class:`ImageInputError` naming the argument, dtype and min/max,
never a silent wrap-around): ``uint8`` 0..255; ``uint16`` (and PIL's 16/32-bit integer modes) 0..65535,
read as 16-bit and scaled to 8 bits; every other integer dtype 0..255; ``bool`` (False/True -> 0/255);
floating dtypes (``float16``, ``bfloat16``, ``float32``, ``float64``) are read as [0, 1] and clipped, NaN and
infinities refused. Complex and object arrays are refused.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.errors import ImageInputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


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
    except Image.DecompressionBombError as err:
        raise ImageInputError(f"{path}: {_bomb_hint(err)}") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageInputError(f"{path}: truncated or corrupt image ({err})") from err
    return to_rgb(image, name=str(path))


def _bomb_hint(err: Exception) -> str:
    return (
        f"too many pixels for PIL's decompression-bomb limit ({err}); if you trust the file, raise "
        "PIL.Image.MAX_IMAGE_PIXELS"
    )


def to_rgb(image: Any, name: str = "image") -> Image.Image:
    """An RGB PIL image from a PIL image, a numpy array or a torch tensor (HWC or CHW).

    Grayscale is replicated, alpha is composited over white, 16-bit data is scaled to 8 bits, float arrays
    are read as values in [0, 1]; PIL images are rotated as their EXIF orientation says.
    """
    if isinstance(image, Image.Image):
        try:
            return _pil_to_rgb(image, name)
        except ImageInputError:
            raise
        except Image.DecompressionBombError as err:
            raise ImageInputError(f"{name}: {_bomb_hint(err)}") from err
        except (OSError, SyntaxError, ValueError) as err:  # a lazily opened, truncated file; an odd mode
            raise ImageInputError(
                f"{name}: PIL cannot decode or convert this {image.mode} image ({err})"
            ) from err
    if isinstance(image, np.ndarray | torch.Tensor):
        return _pil_to_rgb(Image.fromarray(_array_to_uint8(image, name)), name)
    raise ImageInputError(
        f"{name}: expected a PIL image, numpy array or torch tensor, got {type(image).__name__}"
    )


def _pil_to_rgb(image: Image.Image, name: str) -> Image.Image:
    """The RGB conversion of a PIL image (decoded here when it was opened lazily)."""
    if image.width == 0 or image.height == 0:
        raise ImageInputError(f"{name}: the image is empty ({image.width}x{image.height})")
    pil = ImageOps.exif_transpose(image)
    if pil.mode in ("I;16", "I;16B", "I;16L", "I"):
        pil = Image.fromarray(_array_to_uint8(np.asarray(pil), name, sixteen_bit=True))
    elif pil.mode == "F":
        pil = Image.fromarray(_array_to_uint8(np.asarray(pil), name))
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        rgba = pil.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        pil = Image.alpha_composite(background, rgba)
    return pil.convert("RGB") if pil.mode != "RGB" else pil


def to_numpy(array: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """A numpy view of an array or tensor; torch dtypes numpy lacks (bfloat16, ...) go through float32."""
    if not isinstance(array, torch.Tensor):
        return np.asarray(array)
    tensor = array.detach().cpu()
    if tensor.dtype in (torch.bfloat16, *_FLOAT8):
        tensor = tensor.float()
    try:
        return tensor.numpy()
    except TypeError as err:
        raise ImageInputError(f"{name}: unsupported pixel type {tensor.dtype}") from err


_FLOAT8 = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))


def check_real_pixels(array: np.ndarray, name: str, what: str = "image") -> None:
    """``ImageInputError`` unless the pixels are real numbers (bool, integer, floating) and finite."""
    if not (
        array.dtype == np.bool_
        or np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
    ):
        raise ImageInputError(f"{name}: unsupported pixel type {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ImageInputError(f"{name}: the {what} holds NaN or infinite values")


def _check_range(data: np.ndarray, name: str, high: int) -> None:
    low_seen, high_seen = int(data.min()), int(data.max())
    if low_seen < 0 or high_seen > high:
        raise ImageInputError(
            f"{name}: {data.dtype} pixel values must lie in 0..{high}, got min {low_seen} and max {high_seen}; "
            "scale the image to 0..255 (or pass uint16 for 16-bit data, floats in [0, 1])"
        )


def _array_to_uint8(array: np.ndarray | torch.Tensor, name: str, sixteen_bit: bool = False) -> np.ndarray:
    """uint8 [H, W] or [H, W, 3|4] pixels of an array, its values checked against its dtype's range."""
    data = to_numpy(array, name)
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
    if data.dtype == np.bool_:
        return np.ascontiguousarray(data.astype(np.uint8) * 255)
    if np.issubdtype(data.dtype, np.integer):
        sixteen_bit = sixteen_bit or data.dtype == np.uint16
        _check_range(data, name, 65535 if sixteen_bit else 255)
        shifted = data.astype(np.uint32) >> 8 if sixteen_bit else data
        return np.ascontiguousarray(shifted.astype(np.uint8))
    if np.issubdtype(data.dtype, np.floating):
        if not np.isfinite(data).all():
            raise ImageInputError(f"{name}: the image holds NaN or infinite values")
        return np.ascontiguousarray((data.clip(0.0, 1.0) * 255.0).round().astype(np.uint8))
    raise ImageInputError(f"{name}: unsupported pixel type {data.dtype}")


def as_image_list(images: Any) -> list[Any]:
    """A list of single images from one image, a list of images or a batched array/tensor [B, ...]."""
    if isinstance(images, np.ndarray | torch.Tensor) and images.ndim == 4:
        if len(images) == 0:
            raise ImageInputError(f"images: got an empty batch (shape {list(images.shape)})")
        return list(images)
    if isinstance(images, Sequence) and not isinstance(images, str | bytes):
        if len(images) == 0:
            raise ImageInputError("images: got an empty list")
        return list(images)
    return [images]


def collect_image_files(
    inputs: Sequence[str | Path], suffixes: Collection[str] = IMAGE_SUFFIXES
) -> list[Path]:
    """Image files (or files with other ``suffixes``) named directly or found (non-recursively, sorted) in the
    given folders."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                kind = "image files" if suffixes is IMAGE_SUFFIXES else "files"
                raise ImageInputError(f"{item}: folder holds no {kind} ({', '.join(sorted(suffixes))})")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise ImageInputError(f"{item}: no such file or folder")
    return files
