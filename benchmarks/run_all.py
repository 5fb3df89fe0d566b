"""One CPU latency table for every family: ours on every backend against upstream transformers in one run.

Run: ``python benchmarks/run_all.py [--families deimv2 videomt sam3 packed] [--threads 1] [--repeats 5]
[--quick]``. Each family's benchmark module gives its rows (``table(repeats, quick)``): the same random
weights in ours and upstream, the same inputs, every variant run once per repeat in turn after warm-up (so
machine noise hits all alike); min and median per variant, ratio = median / the reference median named in
the last column (upstream transformers eager, or for the packed encoders pad-and-mask and one call per
image). ``--quick`` keeps the smallest case per family. The thread count holds for torch and both graph
runtimes.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import HEADER  # noqa: E402

MODULES = {
    "deimv2": "deimv2_latency",
    "videomt": "videomt_streaming",
    "sam3": "sam3_lite_text",
    "packed": "packed_encoders",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", choices=list(MODULES), default=list(MODULES))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (the graph runtimes use as many)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed runs per variant (>= 5)")
    parser.add_argument("--quick", action="store_true", help="the smallest case of each family only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"CPU latency, float32, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s), {args.repeats} interleaved repeats after warm-up; ratio = median / the "
        "reference median (< 1: faster)."
    )
    print(HEADER, flush=True)
    start = time.perf_counter()
    for family in args.families:
        module = importlib.import_module(MODULES[family])
        for row in module.table(args.repeats, args.quick):
            print(row.markdown(), flush=True)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
