"""Writing ONNX graphs: one call for every family's export wrapper (``models/<family>/export_<family>.py``).

``torch.onnx.export(dynamo=True)`` of an eval-mode wrapper, every input's first axis dynamic (the batch) when
asked, written atomically (a crash never leaves a half-written ``.onnx``).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .files import atomic_write

DEFAULT_OPSET = 18
MIN_OPSET = 17  # LayerNormalization; GridSample needs 16
MAX_BATCH = 1024


def require_onnx() -> None:
    """Raise ``ImportError`` naming the extra when ``onnx`` / ``onnxscript`` are missing."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ONNX export needs `onnx` and `onnxscript`: pip install 'visionports[export]'"
        ) from err


def write_onnx(
    wrapper: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    output_path: str | os.PathLike,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_batch: bool = True,
    opset: int = DEFAULT_OPSET,
    optimize: bool = True,
    context: contextlib.AbstractContextManager | None = None,
) -> Path:
    """Export ``wrapper(*inputs)`` to ``output_path`` and return the path.

    ``dynamic_batch`` makes the first axis of every input dynamic (the example inputs need a batch of 2 or
    more); ``optimize`` runs onnxscript's optimiser (the runtimes optimise again when they load the graph);
    ``context`` is entered around the export (e.g. a fixed input size).
    """
    require_onnx()
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be at least {MIN_OPSET} (LayerNormalization, GridSample), got {opset}")
    output_path = Path(output_path)
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        dynamic_shapes = tuple({0: batch} for _ in inputs)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings(), context or contextlib.nullcontext():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapper.eval(),
            inputs,
            dynamo=True,
            opset_version=opset,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            verbose=False,
            optimize=optimize,
        )
    atomic_write(output_path, lambda tmp: program.save(str(tmp), external_data=False))
    return output_path
