"""Images per second of ``detect``: one process vs a Ray Data actor pool on this machine.

Run: ``python benchmarks/ray_inference.py [--images 64] [--actors 2] [--size 320]``. The model is the tiny DEIMv2
Atto golden case (``tests/fixtures/deimv2/atto_s0_b1_320``, random weights) converted once; the images are
random. The single-process run uses ``torch`` with all cores (``--threads``); each Ray actor reserves one CPU
and runs ``torch`` with one thread, so the comparison is at equal cores; both write the annotated pictures. Each way runs a job of N and of 2N
images as a user would (a fresh command); the difference gives the steady rate, free of the fixed costs (start-up,
Ray's local instance, actors, model loading), which are reported apart.
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
    parser.add_argument(
        "--images", type=int, default=64, help="the short job; the long one has twice as many"
    )
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "visionports.cli"]
    times: dict[str, list[float]] = {"single": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "model"
        subprocess.run([*cli, "convert", "deimv2", str(CASE / "checkpoint.pth"), str(model)], check=True,
                       capture_output=True)  # fmt: skip
        for count in (args.images, 2 * args.images):
            folder = tmp / f"images{count}"
            folder.mkdir()
            _images(folder, count, args.size)
            common = ["detect", str(folder), "--model", str(model), "--device", "cpu", "--batch-size",
                      str(args.batch_size)]  # fmt: skip
            times["single"].append(_timed(["env", f"OMP_NUM_THREADS={args.threads}", *cli, *common,
                                           "--output", str(tmp / f"single{count}")]))  # fmt: skip
            shard = max(args.batch_size, count // (4 * args.actors))
            times["ray"].append(_timed(["env", "OMP_NUM_THREADS=1", "RAY_USAGE_STATS_ENABLED=0", *cli, *common,
                                        "--output", str(tmp / f"ray{count}"), "--shard-size", str(shard),
                                        "--actors", str(args.actors), "--pictures", "--ray"]))  # fmt: skip
    print(
        f"DEIMv2 Atto (random weights), {args.size}x{args.size} images, batch {args.batch_size}, CPU; "
        f"rate = {args.images} images / (time of {2 * args.images} - time of {args.images})"
    )
    rates = {}
    for name, label in (("single", f"single process ({args.threads} threads)"),
                        ("ray", f"Ray Data, {args.actors} actors x 1 CPU")):  # fmt: skip
        short, long = times[name]
        rates[name] = args.images / max(long - short, 1e-9)
        print(f"{label:34s} {args.images} images {short:6.1f} s, {2 * args.images} images {long:6.1f} s, "
              f"fixed cost {2 * short - long:5.1f} s, {rates[name]:6.2f} images/s")  # fmt: skip
    print(f"ratio Ray / single (images/s): {rates['ray'] / rates['single']:.2f}")


if __name__ == "__main__":
    main()
