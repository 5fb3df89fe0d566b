"""Files and folders: atomic writes (nothing half-written ever appears at the destination) and the checks
that a ``--model`` folder holds a model of the family a command takes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..utils.images import ImageInputError
from .errors import ModelFolderError

if TYPE_CHECKING:
    from .registry import ModelFamily


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


def require_family_folder(model_dir: str | Path, verb: str) -> tuple[Path, ModelFamily]:
    """``model_dir`` and its family, checked to be one the command ``verb`` takes (see ``ModelFamily.tasks``)."""
    from transformers import AutoConfig

    from .registry import families_for_task, family_for_config

    model_dir = require_model_folder(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    try:
        family = family_for_config(config)
    except ValueError as err:
        raise ModelFolderError(f"--model {model_dir}: {err}") from err
    if verb not in family.tasks:
        takes = ", ".join(f.name for f in families_for_task(verb))
        raise ModelFolderError(f"--model {model_dir}: a {family.name} model; `{verb}` takes {takes} models")
    return model_dir, family
