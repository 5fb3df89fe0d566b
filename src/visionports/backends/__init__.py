"""Inference backends other than eager PyTorch (``--backend``).

:mod:`.runtimes` opens an ONNX graph in onnxruntime or OpenVINO behind one call signature, :mod:`.cache` keeps
exported graphs beside the model folder, :mod:`.validation` refuses a graph that disagrees with the eager
model, and one module per family (:mod:`.deimv2`, ...) puts the three together for that family's task.
"""

from __future__ import annotations

GRAPH_BACKENDS = ("onnxruntime", "openvino")
BACKENDS = ("torch", *GRAPH_BACKENDS)


def speed_settings(
    backend: str, deploy: bool, compile_model: bool, device: str | None, dtype: str | None
) -> dict[str, object]:
    """Check a task's ``backend`` / ``deploy`` / ``compile_model`` choice (before any model is loaded) and
    return what its results record: ``{"backend": ...}`` for a graph backend, ``{"deploy": True}``, ...

    Raises ``ValueError`` for an unknown backend or ``--deploy`` / ``--compile`` with a graph backend, and
    :class:`~visionports.backends.runtimes.BackendOptionError` (or ``MissingExtraError``) for a device,
    dtype or installation the backend cannot serve.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "torch":
        if deploy or compile_model:
            option = "--deploy" if deploy else "--compile"
            raise ValueError(
                f"{option} applies to --backend torch (the {backend} graph is fused by {backend})"
            )
        from .runtimes import check_backend

        check_backend(backend, device, dtype)
        return {"backend": backend}
    return {key: True for key, on in (("deploy", deploy), ("compile", compile_model)) if on}
