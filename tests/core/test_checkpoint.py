from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

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
