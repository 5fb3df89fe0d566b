"""CPU latency of visionports' DEIMv2 against upstream transformers' Deimv2 at the same random weights.

Run: ``python benchmarks/deimv2_latency.py [--repeats 5] [--threads N]``. Prints one table; the ratio is
upstream time / our time (above 1: we are faster). Timings are medians over ``--repeats`` runs after warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models" / "deimv2"))

from transformers import Deimv2ForObjectDetection as UpstreamDeimv2  # noqa: E402
from upstream_anchor import randomize_, upstream_config, upstream_to_original_state_dict  # noqa: E402

from visionports import Deimv2ForObjectDetection  # noqa: E402
from visionports.core.load_report import load_mapped  # noqa: E402
from visionports.models.deimv2.convert_deimv2 import convert_state_dict, infer_config  # noqa: E402

CASES = [("atto", 320), ("s", 640)]
BATCHES = [1, 8]


def build_pair(preset: str, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Upstream model at random weights and ours holding the same weights (via the original layout)."""
    upstream = UpstreamDeimv2(upstream_config(preset)).eval()
    with torch.no_grad():
        randomize_(upstream, seed, calibrate=False)
    original = upstream_to_original_state_dict(upstream.state_dict(), preset)
    config = infer_config(original, variant=preset)
    ours = Deimv2ForObjectDetection(config).eval()
    load_mapped(ours, convert_state_dict(original, config))
    return upstream, ours


def median_ms(model: torch.nn.Module, pixels: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(2):
            model(pixel_values=pixels)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(pixel_values=pixels)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32")
    print(f"{'model':<8}{'size':>6}{'batch':>7}{'upstream ms':>14}{'ours ms':>10}{'ratio':>8}")
    for preset, size in CASES:
        upstream, ours = build_pair(preset)
        for batch in BATCHES:
            pixels = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
            theirs_ms = median_ms(upstream, pixels, args.repeats)
            ours_ms = median_ms(ours, pixels, args.repeats)
            print(
                f"{preset:<8}{size:>6}{batch:>7}{theirs_ms:>14.1f}{ours_ms:>10.1f}{theirs_ms / ours_ms:>8.2f}"
            )


if __name__ == "__main__":
    main()
