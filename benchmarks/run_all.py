"""One CPU latency table for DEIMv2: our model on every backend against upstream transformers' Deimv2.

Run: ``python benchmarks/run_all.py [--sizes atto s] [--threads 1] [--repeats 5] [--no-e2e] [--no-compile]``
(about 4 minutes on a shared 2-core CPU; ``--sizes atto`` about 2).

For each size (Atto@320, S@640, batch 1) the two models hold the same random weights (``build_pair`` of
``benchmarks/deimv2_latency.py``) and get the same input tensor. Backends: eager torch, ``deploy()``,
``deploy(channels_last=True)``, ``torch.compile`` (its error class in the cell when it fails) and onnxruntime
(our exported graph). Only the network is timed (pixel_values in, raw logits/boxes out). After warm-up every
repeat runs each variant once, round-robin, so machine noise hits all alike; min and median are reported and
ratio = ours / upstream eager median (below 1: we are faster). With Atto, the end-to-end time (PIL image ->
detections: preprocessing, network, post-processing) is also given for eager torch and onnxruntime, against
upstream's network in the same pipeline.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deimv2_latency import build_pair  # noqa: E402

from visionports.backends import GRAPH_BACKENDS  # noqa: E402
from visionports.backends.deimv2 import GraphDetector  # noqa: E402
from visionports.backends.runtimes import open_graph  # noqa: E402
from visionports.models.deimv2.export_deimv2 import export_onnx  # noqa: E402
from visionports.models.deimv2.family import make_processor  # noqa: E402

SIZES = {"atto": 320, "s": 640}
WARMUP = 2


def _network(model: torch.nn.Module) -> Callable[[torch.Tensor], object]:
    return lambda pixels: model(pixel_values=pixels)


def _deployed(ours: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    return copy.deepcopy(ours).deploy(channels_last=channels_last)


def _compiled(ours: torch.nn.Module) -> Callable[[torch.Tensor], object] | str:
    try:
        compiled = torch.compile(copy.deepcopy(ours))
        with torch.inference_mode():
            compiled(
                pixel_values=torch.rand(1, 3, ours.config.eval_image_size[0], ours.config.eval_image_size[1])
            )
    except Exception as error:  # noqa: BLE001 - any failure is reported in the table, not raised
        return f"failed: {type(error).__name__}"
    return _network(compiled)


def _graph_sessions(ours: torch.nn.Module, folder: Path, size: int) -> dict[str, object]:
    path = export_onnx(ours, folder / "model.onnx", dynamic_batch=True, image_size=(size, size))
    return {backend: open_graph(path, backend, "cpu") for backend in GRAPH_BACKENDS}


def _variants(upstream, ours, sessions, compile_: bool) -> dict[str, Callable | str]:
    return {
        "upstream eager": _network(upstream),
        "eager": _network(ours),
        "deploy()": _network(_deployed(ours, False)),
        "deploy(channels_last)": _network(_deployed(ours, True)),
        "torch.compile": _compiled(ours) if compile_ else "skipped (--no-compile)",
        **{name: _graph(session) for name, session in sessions.items()},
    }


def _time_interleaved(calls: dict[str, Callable], argument: object, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per call: warm-up, then each repeat runs every variant once in turn."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for _ in range(WARMUP):
            for call in calls.values():
                call(argument)
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call(argument)
                times[name].append(1000 * (time.perf_counter() - start))
    return times


def _row(label: str, backend: str, cell: list[float] | str, reference: float) -> str:
    if isinstance(cell, str):
        return f"| {label} | {backend} | {cell} | | |"
    low, mid = min(cell), statistics.median(cell)
    return f"| {label} | {backend} | {low:.1f} | {mid:.1f} | {mid / reference:.2f} |"


def _print_rows(label: str, variants: dict[str, Callable | str], times: dict[str, list[float]]) -> None:
    reference = statistics.median(times["upstream eager"])
    for name, call in variants.items():
        print(_row(label, name, call if isinstance(call, str) else times[name], reference), flush=True)


def _graph(session) -> Callable[[torch.Tensor], object]:
    return lambda pixels: session(pixel_values=pixels)


def _end_to_end(upstream, ours, sessions, repeats: int) -> dict[str, list[float]]:
    processor = make_processor(ours.config)
    detectors = {
        name: GraphDetector(s, processor, dict(ours.config.id2label), {}) for name, s in sessions.items()
    }
    image = Image.new("RGB", (640, 480), (120, 80, 40))

    def pipeline(model):
        def run(images):
            pixels = processor(images, return_tensors="pt")["pixel_values"]
            outputs = model(pixel_values=pixels)
            return processor.post_process_object_detection(outputs, threshold=0.5, target_sizes=[(480, 640)])

        return run

    calls = {"upstream eager": pipeline(upstream), "eager": pipeline(ours), **detectors}
    return _time_interleaved(calls, [image], repeats)


def bench_size(preset: str, repeats: int, e2e: bool, compile_: bool) -> None:
    size = SIZES[preset]
    upstream, ours = build_pair(preset)
    pixels = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as folder:
        sessions = _graph_sessions(ours, Path(folder), size)
        variants = _variants(upstream, ours, sessions, compile_)
        runnable = {name: call for name, call in variants.items() if not isinstance(call, str)}
        times = _time_interleaved(runnable, pixels, repeats)
        _print_rows(f"{preset}@{size} network", variants, times)
        if e2e:
            e2e_times = _end_to_end(upstream, ours, sessions, repeats)
            _print_rows(f"{preset}@{size} end-to-end", dict.fromkeys(e2e_times, None), e2e_times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads and onnxruntime intra-op threads"
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed runs per variant (>= 5)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end rows (Atto only)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (its compile is slow)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # open_graph reads this for both runtimes' threads
    print(
        f"DEIMv2 CPU latency, batch 1, float32, torch {torch.__version__}, {args.threads} thread(s), "
        f"{args.repeats} interleaved repeats after {WARMUP} warm-up. Network only (pixel_values -> raw "
        "logits/boxes) unless marked end-to-end; ratio = ours / upstream eager median (< 1: we are faster)."
    )
    print("| size | backend | min ms | median ms | ratio |")
    print("|---|---|---|---|---|")
    for preset in args.sizes:
        bench_size(
            preset, args.repeats, e2e=preset == "atto" and not args.no_e2e, compile_=not args.no_compile
        )


if __name__ == "__main__":
    main()
