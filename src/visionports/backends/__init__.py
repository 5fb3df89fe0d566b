"""Inference backends other than eager PyTorch (``--backend``); see :mod:`.onnxruntime_deimv2`."""

from __future__ import annotations

BACKENDS = ("torch", "onnxruntime")
