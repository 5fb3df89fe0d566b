"""Safe loading of untrusted checkpoint files (torch zip archives, legacy pickles or safetensors).

The format is read from the file's first bytes, not its name, and the bytes are checked before they are
trusted: every entry of a torch zip archive against its CRC-32, a safetensors header against the file's size.
(A legacy pickle and a safetensors data section carry no checksum: damage there cannot be detected.)
"""

from __future__ import annotations

import json
import math
import pickle
import stat
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

StateDict = dict[str, torch.Tensor]

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
_SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own limit
_SAFETENSORS_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
                         "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}  # fmt: skip


def load_checkpoint_file(path: str | Path) -> Any:
    """Read a checkpoint without executing code from it, after checking that its bytes are intact.

    Safetensors data is read with safetensors (whatever the file's name); torch archives and legacy pickles
    with ``torch.load(weights_only=True)``, which refuses pickles that carry code or arbitrary objects.
    """
    path = Path(path)
    kind = checkpoint_format(path)
    if kind == "safetensors":
        return _load_safetensors(path)
    if kind == "zip":
        verify_zip_archive(path)
    return _torch_load(path)


def checkpoint_format(path: Path) -> str:
    """``"zip"`` (torch archive), ``"pickle"`` (legacy torch) or ``"safetensors"``, from the first bytes."""
    size = _regular_file_size(path)
    with path.open("rb") as handle:
        head = handle.read(9)
    if head[:4] in _ZIP_MAGICS or (size < 4 and _ZIP_MAGICS[0].startswith(head)):  # short: a cut archive
        return "zip"
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= _SAFETENSORS_MAX_HEADER:
        return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    raise CheckpointError(
        f"checkpoint: {path} is not a checkpoint: neither a torch zip archive, a pickle nor safetensors "
        f"({size} bytes starting {head[:8].hex(' ')})"
    )


def _regular_file_size(path: Path) -> int:
    """The size of ``path``; ``CheckpointError`` unless it is a non-empty regular file (no FIFO is opened)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint: no such file: {path}") from None
    except OSError as err:
        raise CheckpointError(f"checkpoint: cannot read {path} ({err.strerror})") from err
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"checkpoint: {path} is not a regular file but {_file_kind(info.st_mode)}")
    if info.st_size == 0:
        raise CheckpointError(f"checkpoint: {path} is empty (0 bytes)")
    return info.st_size


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def verify_zip_archive(path: Path) -> None:
    """Check every entry of a torch zip archive against the CRC-32 stored with it."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as err:
        if "not a zip file" in str(err):
            raise CheckpointError(
                f"checkpoint: {path} is truncated or corrupt: a torch zip archive whose central directory (at "
                "the end of the file) is missing; the file was probably cut short while saving or copying"
            ) from err
        raise CheckpointError(f"checkpoint: {path} is a corrupt torch zip archive ({err})") from err
    except (EOFError, ValueError, NotImplementedError, zlib.error, struct.error, OSError) as err:
        raise CheckpointError(
            f"checkpoint: {path} is a truncated or corrupt torch zip archive ({err})"
        ) from err
    if bad is not None:
        raise CheckpointError(
            f"checkpoint: {path} is corrupt: entry {bad!r} of the torch zip archive fails its CRC-32 check "
            "(the bytes changed after saving); refusing to load it"
        )


def verify_safetensors(path: Path) -> None:
    """Check a safetensors header: its length and every tensor's byte range against the file's size."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        length = struct.unpack("<Q", handle.read(8))[0]
        if length > size - 8:
            raise CheckpointError(
                f"checkpoint: {path} is truncated: its safetensors header needs {length} bytes, the file "
                f"holds {size - 8} after the length"
            )
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint: {path} has a corrupt safetensors header ({err})") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint: {path} has a corrupt safetensors header (not a JSON object)")
    data_size = size - 8 - length
    for name, entry in header.items():
        if name != "__metadata__":
            _check_safetensors_entry(path, name, entry, data_size)


def _check_safetensors_entry(path: Path, name: str, entry: Any, data_size: int) -> None:
    try:
        begin, end = (int(v) for v in entry["data_offsets"])
        shape = [int(d) for d in entry["shape"]]
        itemsize = _SAFETENSORS_ITEMSIZE.get(entry["dtype"])
    except (TypeError, KeyError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint: {path}: corrupt safetensors entry for {name!r} ({err!r})"
        ) from err
    if not 0 <= begin <= end <= data_size:
        raise CheckpointError(
            f"checkpoint: {path} is truncated or corrupt: tensor {name!r} lies at bytes [{begin}, {end}) of a "
            f"data section of {data_size} bytes"
        )
    if itemsize is not None and end - begin != math.prod(shape) * itemsize:
        raise CheckpointError(
            f"checkpoint: {path} is corrupt: tensor {name!r} of shape {shape} ({entry['dtype']}) has "
            f"{end - begin} bytes"
        )


def _load_safetensors(path: Path) -> StateDict:
    from safetensors.torch import load_file

    verify_safetensors(path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises several private error types
        raise CheckpointError(f"checkpoint: {path} is not a valid safetensors file ({err})") from err


def _torch_load(path: Path) -> Any:
    """``torch.load`` of an open file: given a path, torch picks the format from the name (``.safetensors``)."""
    try:
        with path.open("rb") as handle:
            return torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _unpickling_detail(err)
        if "global" not in detail.lower():
            state = "is truncated" if "truncated" in detail else "holds corrupt pickle data"
            raise CheckpointError(f"checkpoint: {path} {state} ({detail})") from err
        raise CheckpointError(
            f"checkpoint: {path} holds objects that are not plain tensors/containers (a pickle with code or "
            f"custom classes); refusing to load it. Re-save it as a plain state dict or safetensors. ({detail})"
        ) from err
    except Exception as err:  # weights_only ran no code: any failure is the data's (EOFError, IndexError ...)
        raise CheckpointError(
            f"checkpoint: {path} is truncated or corrupt ({type(err).__name__}: {err})"
        ) from err


def _unpickling_detail(err: pickle.UnpicklingError) -> str:
    """The reason in torch's weights-only error, without its boilerplate paragraphs."""
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    text = str(err).replace("WeightsUnpickler error:", "\n\n")
    reasons = [p.strip() for p in text.split("\n\n") if p.strip() and not p.strip().startswith(boilerplate)]
    return reasons[0].split("\n")[0] if reasons else str(err).split("\n")[0]


def select_state_dict(
    obj: Any,
    candidates: Sequence[Sequence[str]] = (("ema", "module"), ("model",), ("state_dict",)),
) -> tuple[StateDict, str]:
    """Pick the weights from a checkpoint's top level.

    The first of ``candidates`` (paths of nested keys) that exists wins; a mapping whose values are
    all tensors is taken as the state dict itself. Returns the state dict and where it was found.
    """
    if isinstance(obj, Mapping):
        for path in candidates:
            node: Any = obj
            for key in path:
                if not isinstance(node, Mapping) or key not in node:
                    break
                node = node[key]
            else:
                if _is_state_dict(node):
                    return dict(node), ".".join(path)
        if _is_state_dict(obj):
            return dict(obj), "<top level>"
        keys = ", ".join(sorted(map(str, obj.keys()))[:10])
        raise CheckpointError(
            f"checkpoint: no state dict found; top-level keys are [{keys}], expected one of "
            + ", ".join("/".join(p) for p in candidates)
        )
    raise CheckpointError(f"checkpoint: expected a mapping at the top level, got {type(obj).__name__}")


def _is_state_dict(node: Any) -> bool:
    return (
        isinstance(node, Mapping)
        and len(node) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in node.items())
    )


def load_state_dict(path: str | Path) -> tuple[StateDict, str]:
    """Load a checkpoint file and return its weights (EMA weights when present) and their location."""
    return select_state_dict(load_checkpoint_file(path))
