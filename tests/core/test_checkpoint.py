from __future__ import annotations

import collections
import json
import os
import random
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from golden import FIXTURES
from visionports.core.checkpoint import (
    CheckpointError,
    load_checkpoint_file,
    load_state_dict,
    select_state_dict,
)


class _Evil:  # any custom class makes a pickle unsafe for weights_only loading
    def __reduce__(self):
        return (print, ("code ran",))


def test_plain_and_ema_state_dicts(tmp_path: Path) -> None:
    sd = {"w": torch.ones(2)}
    torch.save({"model": sd}, tmp_path / "a.pth")
    loaded, where = load_state_dict(tmp_path / "a.pth")
    assert where == "model" and torch.equal(loaded["w"], sd["w"])
    torch.save({"model": {"w": torch.zeros(2)}, "ema": {"module": sd, "updates": 3}}, tmp_path / "b.pth")
    loaded, where = load_state_dict(tmp_path / "b.pth")
    assert where == "ema.module" and torch.equal(loaded["w"], sd["w"])


def test_safetensors_and_bare_state_dict(tmp_path: Path) -> None:
    save_file({"w": torch.ones(3)}, str(tmp_path / "w.safetensors"))
    loaded, where = load_state_dict(tmp_path / "w.safetensors")
    assert where == "<top level>" and loaded["w"].shape == (3,)


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    torch.save({"model": {"w": torch.ones(1)}, "extra": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint_file(tmp_path / "evil.pth")


def test_truncated_and_missing_files(tmp_path: Path) -> None:
    torch.save({"model": {"w": torch.ones(1000)}}, tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint_file(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint_file(tmp_path / "absent.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint_file(tmp_path / "bad.safetensors")


def test_select_state_dict_errors() -> None:
    with pytest.raises(CheckpointError, match="no state dict found"):
        select_state_dict({"optimizer": {"lr": 1.0}})
    with pytest.raises(CheckpointError, match="expected a mapping"):
        select_state_dict([1, 2])
    ordered = collections.OrderedDict(w=torch.ones(1))
    assert select_state_dict(ordered)[1] == "<top level>"


def test_package_errors_share_one_base() -> None:
    from visionports.core.errors import VisionportsError
    from visionports.core.load_report import IncompleteCheckpointError
    from visionports.data.coco_dataset import CocoFormatError
    from visionports.utils.images import ImageInputError

    for error in (CheckpointError, IncompleteCheckpointError, CocoFormatError, ImageInputError):
        assert issubclass(error, VisionportsError), error
    assert issubclass(CheckpointError, ValueError) and issubclass(IncompleteCheckpointError, RuntimeError)


# Damaged and mislabelled files: each says what the file is and what is wrong with it.

VIDEOMT = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3" / "checkpoint.pth"
SAM3 = FIXTURES / "sam3_lite_text" / "s0_mct_reduced_ctx16" / "checkpoint.pt"
DEIMV2 = FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth"


def _flip_middle(data: bytes, count: int = 4096) -> bytes:
    damaged = bytearray(data)
    middle = len(damaged) // 2
    damaged[middle : middle + count] = bytes(b ^ 0xFF for b in damaged[middle : middle + count])
    return bytes(damaged)


@pytest.mark.parametrize("fixture", [VIDEOMT, SAM3, DEIMV2], ids=["videomt", "sam3", "deimv2"])
def test_flipped_bytes_fail_the_crc_check(tmp_path: Path, fixture: Path) -> None:
    (tmp_path / "flipped.pth").write_bytes(_flip_middle(fixture.read_bytes()))
    with pytest.raises(CheckpointError, match="fails its CRC-32 check"):
        load_checkpoint_file(tmp_path / "flipped.pth")


@pytest.mark.parametrize("keep", [3, 0.5])
def test_truncated_archive_is_called_truncated(tmp_path: Path, keep: float) -> None:
    data = VIDEOMT.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: int(keep if keep >= 1 else len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_checkpoint_file(tmp_path / "cut.pth")
    assert "pickle with code" not in str(info.value)


def test_truncated_legacy_pickle_is_called_truncated(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(100)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    data = (tmp_path / "legacy.pth").read_bytes()
    for size in (3, 30, len(data) - 5):
        (tmp_path / "cut.pth").write_bytes(data[:size])
        with pytest.raises(CheckpointError, match="truncated") as info:
            load_checkpoint_file(tmp_path / "cut.pth")
        assert "pickle with code" not in str(info.value)


def test_random_bytes_are_not_a_checkpoint(tmp_path: Path) -> None:
    data = random.Random(0).randbytes(100_000)
    (tmp_path / "random.pth").write_bytes(b"\x13" + data)
    with pytest.raises(CheckpointError, match="not a checkpoint: neither a torch zip archive, a pickle nor"):
        load_checkpoint_file(tmp_path / "random.pth")


def test_format_comes_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    sd = {"w": torch.arange(6.0).reshape(2, 3)}
    save_file(sd, str(tmp_path / "weights.pth"))
    assert torch.equal(load_state_dict(tmp_path / "weights.pth")[0]["w"], sd["w"])
    torch.save({"model": sd}, tmp_path / "archive.safetensors")
    assert torch.equal(load_state_dict(tmp_path / "archive.safetensors")[0]["w"], sd["w"])


def test_damaged_safetensors_headers(tmp_path: Path) -> None:
    save_file({"w": torch.ones(100)}, str(tmp_path / "ok.safetensors"))
    data = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match=r"truncated or corrupt: tensor 'w' lies at bytes \[0, 400\)"):
        load_checkpoint_file(tmp_path / "cut.safetensors")
    (tmp_path / "header.safetensors").write_bytes(data[:20])
    with pytest.raises(CheckpointError, match="truncated: its safetensors header needs"):
        load_checkpoint_file(tmp_path / "header.safetensors")
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}).encode()
    (tmp_path / "liar.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 400)
    with pytest.raises(CheckpointError, match="tensor 'w' lies at bytes"):
        load_checkpoint_file(tmp_path / "liar.safetensors")


def test_what_is_not_a_regular_file_says_so(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.pth")  # opening it would block: it must not be opened
    (tmp_path / "folder.pth").mkdir()
    (tmp_path / "empty.pth").write_bytes(b"")
    cases = {
        "/dev/null": "a character device",
        tmp_path / "fifo.pth": "a FIFO",
        tmp_path / "folder.pth": "a directory",
    }
    for path, kind in cases.items():
        with pytest.raises(CheckpointError, match=f"is not a regular file but {kind}"):
            load_checkpoint_file(path)
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\)"):
        load_checkpoint_file(tmp_path / "empty.pth")
