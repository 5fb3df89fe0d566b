"""One prepared GPU benchmark: every family's latency per backend and precision, TensorRT parity, flash varlen.

For each family (same random weights in ours and upstream transformers, as in the CPU benchmarks):

* torch rows: upstream eager, ours eager, ``deploy()`` and ``torch.compile``, each in float32, bfloat16 and
  float16 (TF32 off, so float32 is float32). Timed with ``torch.cuda.synchronize()`` around every call.
  Cases: DEIMv2 Atto@320 and S@640 (network), VidEoMT ViT-S/16 (a clip of frames in one call), SAM3-LiteText
  S0 text encoder (8 prompts).
* graph rows (our exported ONNX graph, float32 in, as ``--backend onnxruntime`` exports it): onnxruntime on
  ``CUDAExecutionProvider``, and TensorRT through onnxruntime's ``TensorrtExecutionProvider`` in fp32 and fp16
  (engines cached in the run's temporary folder). Graph rows include the host <-> device copies of their
  inputs and outputs (what a caller of ``session.run`` pays). Every graph row records its parity against our
  eager float32 model on the same input: max |diff| of each output, and whether it is within the CPU
  validation tolerance of ``visionports.backends`` (fp16 engines are reported, not judged).
* packed encoders: flash-attn varlen over one pack against pad-and-mask SDPA and one call per image, bf16.

Rows that cannot run here say why (no CUDA provider, no TensorRT, no flash-attn) instead of failing. Run on a
CUDA machine from the repository root (after the setup in ``benchmarks/gpu_check.py``; ``pip install
onnxruntime-gpu tensorrt`` for the graph rows)::

    python benchmarks/gpu_benchmark.py --output gpu_benchmark.json

``--device cpu --quick`` runs the same code on the CPU (onnxruntime's CPU provider stands in; TensorRT and
flash rows are skipped): ``tests/test_gpu_benchmark.py`` does that. Paste the printed table into the models'
docs pages with the environment line printed above it.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
WARMUP = 3


@dataclass
class Case:
    """One family at one size: models, an input, and how to export and feed its graph."""

    family: str
    name: str
    upstream: torch.nn.Module | None
    ours: torch.nn.Module
    inputs: dict[str, torch.Tensor]  # keyword inputs of both models' forward (float32, CPU)
    export: Callable[[torch.nn.Module, Path], Path] | None  # writes the ONNX graph of ``ours``
    graph_feed: dict[str, torch.Tensor]  # the graph's inputs by name
    graph_want: Callable[[torch.nn.Module], dict[str, torch.Tensor]]  # eager float32 outputs for graph_feed
    tolerances: dict[str, float] = field(default_factory=dict)  # graph vs eager float32, per output
    deploy: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    upstream_inputs: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None


@dataclass
class Row:
    family: str
    case: str
    backend: str
    dtype: str
    median_ms: float | None = None
    min_ms: float | None = None
    parity: dict[str, float] | None = None  # output -> max |diff| against eager float32
    parity_ok: bool | None = None
    note: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(call: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float]:
    with torch.inference_mode():
        for _ in range(WARMUP):
            call()
        _sync(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            _sync(device)
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), min(times)


def _placed(
    inputs: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    return {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in inputs.items()}


def _error(err: BaseException) -> str:
    text = str(err).splitlines()[0][:120] if str(err) else ""
    return f"failed: {type(err).__name__}: {text}"


def torch_rows(
    case: Case, device: torch.device, dtypes: list[str], repeats: int, compile_: bool
) -> list[Row]:
    """Upstream eager, ours eager / deploy / compile in every dtype."""
    variants: dict[str, tuple[torch.nn.Module, bool]] = {"ours eager": (case.ours, False)}
    if case.upstream is not None:
        variants = {"upstream eager": (case.upstream, False), **variants}
    if case.deploy is not None:
        variants["ours deploy()"] = (case.ours, False)
    if compile_:
        variants["ours torch.compile"] = (case.ours, True)
    found = []
    for dtype_name in dtypes:
        for backend, (model, compiled) in variants.items():
            row = Row(case.family, case.name, backend, dtype_name)
            try:
                placed = copy.deepcopy(model).to(device, DTYPES[dtype_name])
                if backend == "ours deploy()":
                    placed = case.deploy(placed)
                run = torch.compile(placed) if compiled else placed
                inputs = _placed(case.inputs, device, DTYPES[dtype_name])
                if backend.startswith("upstream") and case.upstream_inputs is not None:
                    inputs = case.upstream_inputs(inputs)
                row.median_ms, row.min_ms = _time(lambda r=run, i=inputs: r(**i), device, repeats)
            except Exception as err:  # noqa: BLE001 - reported in the table
                row.note = _error(err)
            found.append(row)
    return found


def _providers(device: torch.device, kind: str, fp16: bool, cache: Path) -> list[Any] | str:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.type != "cuda":
        return ["CPUExecutionProvider"] if kind == "onnxruntime" else "skipped: TensorRT needs CUDA"
    index = device.index or 0
    if kind == "onnxruntime":
        if "CUDAExecutionProvider" not in available:
            return "skipped: no CUDAExecutionProvider (pip install onnxruntime-gpu)"
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    if "TensorrtExecutionProvider" not in available:
        return "skipped: no TensorrtExecutionProvider (onnxruntime-gpu with TensorRT libraries)"
    options = {"device_id": index, "trt_fp16_enable": fp16, "trt_engine_cache_enable": True,
               "trt_engine_cache_path": str(cache)}  # fmt: skip
    return [("TensorrtExecutionProvider", options), ("CUDAExecutionProvider", {"device_id": index})]


def graph_rows(case: Case, device: torch.device, folder: Path, repeats: int) -> list[Row]:
    """onnxruntime (CUDA provider) and TensorRT fp32 / fp16 on our exported graph, with parity to eager."""
    if case.export is None:
        return [
            Row(
                case.family, case.name, "graphs", "float32", note="skipped: no exported graph for this family"
            )
        ]
    try:
        import onnxruntime as ort
    except ImportError:
        return [
            Row(case.family, case.name, "graphs", "float32", note="skipped: onnxruntime is not installed")
        ]
    try:
        path = case.export(copy.deepcopy(case.ours).float().cpu(), folder / f"{case.family}-{case.name}.onnx")
    except Exception as err:  # noqa: BLE001
        return [Row(case.family, case.name, "graphs", "float32", note=_error(err))]
    with torch.inference_mode():
        want = case.graph_want(case.ours.float().cpu())
    feed = {k: v.numpy() for k, v in case.graph_feed.items()}
    found = []
    for kind, fp16 in (("onnxruntime", False), ("tensorrt", False), ("tensorrt", True)):
        row = Row(case.family, case.name, f"{kind} ({'CUDA' if device.type == 'cuda' else 'CPU'} provider)",
                  "float16" if fp16 else "float32")  # fmt: skip
        providers = _providers(device, kind, fp16, folder / "trt-cache")
        if isinstance(providers, str):
            row.note = providers
            found.append(row)
            continue
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            session = ort.InferenceSession(str(path), options, providers=providers)
            names = [o.name for o in session.get_outputs()]
            got = dict(zip(names, session.run(names, feed), strict=True))
            row.parity = {
                k: float((torch.from_numpy(got[k]).float() - v.float()).abs().max()) for k, v in want.items()
            }
            if not fp16 and case.tolerances:
                row.parity_ok = all(row.parity[k] <= tol for k, tol in case.tolerances.items())
            row.median_ms, row.min_ms = _time(lambda s=session, n=names: s.run(n, feed), device, repeats)
        except Exception as err:  # noqa: BLE001
            row.note = _error(err)
        found.append(row)
    return found


def flash_rows(device: torch.device, repeats: int, quick: bool) -> list[Row]:
    """Packed encoders: flash-attn varlen vs pad-and-mask vs one call per image (:mod:`gpu_cases`)."""
    from gpu_cases import packed_variants

    found = []
    for family, case, variants in packed_variants(device, quick):
        for backend, call in variants.items():
            row = Row(family, case, backend, "bfloat16" if device.type == "cuda" else "float32")
            if isinstance(call, str):
                row.note = call
            else:
                try:
                    row.median_ms, row.min_ms = _time(call, device, repeats)
                except Exception as err:  # noqa: BLE001
                    row.note = _error(err)
            found.append(row)
    return found


def cases(quick: bool) -> list[Case]:
    """Every family's cases (``quick``: the smallest of each)."""
    from gpu_cases import all_cases

    return all_cases(quick)


def render(rows: list[Row]) -> str:
    lines = ["| family | case | backend | dtype | median ms | min ms | parity max abs | note |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        parity = ", ".join(f"{k} {v:.1e}" for k, v in (r.parity or {}).items())
        if r.parity_ok is not None:
            parity += " ok" if r.parity_ok else " BEYOND TOLERANCE"
        num = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(f"| {r.family} | {r.case} | {r.backend} | {r.dtype} | {num(r.median_ms)} | {num(r.min_ms)} "
                     f"| {parity} | {r.note} |")  # fmt: skip
    return "\n".join(lines)


def environment(device: torch.device) -> dict[str, str]:
    env = {"torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = str(torch.version.cuda)
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="the smallest case per family, float32 only")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument(
        "--families", nargs="+", help="only these families (DEIMv2, VidEoMT, SAM3-LiteText, packed)"
    )
    parser.add_argument("--output", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here (use --device cpu to try the script)")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dtypes = ["float32"] if args.quick else list(DTYPES)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gpu-benchmark-") as tmp:
        for case in cases(args.quick):
            if args.families and case.family not in args.families:
                continue
            rows += torch_rows(case, device, dtypes, args.repeats, not args.no_compile)
            rows += graph_rows(case, device, Path(tmp), args.repeats)
        if not args.families or "packed" in args.families:
            rows += flash_rows(device, args.repeats, args.quick)
    env = environment(device)
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    print(render(rows))
    if args.output:
        args.output.write_text(json.dumps({"environment": env, "rows": [asdict(r) for r in rows]}, indent=1))
    failed = [r for r in rows if r.parity_ok is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
