"""Peak memory of ``visionports segment`` on large images, by prompts and image size.

Run: ``python benchmarks/segment_memory.py``. The model is the tiny SAM3-LiteText golden detector
(``tests/fixtures/sam3_lite_text/tiny_detector_s0_mct_seed5``, random weights) converted once; each image is
random noise of the given size and each configuration runs in a fresh process at threshold 0 (every query an
instance), whose peak resident set (``ru_maxrss``) is reported.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "tests" / "fixtures" / "sam3_lite_text" / "tiny_detector_s0_mct_seed5"
RUNS = [((1500, 2000), 1, 0.0), ((1500, 2000), 4, 0.0), ((9000, 12000), 1, 1.0)]  # (h, w), prompts, threshold


def child(image: str, model: str, output: str, prompts: int, threshold: float) -> None:
    from visionports.tasks.segment_images import segment_files

    words = ["a cat", "a dog", "a hat", "a car"][:prompts]
    segment_files([image], words, model, output, threshold=threshold, progress=False, device="cpu")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        image, model, output, prompts, threshold = args.child
        return child(image, model, output, int(prompts), float(threshold))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "model"
        convert = [sys.executable, "-m", "visionports.cli", "convert", "sam3-lite-text", str(CASE / "checkpoint.pt"),
                   str(model), "--set", "num_attention_heads=8"]  # fmt: skip
        subprocess.run(convert, check=True, capture_output=True)
        rng = np.random.default_rng(0)
        Image.MAX_IMAGE_PIXELS = None
        for n, ((height, width), prompts, threshold) in enumerate(RUNS):
            image = tmp / f"image{n}.png"
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(image)
            run = [sys.executable, __file__, "--child", str(image), str(model), str(tmp / f"out{n}"), str(prompts),
                   str(threshold)]  # fmt: skip
            peak = float(subprocess.run(run, check=True, capture_output=True, text=True).stdout.split()[-1])
            image.unlink()
            print(f"{width}x{height} ({width * height / 1e6:.0f} MP), {prompts} prompt(s), threshold {threshold}: "
                  f"peak RSS {peak:7.1f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
