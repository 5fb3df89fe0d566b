"""VidEoMT: our streaming path (one frame per call, state carried) vs upstream transformers' whole-clip call.

Run: ``python benchmarks/videomt_streaming.py [--size 224] [--lengths 8 32 128]``. Same random weights (DINOv2
ViT-S/16 VidEoMT, 200 queries, 40 classes) in both; upstream only takes its square training size, so frames
are ``size`` x ``size``. Per-frame latency is the median over frames; peak memory is the peak resident set of
a fresh process that runs the whole video. Ratios are upstream / ours (above 1: we are faster / leaner).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "models" / "videomt"))
sys.path.insert(0, str(ROOT / "tests"))


def build(size: int):
    from test_modeling_videomt import _to_upstream
    from transformers import VideomtConfig as UpstreamConfig
    from transformers import VideomtForUniversalSegmentation as Upstream

    from visionports.models.videomt import VideomtConfig, VideomtForUniversalSegmentation

    torch.manual_seed(0)
    ours = VideomtForUniversalSegmentation(
        VideomtConfig.from_preset("dinov2_s_ytvis2019", position_grid_size=size // 16)
    ).eval()
    upstream = Upstream(UpstreamConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                       intermediate_size=1536, num_register_tokens=4, image_size=size, patch_size=16,
                                       num_queries=200, num_labels=40, num_blocks=3)).eval()  # fmt: skip
    upstream.load_state_dict(_to_upstream(ours.state_dict()), strict=False)
    return ours, upstream


def child(mode: str, frames: int, size: int) -> None:
    ours, upstream = build(size)
    video = torch.randn(1, frames, 3, size, size, generator=torch.Generator().manual_seed(1))
    times = []
    with torch.inference_mode():
        if mode == "ours":
            state = None
            for t in range(frames):
                start = time.perf_counter()
                out = ours(video[:, t : t + 1], state=state)
                state = out.state
                times.append(time.perf_counter() - start)
            per_frame = statistics.median(times)
        else:
            start = time.perf_counter()
            upstream(pixel_values_videos=video)
            per_frame = (time.perf_counter() - start) / frames
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"ms_per_frame": 1000 * per_frame, "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FRAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.size)
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, frames {args.size}x{args.size}"
    )
    print(
        f"{'T':>5}{'upstream ms/frame':>19}{'ours ms/frame':>15}{'ratio':>7}{'upstream MB':>13}{'ours MB':>9}{'ratio':>7}"
    )
    for frames in args.lengths:
        runs = {}
        for mode in ("upstream", "ours"):
            cmd = [sys.executable, __file__, "--size", str(args.size), "--child", mode, str(frames)]
            runs[mode] = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True)
                .stdout.strip()
                .splitlines()[-1]
            )
        up, us = runs["upstream"], runs["ours"]
        print(f"{frames:>5}{up['ms_per_frame']:>19.1f}{us['ms_per_frame']:>15.1f}{up['ms_per_frame'] / us['ms_per_frame']:>7.2f}"
              f"{up['peak_mb']:>13.0f}{us['peak_mb']:>9.0f}{up['peak_mb'] / us['peak_mb']:>7.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
