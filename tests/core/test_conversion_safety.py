"""`convert` never deletes what it was not asked to replace, writes whole folders or nothing, and refuses
weights whose values cannot be right (NaN/inf, integers where floats belong) unless told to convert them."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from golden import FIXTURES
from visionports.cli import main
from visionports.core.checkpoint import CheckpointError
from visionports.core.conversion import convert_checkpoint
from visionports.core.registry import get_family

DEIMV2 = FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth"
VIDEOMT = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3" / "checkpoint.pth"
SAM3 = FIXTURES / "sam3_lite_text" / "s0_mct_reduced_ctx16" / "checkpoint.pt"
CASES = {"deimv2": DEIMV2, "videomt": VIDEOMT, "sam3_lite_text": SAM3}


def _convert(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["convert", *args])
    return result.exit_code, result.output


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _user_folder(folder: Path) -> Path:
    """A folder of the user's: the checkpoint and a file of notes."""
    folder.mkdir()
    (folder / "ck.pth").write_bytes(DEIMV2.read_bytes())
    (folder / "notes.txt").write_text("mine")
    return folder


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --overwrite replaces only what a conversion wrote.


def test_overwrite_refuses_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _user_folder(tmp_path / "work")
    before = _snapshot(folder)
    monkeypatch.chdir(folder)
    for output in (".", str(folder), str(tmp_path)):
        code, text = _convert("deimv2", "ck.pth", output, "--overwrite")
        assert code == 1 and "Error: OUTPUT_DIR" in text and "current directory" in text, text
    assert _snapshot(folder) == before and sorted(os.listdir(tmp_path)) == ["work"]


def test_overwrite_refuses_the_checkpoint_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _user_folder(tmp_path / "data")
    before = _snapshot(folder)
    monkeypatch.chdir(tmp_path)
    for output in (str(folder), "data", str(tmp_path / "link")):
        (tmp_path / "link").unlink(missing_ok=True)
        (tmp_path / "link").symlink_to(folder)
        code, text = _convert("deimv2", str(folder / "ck.pth"), output, "--overwrite")
        assert code == 1 and "the checkpoint" in text, text
    assert _snapshot(folder) == before


@pytest.mark.parametrize(
    "contents",
    [{"notes.txt": "mine"}, {"config.json": json.dumps({"model_type": "bert"}), "notes.txt": "mine"}],
    ids=["no-config", "foreign-config"],
)
def test_overwrite_refuses_a_folder_that_is_not_a_conversion(tmp_path: Path, contents: dict) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    for name, text in contents.items():
        (folder / name).write_text(text)
    code, text = _convert("deimv2", str(DEIMV2), str(folder), "--overwrite")
    assert code == 1 and f"refusing to replace OUTPUT_DIR {folder}" in text, text
    assert _snapshot(folder) == {k: v.encode() for k, v in contents.items()}


def test_overwrite_replaces_a_previous_conversion_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _convert("videomt", str(VIDEOMT), str(out))[0] == 0
    first = _snapshot(out)
    code, text = _convert("deimv2", str(DEIMV2), str(out), "--overwrite")
    assert code == 0, text
    assert json.loads((out / "config.json").read_text())["model_type"] == "visionports_deimv2"
    assert _snapshot(out) != first and sorted(os.listdir(tmp_path)) == ["out"]  # no lock, partial or old left


def test_saved_files_get_the_usual_permissions(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        assert _convert("videomt", str(VIDEOMT), str(tmp_path / "out"))[0] == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


# A failure while saving: one error, the old output untouched, nothing left behind.


def _fail_with_enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize(
    "where",
    [
        "transformers.modeling_utils.safe_save_file",
        "transformers.PreTrainedConfig.to_json_file",
        "visionports.models.deimv2.image_processing_deimv2.Deimv2ImageProcessor.save_pretrained",
    ],
    ids=["weights", "config", "processor"],
)
def test_disk_full_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    out = tmp_path / "out"
    assert _convert("deimv2", str(DEIMV2), str(out))[0] == 0
    before = _snapshot(out)
    monkeypatch.setattr(where, _fail_with_enospc)
    code, text = _convert("deimv2", str(DEIMV2), str(out), "--overwrite")
    error_lines = [line for line in text.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(error_lines) == 1, text
    assert f"could not save the converted model to {out}: No space left on device" in error_lines[0]
    assert _snapshot(out) == before and sorted(os.listdir(tmp_path)) == ["out"]


def test_crash_between_the_renames_keeps_the_old_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert _convert("deimv2", str(DEIMV2), str(out))[0] == 0
    before = _snapshot(out)
    rename = os.rename

    def failing_rename(src: str | Path, dst: str | Path) -> None:
        if ".partial-" in os.path.basename(src):  # the new folder moving in
            raise OSError(errno.EIO, "Input/output error")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    code, text = _convert("deimv2", str(DEIMV2), str(out), "--overwrite")
    assert code == 1 and "Input/output error" in text, text
    assert _snapshot(out) == before and sorted(os.listdir(tmp_path)) == ["out"]


# Leftovers of a killed conversion.


def test_stale_partial_folders_are_removed_live_ones_kept(tmp_path: Path) -> None:
    dead, live = _dead_pid(), os.getppid()
    stale = tmp_path / f".out.partial-{dead}-abc"
    others = [tmp_path / f".out.partial-{live}-abc", tmp_path / f".other.partial-{dead}-abc"]
    for folder in (stale, *others):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    code, text = _convert("deimv2", str(DEIMV2), str(tmp_path / "out"))
    assert code == 0, text
    assert not stale.exists() and all(p.exists() for p in others)


def test_a_swap_killed_half_way_gets_the_old_output_back(tmp_path: Path) -> None:
    """Killed after moving the old folder aside: the next run moves it back (and keeps it without --overwrite)."""
    out = tmp_path / "out"
    assert _convert("deimv2", str(DEIMV2), str(out))[0] == 0
    before = _snapshot(out)
    dead = _dead_pid()
    out.rename(tmp_path / f".out.old-{dead}-abc")
    (tmp_path / f".out.partial-{dead}-abc").mkdir()
    code, text = _convert("videomt", str(VIDEOMT), str(out))
    assert code == 1 and "exists and is not empty" in text, text
    assert _snapshot(out) == before and sorted(os.listdir(tmp_path)) == ["out"]


# Weights whose values cannot be right.


def _damaged(tmp_path: Path, source: Path, damage: str) -> tuple[Path, str]:
    """A copy of ``source`` with one weight (``nan``, ``inf``) or every float weight damaged; the first's key."""
    obj = torch.load(source, map_location="cpu", weights_only=True)
    weights = [k for k, v in obj["model"].items() if v.is_floating_point() and k.endswith(".weight")]
    for key in weights if damage in ("int8", "all-nan") else weights[:1]:
        tensor = obj["model"][key]
        if damage == "int8":
            obj["model"][key] = tensor.to(torch.int8)
        else:
            tensor.view(-1)[0 if damage != "all-nan" else slice(None)] = float(
                "inf" if damage == "inf" else "nan"
            )
    path = tmp_path / f"{damage}.pth"
    torch.save(obj, path)
    return path, weights[0]


@pytest.mark.parametrize("family", sorted(CASES))
@pytest.mark.parametrize("damage", ["nan", "inf", "all-nan", "int8"])
def test_impossible_weight_values_are_refused(tmp_path: Path, family: str, damage: str) -> None:
    path, first = _damaged(tmp_path, CASES[family], damage)
    what = "are integers where weights are floating point" if damage == "int8" else "hold NaN or infinite"
    with pytest.raises(CheckpointError, match=rf"\d+ tensor\(s\) {what}") as info:
        convert_checkpoint(get_family(family), path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    if damage in ("nan", "inf"):
        assert f"1 tensor(s) {what} values: {first.removeprefix('detector.')} (as " in str(info.value)


@pytest.mark.parametrize("family", ["deimv2", "videomt"])
def test_allow_non_finite_converts_with_a_warning(tmp_path: Path, family: str) -> None:
    path, _ = _damaged(tmp_path, CASES[family], "nan")
    code, text = _convert(family, str(path), str(tmp_path / "out"))
    assert code == 1 and "--allow-non-finite" in text
    with pytest.warns(UserWarning, match="converting anyway: 1 tensor"):
        code, text = _convert(family, str(path), str(tmp_path / "out"), "--allow-non-finite")
    assert code == 0, text
    assert (tmp_path / "out" / "model.safetensors").is_file()
