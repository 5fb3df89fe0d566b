"""Hostile checkpoint files and hostile timing for `visionports convert`.

Damaged, mislabelled and non-regular checkpoint files each give one ``Error:`` line saying what the file is
and what is wrong with it, and leave nothing behind; a conversion killed mid-save leaves leftovers the next
run removes; a second writer of one folder is refused.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from golden import FIXTURES
from visionports.cli import main
from visionports.core.checkpoint import CheckpointError, load_state_dict

VIDEOMT = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3" / "checkpoint.pth"
SAM3 = FIXTURES / "sam3_lite_text" / "s0_mct_reduced_ctx16" / "checkpoint.pt"
DEIMV2 = FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth"
SRC = Path(__file__).resolve().parents[2] / "src"


def _convert(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["convert", *args])
    return result.exit_code, result.output


def _flip_middle(source: Path) -> bytes:
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(b ^ 0xFF for b in data[middle : middle + 4096])
    return bytes(data)


def _legacy_truncated(folder: Path) -> bytes:
    """The VidEoMT weights in torch's legacy (non-zip) format, cut at two thirds."""
    torch.save(
        torch.load(VIDEOMT, weights_only=True), folder / "legacy.tmp", _use_new_zipfile_serialization=False
    )
    data = (folder / "legacy.tmp").read_bytes()
    (folder / "legacy.tmp").unlink()
    return data[: len(data) * 2 // 3]


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


def _evil(folder: Path) -> bytes:
    torch.save({"model": {"w": torch.ones(1)}, "x": _Evil()}, folder / "evil.tmp")
    data = (folder / "evil.tmp").read_bytes()
    (folder / "evil.tmp").unlink()
    return data


# name -> (family, bytes of the damaged file from a copy of the fixture, message expected)
DAMAGE: dict[str, tuple[str, Callable[[Path], bytes], str]] = {
    "flipped-videomt": ("videomt", lambda p: _flip_middle(VIDEOMT), "fails its CRC-32 check"),
    "flipped-sam3": ("sam3_lite_text", lambda p: _flip_middle(SAM3), "fails its CRC-32 check"),
    "flipped-deimv2": ("deimv2", lambda p: _flip_middle(DEIMV2), "fails its CRC-32 check"),
    "cut-half": ("videomt", lambda p: VIDEOMT.read_bytes()[: VIDEOMT.stat().st_size // 2], "truncated"),
    "cut-3-bytes": ("videomt", lambda p: VIDEOMT.read_bytes()[:3], "truncated"),
    "cut-legacy-pickle": ("videomt", _legacy_truncated, "truncated"),
    "random-bytes": ("deimv2", lambda p: b"\x07" + random.Random(1).randbytes(50_000), "not a checkpoint"),
    "empty": ("deimv2", lambda p: b"", "is empty (0 bytes)"),
    "code-in-pickle": ("deimv2", _evil, "a pickle with code or custom classes"),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_checkpoints_give_one_clear_error(tmp_path: Path, name: str) -> None:
    family, make, message = DAMAGE[name]
    checkpoint = tmp_path / "ck.pth"
    checkpoint.write_bytes(make(tmp_path))
    code, text = _convert(family, str(checkpoint), str(tmp_path / "out"))
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(errors) == 1 and message in errors[0], text
    assert "pickle with code" not in text or name == "code-in-pickle"
    assert sorted(os.listdir(tmp_path)) == ["ck.pth"]  # no output, partial or lock left


@pytest.mark.parametrize("kind", ["/dev/null", "fifo", "folder"])
def test_what_is_not_a_regular_file_is_named(tmp_path: Path, kind: str) -> None:
    path = Path(kind) if kind == "/dev/null" else tmp_path / f"{kind}.pth"
    if kind == "fifo":
        os.mkfifo(path)  # opening it would block the conversion forever
    elif kind == "folder":
        path.mkdir()
    code, text = _convert("deimv2", str(path), str(tmp_path / "out"))
    said = {"/dev/null": "a character device", "fifo": "a FIFO", "folder": "is a directory"}[kind]
    assert code != 0 and said in text and "no such file" not in text.lower(), text
    assert not (tmp_path / "out").exists()


def test_safetensors_named_pth_converts_like_the_original(tmp_path: Path) -> None:
    weights, _ = load_state_dict(VIDEOMT)
    save_file(weights, str(tmp_path / "weights.pth"))
    assert _convert("videomt", str(VIDEOMT), str(tmp_path / "a"))[0] == 0
    code, text = _convert("videomt", str(tmp_path / "weights.pth"), str(tmp_path / "b"))
    assert code == 0, text
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_random_byte_flips_are_caught_or_harmless(tmp_path: Path) -> None:
    """40 hits of 1-16 random bytes on a torch archive: a CheckpointError, or the very same weights."""
    original, _ = load_state_dict(VIDEOMT)
    data, rng, outcomes = VIDEOMT.read_bytes(), random.Random(0), {"refused": 0, "same": 0}
    for _ in range(40):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 16)):
            damaged[rng.randrange(len(damaged))] ^= rng.randint(1, 255)
        (tmp_path / "ck.pth").write_bytes(damaged)
        try:
            loaded, _ = load_state_dict(tmp_path / "ck.pth")
        except CheckpointError:
            outcomes["refused"] += 1
            continue
        assert loaded.keys() == original.keys() and all(torch.equal(loaded[k], original[k]) for k in loaded)
        outcomes["same"] += 1
    assert outcomes["refused"] > 30, outcomes


# Killed conversions and concurrent writers (real processes).

_SLOW_SAVE = """
import sys, time
from pathlib import Path
import transformers
save = transformers.PreTrainedModel.save_pretrained
def slow_save(self, folder, *args, **kwargs):
    save(self, folder, *args, **kwargs)
    Path(folder, "SAVED").write_text("")
    time.sleep(600)
transformers.PreTrainedModel.save_pretrained = slow_save
from visionports.cli import main
main(sys.argv[1:])
"""


def _start(tmp_path: Path, *args: str, slow: bool) -> subprocess.Popen:
    command = ["-c", _SLOW_SAVE] if slow else ["-m", "visionports.cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, *command, "convert", *args], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_for(found: Callable[[], list[Path]], child: subprocess.Popen, timeout: float = 120) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        if paths := found():
            return paths
        time.sleep(0.002)
    return found()


def test_killed_mid_save_a_second_writer_is_refused_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _convert("deimv2", str(DEIMV2), str(out))[0] == 0
    previous = {p.name: p.read_bytes() for p in out.iterdir()}
    child = _start(tmp_path, "videomt", str(VIDEOMT), "out", "--overwrite", slow=True)
    try:
        partial = _wait_for(lambda: list(tmp_path.glob(".out.partial-*/SAVED")), child)
        assert partial, "the conversion never reached its save"
        code, text = _convert("videomt", str(VIDEOMT), str(out), "--overwrite")  # a second writer
        assert code == 1 and f"another visionports process is writing {out}" in text, text
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == previous  # the old output is whole
    assert list(tmp_path.glob(".out.partial-*"))  # the killed writer's leftover ...
    code, text = _convert("videomt", str(VIDEOMT), str(out), "--overwrite")
    assert code == 0, text
    assert sorted(os.listdir(tmp_path)) == ["out"]  # ... is gone, and so is the lock file
    assert '"visionports_videomt"' in (out / "config.json").read_text()


def test_killed_at_first_sight_of_the_partial_folder(tmp_path: Path) -> None:
    """An unpatched conversion SIGKILLed as soon as its partial folder appears; the next run completes."""
    child = _start(tmp_path, "videomt", str(VIDEOMT), "out", slow=False)
    try:
        _wait_for(lambda: list(tmp_path.glob(".out.partial-*")), child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    code, text = _convert("videomt", str(VIDEOMT), str(tmp_path / "out"), "--overwrite")
    assert code == 0, text
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert {"config.json", "model.safetensors"} <= set(os.listdir(tmp_path / "out"))


def test_a_held_lock_refuses_the_conversion(tmp_path: Path) -> None:
    lock = tmp_path / ".out.lock"
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        code, text = _convert("videomt", str(VIDEOMT), str(tmp_path / "out"))
        assert code == 1 and f"another visionports process is writing {tmp_path / 'out'}" in text, text
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))
    assert _convert("videomt", str(VIDEOMT), str(tmp_path / "out"))[0] == 0
