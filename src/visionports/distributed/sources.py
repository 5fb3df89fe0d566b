"""Inputs of a distributed run: local paths, folders, globs, manifest files, or any URL fsspec opens."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ..core.errors import ImageInputError
from ..utils.images import IMAGE_SUFFIXES, collect_image_files, open_image, to_rgb

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".ts", ".m4v", ".mpg", ".mpeg"})
MANIFEST_SUFFIXES = {".txt", ".lst", ".jsonl"}  # one input per line (JSONL: a "path" key per line)
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GLOB = re.compile(r"[*?\[]")


def is_url(text: str) -> bool:
    return bool(_URL.match(text))


def expand_inputs(
    inputs: Sequence[str | Path], suffixes: frozenset[str] | set[str] = IMAGE_SUFFIXES
) -> list[str]:
    """Every input image as a path or URL, in a stable order: files and folders as ``detect`` takes them,
    ``*``/``?`` globs (local or remote), manifest files (``.txt`` / ``.lst``: one per line; ``.jsonl``: a
    ``path`` per line), and URLs of files fsspec opens (``s3://``, ``gs://``, ``https://`` ...). Folders and
    globs yield the files with ``suffixes`` (images by default). An input named twice is kept once."""
    found: list[str] = []
    for item in map(str, inputs):
        if Path(item).suffix.lower() in MANIFEST_SUFFIXES and not is_url(item):
            found += _manifest(Path(item))
        elif _GLOB.search(item):
            found += _glob(item, suffixes)
        elif is_url(item):
            found.append(item)
        else:
            found += [str(p) for p in collect_image_files([item], suffixes)]
    if not found:
        raise ImageInputError(f"no input images in {', '.join(map(str, inputs))}")
    return list(dict.fromkeys(found))


def _manifest(path: Path) -> list[str]:
    if not path.is_file():
        raise ImageInputError(f"{path}: no such manifest file")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and line[0] != "#"]
    if path.suffix.lower() != ".jsonl":
        return lines
    try:
        return [str(json.loads(line)["path"]) for line in lines]
    except (ValueError, KeyError, TypeError) as err:
        raise ImageInputError(f'{path}: each line must be a JSON object with a "path" ({err})') from err


def _glob(pattern: str, suffixes: frozenset[str] | set[str]) -> list[str]:
    """Image files matching ``pattern`` (sorted); URLs keep their protocol."""
    import fsspec

    fs, _ = fsspec.core.url_to_fs(pattern)
    matches = sorted(fs.glob(pattern))
    if not matches:
        raise ImageInputError(f"{pattern}: matches no files")
    protocol = pattern.split("://", 1)[0] + "://" if is_url(pattern) else ""
    return [protocol + m if protocol and not is_url(m) else m for m in matches
            if Path(m).suffix.lower() in suffixes]  # fmt: skip


def open_input_image(uri: str) -> Image.Image:
    """An input image as RGB (EXIF orientation applied): a local file through ``open_image``'s checks, a URL
    read with fsspec and decoded the same way."""
    if not is_url(uri):
        return open_image(uri)
    import fsspec

    try:
        with fsspec.open(uri, "rb") as handle:
            data = handle.read()
    except (OSError, ValueError) as err:
        raise ImageInputError(f"{uri}: cannot be read ({err})") from err
    try:
        from PIL import ImageOps

        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return to_rgb(ImageOps.exif_transpose(image), name=uri)
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageInputError(f"{uri}: not an image file PIL can read ({err})") from err
