"""Peak memory of ``visionports segment-video`` for a short and a long clip of the same frame size.

Run: ``python benchmarks/segment_video_memory.py [--lengths 30 300] [--width 480 --height 360] [--task instance]``.
The model is the tiny VidEoMT golden case (``tests/fixtures/videomt/dinov2_tiny_s0_b1_t3``, random weights)
converted once; the clips are synthetic (a moving gradient with noise). Each clip is segmented in a fresh
process (with ``--json``, so the per-frame RLE masks are written too), whose peak resident set (``ru_maxrss``)
is reported; the ratio is long / short (1.0: constant memory).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "tests" / "fixtures" / "videomt" / "dinov2_tiny_s0_b1_t3"


def make_clip(path: Path, frames: int, width: int, height: int) -> Path:
    from visionports.utils.video import VideoWriter

    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, width)[None, :, None]
    with VideoWriter(path, (width, height), [t / 25 for t in range(frames)], fps=25) as writer:
        for t in range(frames):
            base = (x + 3 * t + np.linspace(0, 80, height)[:, None, None]) % 256
            noise = rng.integers(0, 40, (height, width, 3))
            writer.write((base + noise).clip(0, 255).astype(np.uint8))
    return path


def child(clip: str, model: str, output: str, task: str, chunk: int) -> None:
    """Segment ``clip`` and print this process's peak resident set in MiB."""
    from visionports.tasks.segment_video import segment_video

    json_path = Path(output).with_suffix(".json")  # per-frame RLE masks too (spooled to disk, streamed out)
    segment_video(
        clip, model, output, task=task, json_path=json_path, chunk=chunk, progress=False, device="cpu"
    )
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[30, 300])
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--task", default="instance", choices=["instance", "semantic", "panoptic"])
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--child", nargs=3, metavar=("CLIP", "MODEL", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.task, args.chunk)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "model"
        convert = [sys.executable, "-m", "visionports.cli", "convert", "videomt", str(CASE / "checkpoint.pth"),
                   str(model), "--set", "num_attention_heads=4", "--set", "num_thing_classes=2"]  # fmt: skip
        subprocess.run(convert, check=True, capture_output=True)
        peaks = []
        for frames in args.lengths:
            clip = make_clip(tmp / f"clip{frames}.mp4", frames, args.width, args.height)
            run = [sys.executable, __file__, "--task", args.task, "--chunk", str(args.chunk),
                   "--child", str(clip), str(model), str(tmp / f"out{frames}.mp4")]  # fmt: skip
            peak = float(subprocess.run(run, check=True, capture_output=True, text=True).stdout.split()[-1])
            peaks.append(peak)
            print(f"{frames:5d} frames {args.width}x{args.height} ({args.task}, chunk {args.chunk}): "
                  f"peak RSS {peak:7.1f} MiB")  # fmt: skip
        print(f"ratio {args.lengths[-1]} / {args.lengths[0]} frames: {peaks[-1] / peaks[0]:.3f}")


if __name__ == "__main__":
    main()
