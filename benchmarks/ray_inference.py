"""Images per second of ``detect``: one process vs a Ray Data actor pool on this machine.

Run: ``python benchmarks/ray_inference.py [--images 64] [--actors 2] [--size 320]``. The model is the tiny DEIMv2
Atto golden case (``tests/fixtures/deimv2/atto_s0_b1_320``, random weights) converted once; the images are
random. The single-process run uses ``torch`` with all cores (``--threads``); each Ray actor reserves one CPU
and runs ``torch`` with one thread, so the comparison is at equal cores. Ray's start-up (local instance,
actor creation, model loading) is reported apart from the steady throughput.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "tests" / "fixtures" / "deimv2" / "atto_s0_b1_320"


def _images(folder: Path, count: int, size: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        paths.append(folder / f"im{i:05d}.jpg")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stdout + done.stderr)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "visionports.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "model"
        subprocess.run([*cli, "convert", "deimv2", str(CASE / "checkpoint.pth"), str(model)], check=True,
                       capture_output=True)  # fmt: skip
        folder = tmp / "images"
        folder.mkdir()
        _images(folder, args.images, args.size)
        common = [
            "detect",
            str(folder),
            "--model",
            str(model),
            "--device",
            "cpu",
            "--batch-size",
            str(args.batch_size),
        ]
        env_threads = f"OMP_NUM_THREADS={args.threads}"
        single = _timed(["env", env_threads, *cli, *common, "--output", str(tmp / "single")])
        one = _timed(["env", env_threads, *cli, *common[:1], str(folder / "im00000.jpg"), *common[2:],
                      "--output", str(tmp / "one")])  # fmt: skip
        ray_run = _timed(["env", "OMP_NUM_THREADS=1", "RAY_USAGE_STATS_ENABLED=0", *cli, *common,
                          "--output", str(tmp / "ray"), "--ray", "--actors", str(args.actors),
                          "--shard-size", str(max(1, args.images // (4 * args.actors)))])  # fmt: skip
        ray_one = _timed(["env", "OMP_NUM_THREADS=1", "RAY_USAGE_STATS_ENABLED=0", *cli, *common[:1],
                          str(folder / "im00000.jpg"), *common[2:], "--output", str(tmp / "ray_one"), "--ray",
                          "--actors", str(args.actors)])  # fmt: skip
    rate_single = (args.images - 1) / max(single - one, 1e-9)
    rate_ray = (args.images - 1) / max(ray_run - ray_one, 1e-9)
    print(f"{args.images} images {args.size}x{args.size}, batch {args.batch_size}, DEIMv2 Atto (random), CPU")
    print(f"single process ({args.threads} threads): {single:6.1f} s total, start-up {one:5.1f} s, "
          f"{rate_single:6.2f} images/s steady")  # fmt: skip
    print(f"Ray, {args.actors} actors x 1 CPU:        {ray_run:6.1f} s total, start-up {ray_one:5.1f} s, "
          f"{rate_ray:6.2f} images/s steady")  # fmt: skip
    print(f"ratio Ray / single (steady images/s): {rate_ray / rate_single:.2f}")


if __name__ == "__main__":
    main()
