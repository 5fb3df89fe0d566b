"""Writing outputs so that nothing half-written ever appears at the destination."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..utils.images import ImageInputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary sibling file, then move it to ``path`` (usual permissions)."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_temporary_sibling_dir(target: Path) -> Path:
    """An empty folder beside ``target`` (same file system, so it can be renamed into place), usual permissions."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def require_model_folder(model_dir: str | Path) -> Path:
    """``model_dir`` as a Path; ``ImageInputError`` when it holds no ``config.json`` (not a converted model)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ImageInputError(f"{model_dir}: not a model folder (no config.json); convert a checkpoint first")
    return model_dir
