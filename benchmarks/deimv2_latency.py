"""CPU latency of visionports' DEIMv2 (every backend) against upstream transformers' Deimv2 at the same weights.

Run: ``python benchmarks/deimv2_latency.py [--repeats 5] [--threads 1] [--sizes atto s] [--no-compile]``, or
through ``benchmarks/run_all.py`` (one table for every family). For each size (Atto@320, S@640, batch 1) both
models hold the same random weights (:func:`build_pair`) and get the same input. Network rows time
``pixel_values`` -> raw logits / boxes: eager, ``deploy()``, ``deploy(channels_last=True)``, ``torch.compile``
and our exported graph in onnxruntime and OpenVINO; each graph row also gives its max |logits - eager|.
End-to-end rows time a 640x480 PIL image -> thresholded detections: upstream's own image processor
(``RTDetrImageProcessorPil``, what ``AutoImageProcessor`` gives for ``deimv2`` without torchvision), network and
post-processing against ours on each backend. Ratio = ours / upstream eager median (< 1: we are faster).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "models" / "deimv2"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import HEADER, Row, attempt, rows  # noqa: E402
from transformers import Deimv2ForObjectDetection as UpstreamDeimv2  # noqa: E402
from transformers import RTDetrImageProcessorPil  # noqa: E402
from upstream_anchor import randomize_, upstream_config, upstream_to_original_state_dict  # noqa: E402

from visionports import Deimv2ForObjectDetection  # noqa: E402
from visionports.backends import GRAPH_BACKENDS  # noqa: E402
from visionports.backends.deimv2 import GraphDetector  # noqa: E402
from visionports.backends.runtimes import open_graph  # noqa: E402
from visionports.core.load_report import load_mapped  # noqa: E402
from visionports.models.deimv2.convert_deimv2 import convert_state_dict, infer_config  # noqa: E402
from visionports.models.deimv2.export_deimv2 import export_onnx  # noqa: E402
from visionports.models.deimv2.family import make_processor  # noqa: E402

SIZES = {"atto": 320, "s": 640}
FAMILY = "DEIMv2"


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


def _network(model: Callable) -> Callable[[torch.Tensor], object]:
    return lambda pixels: model(pixel_values=pixels)


def _compiled(ours: torch.nn.Module, pixels: torch.Tensor) -> Callable | str:
    return attempt(lambda: _network(torch.compile(copy.deepcopy(ours))), check=pixels)


def _graphs(ours: torch.nn.Module, folder: Path, size: int) -> dict[str, Callable]:
    path = export_onnx(ours, folder / "model.onnx", dynamic_batch=True, image_size=(size, size))
    return {name: open_graph(path, name, "cpu") for name in GRAPH_BACKENDS}


def _drift(session: Callable, ours: torch.nn.Module, pixels: torch.Tensor) -> str:
    """Max |logits - eager| and how many queries differ by more than 1e-3 (random weights are ill-conditioned:
    a near-tie in the encoder's query selection can swap a few queries between two correct float32 runs)."""
    with torch.inference_mode():
        diff = (session(pixel_values=pixels)["logits"] - ours(pixel_values=pixels).logits).abs().amax(-1)
    return f"{float(diff.max()):.1e}, {int((diff > 1e-3).sum())}/{diff.shape[-1]} queries > 1e-3"


def network_rows(preset: str, upstream, ours, graphs, repeats: int, compile_: bool) -> list[Row]:
    pixels = torch.rand(1, 3, SIZES[preset], SIZES[preset], generator=torch.Generator().manual_seed(0))
    variants = {
        "upstream eager": _network(upstream),
        "eager": _network(ours),
        "deploy()": _network(copy.deepcopy(ours).deploy(channels_last=False)),
        "deploy(channels_last)": _network(copy.deepcopy(ours).deploy(channels_last=True)),
        "torch.compile": _compiled(ours, pixels) if compile_ else "skipped (--no-compile)",
        **{f"{name} (max Δlogits {_drift(s, ours, pixels)})": _network(s) for name, s in graphs.items()},
    }
    return rows(FAMILY, f"{preset}@{SIZES[preset]} network b1", variants, pixels, repeats)


def _pipeline(processor, network: Callable) -> Callable[[list[Image.Image]], object]:
    def run(images: list[Image.Image]) -> object:
        pixels = processor(images, return_tensors="pt")["pixel_values"]
        outputs = network(pixels)
        sizes = [(im.height, im.width) for im in images]
        return processor.post_process_object_detection(outputs, threshold=0.5, target_sizes=sizes)

    return run


def end_to_end_rows(preset: str, upstream, ours, graphs, repeats: int) -> list[Row]:
    size = SIZES[preset]
    processor = make_processor(ours.config)
    normalize = (
        {"image_mean": processor.image_mean, "image_std": processor.image_std}
        if processor.do_normalize
        else {}
    )
    theirs = RTDetrImageProcessorPil(
        size={"height": size, "width": size}, do_normalize=bool(normalize), **normalize
    )
    deployed = copy.deepcopy(ours).deploy(channels_last=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    variants = {
        "upstream eager": _pipeline(theirs, _network(upstream)),
        "eager": _pipeline(processor, _network(ours)),
        "deploy(channels_last)": _pipeline(processor, _network(deployed)),
        **{name: GraphDetector(s, processor, ours.config, {}) for name, s in graphs.items()},
    }
    return rows(FAMILY, f"{preset}@{size} end-to-end b1", variants, [image], repeats)


def table(repeats: int, quick: bool, compile_: bool = True, sizes: list[str] | None = None) -> list[Row]:
    """Network and end-to-end rows per size (``quick``: Atto only)."""
    found: list[Row] = []
    for preset in sizes or (["atto"] if quick else list(SIZES)):
        upstream, ours = build_pair(preset)
        with tempfile.TemporaryDirectory() as folder:
            graphs = _graphs(ours, Path(folder), SIZES[preset])
            found += network_rows(preset, upstream, ours, graphs, repeats, compile_)
            found += end_to_end_rows(preset, upstream, ours, graphs, repeats)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (the graph runtimes use as many)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed runs per variant (>= 5)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (its compile is slow)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"DEIMv2, CPU, float32, torch {torch.__version__}, {args.threads} thread(s), {args.repeats} repeats"
    )
    print(HEADER)
    for row in table(args.repeats, False, not args.no_compile, args.sizes):
        print(row.markdown(), flush=True)


if __name__ == "__main__":
    main()
