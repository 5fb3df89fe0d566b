"""``detect`` / ``segment`` on a local Ray cluster started here (2 CPUs): every record equals the single-process
run, a killed job resumes from its finished shards, inputs from globs, manifests and URLs, JSONL and Parquet."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from golden import FIXTURES
from visionports.cli import main
from visionports.distributed.shards import ShardStore

ray = pytest.importorskip("ray")
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A one-node Ray cluster with 2 CPU workers, joined with ``--ray auto`` as a job on a cluster node is."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([RAY, "start", "--head", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                   check=True, env=env, capture_output=True, timeout=180)  # fmt: skip
    yield "auto"
    ray.shutdown()
    subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=180)


@pytest.fixture(scope="module")
def atto(convert: Callable[..., Path]) -> Path:
    return convert("deimv2", FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(4)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    (folder / "zz_broken.png").write_bytes(b"not an image")  # last: batches as in the local run
    return folder


def _detect(*args: str) -> str:
    result = CliRunner().invoke(main, ["detect", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _records(output: Path, fmt: str = "jsonl") -> list[dict]:
    return ShardStore(output, fmt).read()


def test_ray_records_equal_the_single_process_run(
    cluster: str, atto: Path, images: Path, tmp_path: Path
) -> None:
    good = sorted(str(p) for p in images.glob("im*.png"))
    single = tmp_path / "single"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray actor (1 CPU): the same kernels, the same numbers
    try:
        _detect(*good, "--model", str(atto), "--output", str(single), "--threshold", "0.3", "--batch-size", "2",
                "--device", "cpu")  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    expected = json.loads((single / "detections.json").read_text())["images"]
    out = tmp_path / "ray"
    said = _detect(str(images / "*.png"), "--model", str(atto), "--output", str(out), "--threshold", "0.3",
                   "--batch-size", "2", "--device", "cpu", "--ray", cluster, "--shard-size", "4",
                   "--pictures")  # fmt: skip
    assert "8 record(s) in 2 shard(s)" in said and "1 unreadable input" in said
    records = _records(out)
    assert [r["input"] for r in records] == sorted(str(p) for p in images.glob("*.png"))
    broken = records[-1]
    assert broken["error"].startswith(str(images / "zz_broken.png")) and broken["outputs"] == []
    for record in records[:-1]:
        assert record["error"] is None and record["task"] == "detect" and record["model"] == str(atto)
        assert record["settings"]["threshold"] == 0.3 and record["version"]
        assert [{k: v for k, v in o.items() if k != "bbox"} for o in record["outputs"]] == expected[
            record["input"]
        ]
        for o in record["outputs"]:
            x0, y0, x1, y1 = o["box"]
            assert o["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.011)
        picture = np.asarray(Image.open(out / "pictures" / f"{record['name']}.png"))
        assert np.array_equal(picture, np.asarray(Image.open(single / f"{record['name']}.png")))
    assert any(r["outputs"] for r in records)  # the comparison is not vacuous


def test_killed_job_resumes_from_finished_shards(
    cluster: str, atto: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ray"
    args = [str(images), "--model", str(atto), "--output", str(out), "--threshold", "0.3", "--device", "cpu",
            "--ray", cluster, "--shard-size", "3", "--results-format", "parquet"]  # fmt: skip
    _detect(*args)
    shards = sorted((out / "shards").iterdir())
    assert [p.name for p in shards] == [f"part-0000{i}.parquet" for i in range(3)]
    first = _records(out, "parquet")
    kept = {p: p.stat().st_mtime_ns for p in shards[:2]}
    shards[2].unlink()  # a killed job: the last shard never appeared; its partial file is left behind
    (out / "shards" / ".part-00002.parquet.123.partial").write_bytes(b"half")
    said = _detect(*args)
    assert "in 1 shard(s), 2 shard(s) kept" in said
    assert {p: p.stat().st_mtime_ns for p in shards[:2]} == kept  # not redone
    assert _records(out, "parquet") == first
    other = CliRunner().invoke(main, ["detect", str(images), "--model", str(atto), "--output", str(out),
                                      "--threshold", "0.5", "--ray", cluster, "--shard-size", "3",
                                      "--results-format", "parquet"])  # fmt: skip
    assert other.exit_code != 0 and other.output.startswith("Error: --output") and "threshold" in other.output
    assert _records(out, "parquet") == first  # nothing of the other request was written


def test_inputs_from_a_manifest_and_urls(cluster: str, atto: Path, images: Path, tmp_path: Path) -> None:
    listed = tmp_path / "inputs.txt"
    listed.write_text(f"{images / 'im1.png'}\n# a comment\nfile://{images / 'im2.png'}\n")
    out = tmp_path / "out"
    _detect(
        str(listed), "--model", str(atto), "--output", f"file://{out}", "--device", "cpu", "--ray", cluster
    )
    records = _records(out)
    assert [r["input"] for r in records] == [str(images / "im1.png"), f"file://{images / 'im2.png'}"]
    assert all(r["error"] is None and r["width"] == 64 for r in records)


def test_ray_options_need_ray(atto: Path, images: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["detect", str(images), "--model", str(atto), "--output", str(tmp_path / "o"),
                                       "--actors", "3"])  # fmt: skip
    assert result.exit_code != 0 and "--actors" in result.output and "--ray" in result.output
    assert not (tmp_path / "o").exists()


def _single_threaded(command: list[str]) -> str:
    """A local run on one thread, as each Ray actor (1 CPU) runs: the same kernels, the same numbers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(main, command)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return result.output


def test_segment_on_ray_equals_the_local_run(
    cluster: str, convert: Callable[..., Path], images: Path, tmp_path: Path
) -> None:
    sam3 = convert("sam3_lite_text", FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5" / "checkpoint.pt",
                   "--set", "num_attention_heads=8")  # fmt: skip
    inputs = [str(images / "im0.png"), str(images / "im1.png")]
    common = [
        "--prompt",
        "a cat",
        "--prompt",
        "a dog",
        "--model",
        str(sam3),
        "--threshold",
        "0.05",
        "--device",
        "cpu",
    ]
    _single_threaded(["segment", *inputs, *common, "--output", str(tmp_path / "local")])
    expected = json.loads((tmp_path / "local" / "segments.json").read_text())["images"]
    said = _single_threaded(
        ["segment", *inputs, *common, "--output", str(tmp_path / "ray"), "--ray", cluster]
    )
    assert "2 record(s)" in said
    records = _records(tmp_path / "ray")
    assert [r["input"] for r in records] == inputs and any(r["outputs"] for r in records)
    for record in records:
        assert [{k: v for k, v in o.items() if k != "bbox"} for o in record["outputs"]] == expected[
            record["input"]
        ]
        assert all(o["mask"]["size"] == [record["height"], record["width"]] for o in record["outputs"])


def test_segment_video_on_ray_equals_the_local_runs(
    cluster: str, convert: Callable[..., Path], tmp_path: Path
) -> None:
    from visionports.utils.video import write_video

    videomt = convert("videomt", FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3" / "checkpoint.pth",
                      "--set", "num_attention_heads=4", "--set", "min_size_test=64")  # fmt: skip
    clips = tmp_path / "clips"
    clips.mkdir()
    rng = np.random.default_rng(5)
    for name, count in (("a", 4), ("b", 3)):
        write_video(
            [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(count)], clips / f"{name}.mp4"
        )
    (clips / "c.mp4").write_bytes(b"not a video")
    out = tmp_path / "ray"
    said = _single_threaded(["segment-video", str(clips / "*.mp4"), "--model", str(videomt), "--output", str(out),
                             "--device", "cpu", "--chunk", "2", "--ray", cluster])  # fmt: skip
    assert "3 record(s) in 3 shard(s)" in said and "1 unreadable input" in said
    records = {Path(r["input"]).name: r for r in _records(out)}
    assert records["c.mp4"]["error"] and records["c.mp4"]["video"] is None
    for name in ("a", "b"):
        local = tmp_path / f"{name}.mp4"
        _single_threaded(["segment-video", str(clips / f"{name}.mp4"), "--model", str(videomt), "--output",
                          str(local), "--json", str(tmp_path / f"{name}.json"), "--device", "cpu", "--chunk", "2"])  # fmt: skip
        results = records[f"{name}.mp4"]["results"]
        want = json.loads((tmp_path / f"{name}.json").read_text())
        assert results["segments"] == want["segments"] and results["frames"] == want["frames"]
        assert (out / "videos" / f"{name}.mp4").read_bytes() == local.read_bytes()


def test_evaluate_on_ray_equals_the_local_evaluation(cluster: str, atto: Path, tmp_path: Path) -> None:
    from visionports.data.synthetic_coco import make_synthetic_coco

    data = make_synthetic_coco(tmp_path / "coco", num_train=1, num_val=5, image_size=(64, 64))
    annotations = data / "annotations" / "instances_val.json"
    payload = json.loads(
        annotations.read_text()
    )  # as many categories as the converted COCO model has classes
    payload["categories"] += [
        {"id": i, "name": f"class{i}"} for i in range(len(payload["categories"]) + 1, 81)
    ]
    annotations.write_text(json.dumps(payload))
    common = ["evaluate", "--model", str(atto), "--data", str(data), "--device", "cpu"]
    local = _single_threaded(common)
    on_ray = _single_threaded(
        [*common, "--ray", cluster, "--output", str(tmp_path / "shards"), "--shard-size", "2"]
    )
    values = [
        [float(v) for v in re.findall(r"\b(?:AP|AR)\w*\s+(-?\d+\.\d+)", text)] for text in (local, on_ray)
    ]
    assert len(values[0]) == 12 and values[1] == pytest.approx(
        values[0], abs=0.05
    )  # boxes rounded to 0.01 px
    assert len(list((tmp_path / "shards" / "shards").iterdir())) == 3
    records = _records(tmp_path / "shards")  # threshold 0: every query of every image is evaluated
    assert len(records) == 5 and all(
        len(r["outputs"]) == 300 and r["settings"]["threshold"] == 0.0 for r in records
    )
