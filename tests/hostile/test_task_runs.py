"""Hostile task runs: colliding output names, killed runs, re-runs into old folders, two writers at once.

Each test prints nothing; the tally lives in the report. Runs that must survive a SIGKILL use a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from golden import FIXTURES
from visionports.cli import main
from visionports.tasks.runner import LOCK_NAME, lock_output
from visionports.utils.video import write_video


@pytest.fixture(scope="module")
def deimv2(convert: Callable[..., Path]) -> Path:  # noqa: F811
    return convert("deimv2", FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth")


@pytest.fixture(scope="module")
def sam3(convert: Callable[..., Path]) -> Path:  # noqa: F811
    return convert(
        "sam3-lite-text", FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5" / "checkpoint.pt"
    )


@pytest.fixture(scope="module")
def videomt(convert: Callable[..., Path]) -> Path:  # noqa: F811
    case = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3" / "checkpoint.pth"
    return convert("videomt", case, "--set", "num_attention_heads=4", "--set", "num_thing_classes=2",
                   "--set", "min_size_test=64")  # fmt: skip


def _images(folder: Path, names: list[str], size: tuple[int, int] = (40, 60)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
    return [folder / name for name in names]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "visionports.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def _consistent(out: Path, manifest: str) -> dict:
    """The manifest, checked against the folder: exactly its finished pictures (and no others it planned)."""
    payload = json.loads((out / manifest).read_text())
    finished = set(payload["pictures"].values())
    planned = {v["picture"] for v in payload["asked"].values()}
    on_disk = {p.name for p in out.glob("*.png")}
    assert finished <= on_disk and on_disk <= planned, (finished, on_disk, planned)
    assert set(payload["images"]) == set(payload["pictures"])
    if payload["complete"]:
        assert finished == planned == on_disk and set(payload["asked"]) == set(payload["pictures"])
    return payload


def test_colliding_names_detect_and_segment(deimv2: Path, sam3: Path, tmp_path: Path) -> None:
    inputs = _images(tmp_path / "in", ["x.jpg", "x.png", "x_1.png"])
    runner = CliRunner()
    for verb, model, extra, manifest in (("detect", deimv2, [], "detections.json"),
                                         ("segment", sam3, ["--prompt", "a cat"], "segments.json")):  # fmt: skip
        out = tmp_path / verb
        result = runner.invoke(main, [verb, str(tmp_path / "in"), "--model", str(model), "--output", str(out),
                                      *extra])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "3 image(s)" in result.output
        payload = _consistent(out, manifest)
        assert payload["complete"] and set(payload["pictures"]) == {str(p) for p in inputs}
        assert len(set(payload["pictures"].values())) == 3 == len(list(out.glob("*.png")))


def test_segment_video_json_maps_source_to_output(videomt: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clip = tmp_path / "clip.mp4"
    write_video([rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)], clip, fps=5)
    out, js = tmp_path / "clip_out.mp4", tmp_path / "clip.json"
    result = CliRunner().invoke(main, ["segment-video", str(clip), "--model", str(videomt), "--output", str(out),
                                       "--json", str(js)])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(js.read_text())
    assert payload["source"] == str(clip) and payload["output"] == str(out) and out.is_file()


def test_killed_detect_leaves_a_manifest_and_resumes(deimv2: Path, tmp_path: Path) -> None:
    _images(tmp_path / "in", [f"im{i}.png" for i in range(8)], size=(300, 400))
    out = tmp_path / "out"
    args = ["detect", str(tmp_path / "in"), "--model", str(deimv2), "--output", str(out), "--batch-size", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "visionports.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    deadline = time.monotonic() + 240
    while not list(out.glob("*.png")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = _consistent(out, "detections.json")
    assert not killed["complete"] and len(killed["asked"]) == 8
    done_before = set(killed["pictures"])
    rerun = _cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    final = _consistent(out, "detections.json")
    assert final["complete"] and len(final["pictures"]) == 8
    assert {k: final["images"][k] for k in done_before} == {k: killed["images"][k] for k in done_before}
    if done_before:
        assert f"({len(done_before)} kept from an interrupted run)" in rerun.stdout


def test_rerun_with_other_settings_cleans_the_old_pictures(deimv2: Path, tmp_path: Path) -> None:
    _images(tmp_path / "a", ["one.png", "two.png"])
    _images(tmp_path / "b", ["three.png"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.png").write_bytes(b"a user's file the runs never planned")
    runner = CliRunner()
    first = runner.invoke(main, ["detect", str(tmp_path / "a"), "--model", str(deimv2), "--output",
                                 str(tmp_path / "out")])  # fmt: skip
    assert first.exit_code == 0, first.output
    second = runner.invoke(main, ["detect", str(tmp_path / "b"), "--model", str(deimv2), "--output",
                                  str(tmp_path / "out"), "--threshold", "0.3"])  # fmt: skip
    assert second.exit_code == 0, second.output
    payload = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert payload["complete"] and payload["threshold"] == 0.3
    assert set(payload["pictures"]) == {str(tmp_path / "b" / "three.png")}
    assert {p.name for p in (tmp_path / "out").glob("*.png")} == {"three.png", "mine.png"}


def test_second_writer_is_refused(deimv2: Path, tmp_path: Path) -> None:
    image = _images(tmp_path / "in", ["x.png"])[0]
    out = tmp_path / "out"
    with lock_output(out, out / LOCK_NAME):  # as a first run would hold it
        second = _cli("detect", str(image), "--model", str(deimv2), "--output", str(out))
    assert second.returncode == 1
    lines = second.stderr.splitlines()
    assert any(
        line.startswith("Error:") and "another visionports process is writing" in line for line in lines
    )
    assert "Traceback" not in second.stderr and not (out / "x.png").exists()
    after = _cli("detect", str(image), "--model", str(deimv2), "--output", str(out))
    assert after.returncode == 0, after.stderr  # the lock went with its holder


def test_second_segment_video_writer_is_refused(videomt: Path, tmp_path: Path) -> None:
    frames = _images(tmp_path / "frames", ["0.png", "1.png"])[0].parent
    out = tmp_path / "v.mp4"
    with lock_output(tmp_path, tmp_path / ".v.mp4.lock"):
        second = CliRunner().invoke(main, ["segment-video", "--frames-dir", str(frames), "--model", str(videomt),
                                           "--output", str(out)])  # fmt: skip
    assert (
        second.exit_code == 1
        and "another visionports process is writing" in second.output
        and not out.exists()
    )
