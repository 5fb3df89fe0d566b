"""Inference backends other than eager PyTorch (``--backend``).

:mod:`.runtimes` opens an ONNX graph in onnxruntime or OpenVINO behind one call signature, :mod:`.cache` keeps
exported graphs beside the model folder, :mod:`.validation` refuses a graph that disagrees with the eager
model, and one module per family (:mod:`.deimv2`, ...) puts the three together for that family's task.
"""

from __future__ import annotations

GRAPH_BACKENDS = ("onnxruntime", "openvino")
BACKENDS = ("torch", *GRAPH_BACKENDS)
