"""VidEoMT: our streaming path (one frame per call, state carried) vs upstream transformers' whole-clip call.

Run: ``python benchmarks/videomt_streaming.py [--size 224] [--lengths 8 32 128]``. Same random weights (DINOv2
ViT-S/16 VidEoMT, 200 queries, 40 classes) in both; upstream only takes its square training size, so frames
are ``size`` x ``size``. Per-frame latency is the median over frames; peak memory is the peak resident set of
a fresh process that runs the whole video. Ratios are upstream / ours (above 1: we are faster / leaner).

``table(repeats, quick)`` (``benchmarks/run_all.py``, or ``--table`` here at 1 thread) gives the latency rows of
every backend: ms per frame of a ``size`` x ``size`` video streamed one frame per call with the state carried
(upstream: its whole-clip call divided by the frames, as above), ours eager, ``deploy()``, ``torch.compile``
and the single-step graph in onnxruntime and OpenVINO (with its max |mask logits - eager| over the video).
Ratio = ours / upstream median (below 1: we are faster).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "models" / "videomt"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import Row, attempt, rows  # noqa: E402

FAMILY = "VidEoMT"


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


def _streamed(
    step: Callable[[torch.Tensor, object], tuple[object, object]],
) -> Callable[[torch.Tensor], object]:
    """A whole video ``[1, T, 3, H, W]`` streamed one frame per call, ``step(frame, state) -> (out, state)``."""

    def run(video: torch.Tensor) -> object:
        state = out = None
        for t in range(video.shape[1]):
            out, state = step(video[:, t], state)
        return out

    return run


def _torch_step(model: Callable) -> Callable[[torch.Tensor, object], tuple[object, object]]:
    def step(frame: torch.Tensor, state: object) -> tuple[object, object]:
        out = model(frame, state=state)
        return out, out.state

    return step


def _graph_step(session: Callable, initial: torch.Tensor) -> Callable[[torch.Tensor, object], tuple]:
    def step(frame: torch.Tensor, queries: torch.Tensor | None) -> tuple[object, torch.Tensor]:
        out = session(pixel_values=frame, queries=initial if queries is None else queries)
        return out, out["next_queries"]

    return step


def _graph_variants(ours, video: torch.Tensor, folder: Path, size: int) -> dict[str, Callable | str]:
    """The step graph in each runtime, named with its max |mask logits - eager| over ``video``."""
    from visionports.backends import GRAPH_BACKENDS
    from visionports.backends.runtimes import open_graph
    from visionports.models.videomt.export_videomt import export_step_onnx, initial_queries

    path = export_step_onnx(ours, folder / "step.onnx", (size, size))
    with torch.inference_mode():
        want = ours(video).masks_queries_logits[0]
    variants: dict[str, Callable | str] = {}
    for name in GRAPH_BACKENDS:
        step = _graph_step(open_graph(path, name, "cpu"), initial_queries(ours))
        masks, state = [], None
        for t in range(video.shape[1]):
            out, state = step(video[:, t], state)
            masks.append(out["masks_queries_logits"][0])
        drift = float((torch.stack(masks) - want).abs().max())
        variants[f"{name} (max Δmasks {drift:.1e})"] = _streamed(step)
    return variants


def _per_frame(found: list[Row], frames: int) -> list[Row]:
    """Rows timed per video, in ms per frame (ratios unchanged)."""
    for row in found:
        if not isinstance(row.times, str):
            row.times = [ms / frames for ms in row.times]
        row.reference_ms /= frames
    return found


def table(repeats: int, quick: bool, size: int = 224) -> list[Row]:
    """Per-frame streaming latency rows of the DINOv2 ViT-S/16 VidEoMT (``quick``: an 8-frame video, else 32)."""
    frames = 8 if quick else 32
    ours, upstream = build(size)
    video = torch.randn(1, frames, 3, size, size, generator=torch.Generator().manual_seed(1))
    first = video[:, :1]
    variants: dict[str, Callable | str] = {
        "upstream eager (clip / T)": lambda clip: upstream(pixel_values_videos=clip),
        "eager": _streamed(_torch_step(ours)),
        "deploy()": _streamed(_torch_step(copy.deepcopy(ours).deploy())),
        "torch.compile": attempt(
            lambda: _streamed(_torch_step(torch.compile(copy.deepcopy(ours), dynamic=False))), check=first
        ),
    }
    with tempfile.TemporaryDirectory() as folder:
        variants.update(_graph_variants(ours, video, Path(folder), size))
        found = rows(FAMILY, f"ViT-S/16 {size}x{size} T={frames} ms/frame", variants, video, repeats)
    return _per_frame(found, frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FRAMES"), help=argparse.SUPPRESS)
    parser.add_argument("--table", action="store_true", help="the backend latency table (1 thread) instead")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="with --table: an 8-frame video")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.size)
        return
    if args.table:
        from timing import HEADER

        torch.set_num_threads(1)
        print(HEADER)
        for row in table(args.repeats, args.quick, args.size):
            print(row.markdown(), flush=True)
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
