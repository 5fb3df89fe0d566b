"""Reading annotation JSON files (COCO, YouTube-VIS, VIPSeg) with one error per problem, naming the file."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def malformed(annotation_file: Path, expected: str, error: type[Exception]) -> Iterator[None]:
    """A missing key or a value of the wrong type inside the block -> ``error`` saying ``expected``."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as err:
        raise error(f"{annotation_file}: {expected}") from err


def read_annotation_json(annotation_file: Path, lists: tuple[str, ...], error: type[Exception]) -> dict:
    """The file's JSON object, which must hold a list under each key of ``lists``."""
    try:
        data = json.loads(annotation_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{annotation_file}: not valid JSON ({err})") from err
    for key in lists:
        if not isinstance(data.get(key) if isinstance(data, dict) else None, list):
            raise error(f"{annotation_file}: expected a list under {key!r}")
    return data


def sorted_categories(data: dict, annotation_file: Path, error: type[Exception]) -> list[tuple[int, str]]:
    """``(id, name)`` of every category, by id; at least one."""
    with malformed(annotation_file, "each category needs an integer 'id' and a 'name'", error):
        categories = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
    if not categories:
        raise error(f"{annotation_file}: no categories")
    return categories


__all__ = ["malformed", "read_annotation_json", "sorted_categories"]
