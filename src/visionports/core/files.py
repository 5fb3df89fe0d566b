"""Files and folders: atomic writes (nothing half-written ever appears at the destination), one writer per
output folder, folders swapped into place so a crash leaves the old or the new one whole, and the checks that a
``--model`` folder (or Hub id in the local cache) holds a model of the family a command takes.

Temporary siblings carry their writer's process id (``.NAME.partial-PID-*``, ``.NAME.old-PID-*``), so those a
killed process left behind can be told from those of a live one and removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..utils.images import ImageInputError
from .errors import ModelFolderError, OutputFolderError

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks
    fcntl = None  # type: ignore[assignment]

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
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def resolve_model_folder(model: str | Path) -> Path:
    """A local folder as a Path; an ``owner/name`` Hub id that is no local path: its snapshot in the local
    Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``). Nothing is ever downloaded.

    ``ModelFolderError`` when a Hub id is not in the cache; any other missing path is returned as is.
    """
    path = Path(model)
    text = str(model)
    if os.path.lexists(path) or not _REPO_ID.fullmatch(text) or ".." in text or text.endswith((".", "-")):
        return path
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(text, local_files_only=True))
    except Exception as err:  # not cached (LocalEntryNotFoundError), or an invalid id / unreadable cache
        raise ModelFolderError(
            f"--model {text}: not a local folder and not in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
            f"download it with `huggingface-cli download {text}`"
        ) from err


def require_model_folder(model_dir: str | Path) -> Path:
    """``model_dir`` (a Hub id: its cached snapshot) as a Path; ``ImageInputError`` when it holds no
    ``config.json`` (not a converted model)."""
    model_dir = resolve_model_folder(model_dir)
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


def is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both compared as absolute and as resolved paths)."""
    pairs = ((Path(os.path.abspath(path)), Path(os.path.abspath(folder))), (path.resolve(), folder.resolve()))
    return any(p == f or f in p.parents for p, f in pairs)


def set_usual_permissions(folder: Path) -> None:
    """Give ``folder`` and everything in it the permissions the umask gives new files (e.g. 0644 / 0755)."""
    mask = _umask()
    for root, _dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~mask)
        for path in (os.path.join(root, name) for name in files):
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)


@contextlib.contextmanager
def output_lock(target: Path, lock: Path | None = None) -> Iterator[None]:
    """Hold an exclusive lock for writing ``target`` while the block runs: one writer per output.

    ``lock`` is the lock file (default ``.NAME.lock`` beside ``target``; a task run locks a file inside its output
    folder). ``OutputFolderError`` when another process holds it or the lock cannot be written. The lock dies
    with its process, so a killed run never leaves a stale one; the file is removed on release, and a lock whose
    file was replaced meanwhile is taken again, so two writers never hold different files of one name.
    """
    lock = lock or target.parent / f".{target.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = _acquire(lock, target)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def _acquire(lock: Path, target: Path) -> int:
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as err:
            raise OutputFolderError(f"{target}: cannot write {lock.parent} ({err.strerror or err})") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputFolderError(
                f"another visionports process is writing {target} (it holds {lock}); wait for it to finish or "
                "choose another output"
            ) from None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_siblings(target: Path) -> None:
    """Remove the ``.NAME.partial-PID-*`` / ``.NAME.old-PID-*`` siblings of ``target`` whose process is gone.

    Call with :func:`output_lock` held. When ``target`` itself is missing (a swap killed half-way), the newest
    stale old folder is moved back to it first.
    """
    if not target.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(partial|old)-(\d+)-")
    stale = [p for p in target.parent.iterdir() if (m := pattern.match(p.name)) and not _pid_alive(int(m[2]))]
    olds = sorted((p for p in stale if p.name.startswith(f".{target.name}.old-")), key=_mtime, reverse=True)
    if olds and not os.path.lexists(target):
        os.rename(olds[0], target)
        stale.remove(olds[0])
    for path in stale:
        _remove(path)


def _mtime(path: Path) -> float:
    return path.lstat().st_mtime


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def swap_into_place(new: Path, target: Path) -> None:
    """Move the complete folder ``new`` to ``target``: old aside, new in, old deleted.

    A crash at any point leaves the old or the new folder whole (an old one moved aside is moved back by
    :func:`remove_stale_siblings` on the next run).
    """
    aside = None
    if os.path.lexists(target):
        aside = target.parent / f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(target, aside)
    try:
        os.rename(new, target)
    except BaseException:
        if aside is not None:
            os.rename(aside, target)
        raise
    if aside is not None:
        _remove(aside)
