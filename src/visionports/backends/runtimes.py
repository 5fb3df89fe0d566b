"""ONNX graph runtimes behind one signature: ``open_graph(path, backend, device)(name=tensor, ...)``.

onnxruntime runs with all graph optimisations on its CPU or CUDA provider; OpenVINO compiles the graph for
its CPU plugin in float32 (``INFERENCE_PRECISION_HINT``: on CPUs with bf16 units it would otherwise pick
bf16). Both use ``torch.get_num_threads()`` threads, so a benchmark's thread count holds for every backend.
Graphs keep their dynamic axes: OpenVINO's static reshape of the DEIMv2 DINOv3 graphs was measured to pick
different queries (max |diff| 1.6 on logits) where the dynamic graph matches eager to 3e-5.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.devices import resolve_device, resolve_dtype
from ..core.errors import MissingExtraError, VisionportsError
from . import GRAPH_BACKENDS

INSTALL = {
    "onnxruntime": "pip install 'visionports[export]'",
    "openvino": "pip install 'visionports[openvino]'",
}


class BackendOptionError(VisionportsError, ValueError):
    """A ``--backend`` combined with a device or dtype it cannot serve."""


def _module(backend: str) -> Any:
    try:
        if backend == "onnxruntime":
            import onnxruntime as module
        else:
            import openvino as module
    except ImportError:
        raise MissingExtraError(f"--backend {backend} needs {backend}: {INSTALL[backend]}") from None
    return module


def runtime_version(backend: str) -> str:
    """The installed version of ``backend``'s package (part of every cache key)."""
    _module(backend)
    try:
        return version(backend)
    except PackageNotFoundError:  # pragma: no cover - an unpackaged build
        return str(getattr(_module(backend), "__version__", "unknown"))


def check_backend(backend: str, device: str | None, dtype: str | None) -> torch.device:
    """The device ``backend`` runs on; refuses what it cannot serve (before any model is loaded)."""
    if backend not in GRAPH_BACKENDS:
        raise BackendOptionError(
            f"--backend: expected one of torch, {', '.join(GRAPH_BACKENDS)}, got {backend!r}"
        )
    module = _module(backend)
    if resolve_dtype(dtype) != torch.float32:
        raise BackendOptionError(
            f"--backend {backend} runs float32 only, got --dtype {dtype}: use --dtype float32 "
            "(or --backend torch for half precision)"
        )
    name = (device or "auto").strip().lower()
    if backend == "onnxruntime":
        available = module.get_available_providers()
        has_cuda = "CUDAExecutionProvider" in available
        if name == "auto":
            name = "cuda" if has_cuda and torch.cuda.is_available() else "cpu"
        if name.startswith("cuda") and not has_cuda:
            raise BackendOptionError(
                f"--backend onnxruntime --device {device}: this onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu or use --device cpu"
            )
    elif name == "auto":
        name = "cpu"
    served = ("cpu", "cuda") if backend == "onnxruntime" else ("cpu",)
    if name.split(":")[0] not in served:
        raise BackendOptionError(
            f"--backend {backend}: --device {device} is not supported (use {' or '.join(served)})"
        )
    return resolve_device(name)


@dataclass
class GraphSession:
    """A loaded graph: ``session(pixel_values=tensor)`` -> its outputs by name, as CPU tensors."""

    path: Path
    backend: str
    device: torch.device
    runner: Any
    output_names: tuple[str, ...]

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        feed = {name: _numpy(value) for name, value in inputs.items()}
        if self.backend == "onnxruntime":
            values = self.runner.run(list(self.output_names), feed)
        else:
            result = self.runner.infer(feed)
            values = [result[name] for name in self.output_names]
        return {
            name: torch.from_numpy(np.asarray(v)) for name, v in zip(self.output_names, values, strict=True)
        }


def _numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    return value.detach().cpu().contiguous().numpy() if isinstance(value, torch.Tensor) else value


def open_graph(path: str | Path, backend: str, device: str | torch.device | None = "cpu") -> GraphSession:
    """``path`` (an ONNX file) loaded in ``backend`` on ``device`` (``cpu``, or ``cuda[:N]`` for onnxruntime)."""
    path = Path(path)
    where = device if isinstance(device, torch.device) else check_backend(backend, device, "float32")
    threads = torch.get_num_threads()
    if backend == "onnxruntime":
        ort = _module(backend)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        providers: list[Any] = ["CPUExecutionProvider"]
        if where.type == "cuda":
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": where.index or 0}))
        session = ort.InferenceSession(str(path), options, providers=providers)
        names = tuple(output.name for output in session.get_outputs())
        return GraphSession(path, backend, where, session, names)
    ov = _module(backend)
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    names = tuple(output.get_any_name() for output in compiled.outputs)
    return GraphSession(path, backend, where, compiled.create_infer_request(), names)
