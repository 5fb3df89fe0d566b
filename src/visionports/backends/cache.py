"""A cache of exported graphs beside a model folder: ``<parent>/.<name>.visionports-cache/<key>/``.

The key hashes what the export depends on: the content of ``config.json`` and ``preprocessor_config.json``,
every other file's name, size and ``mtime_ns`` (weights are not hashed: a rewrite changes the size or the
nanosecond mtime, and hashing a large checkpoint on every run would cost more than the check is worth), and
the caller's settings (input size, dtype, backend, versions). An entry is built in a temporary sibling folder
and renamed into place whole, so a crash never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from ..core.errors import OutputFolderError
from ..core.files import make_temporary_sibling_dir

HASHED_FILES = ("config.json", "preprocessor_config.json")


def cache_root(model_dir: Path) -> Path:
    """The hidden sibling folder that holds ``model_dir``'s cache entries."""
    model_dir = model_dir.resolve()
    return model_dir.parent / f".{model_dir.name}.visionports-cache"


def folder_fingerprint(model_dir: Path) -> dict[str, object]:
    """What identifies the folder's content: hashed configs, stat of every other (non-hidden) file."""
    files: dict[str, object] = {}
    for path in sorted(model_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.name in HASHED_FILES:
            files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            stat = path.stat()
            files[path.name] = [stat.st_size, stat.st_mtime_ns]
    return files


def cache_key(model_dir: Path, settings: Mapping[str, object]) -> str:
    """A short hex key of the folder's fingerprint and ``settings``."""
    blob = json.dumps({"files": folder_fingerprint(model_dir), **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_entry(model_dir: Path, key: str, build: Callable[[Path], None]) -> Path:
    """The entry folder for ``key``, calling ``build(tmp_folder)`` first when it does not exist yet.

    ``build`` fills an empty temporary folder; it is renamed into place only when ``build`` returns (an
    entry another process finished first is kept and ours discarded).
    """
    target = cache_root(model_dir) / key
    if target.is_dir():
        return target
    try:
        tmp = make_temporary_sibling_dir(target)
    except OSError as err:
        raise OutputFolderError(f"cannot write the export cache {target.parent}: {err}") from err
    try:
        build(tmp)
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
