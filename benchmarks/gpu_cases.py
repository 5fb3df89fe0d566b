"""The cases ``gpu_benchmark.py`` times: each family's models at random weights, an input, its graph export.

The models come from the family's CPU benchmark module (same builders, same weights in ours and upstream).
"""

from __future__ import annotations

from pathlib import Path

import torch
from gpu_benchmark import Case


def deimv2_cases(quick: bool) -> list[Case]:
    from deimv2_latency import SIZES, build_pair

    from visionports.backends.deimv2 import TOLERANCES
    from visionports.models.deimv2.export_deimv2 import export_onnx

    found = []
    for preset in ["atto"] if quick else list(SIZES):
        size = SIZES[preset]
        upstream, ours = build_pair(preset)
        pixels = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))

        def export(model: torch.nn.Module, path: Path, size: int = size) -> Path:
            return export_onnx(model, path, dynamic_batch=True, image_size=(size, size))

        found.append(Case(
            "DEIMv2", f"{preset}@{size} b1", upstream, ours, {"pixel_values": pixels},
            outputs=lambda out: {"logits": out.logits, "pred_boxes": out.pred_boxes}, export=export,
            tolerances=dict(TOLERANCES), deploy=lambda model: model.deploy(channels_last=True),
        ))  # fmt: skip
    return found


def all_cases(quick: bool) -> list[Case]:
    return [*deimv2_cases(quick)]


def packed_variants(device: torch.device, quick: bool) -> list[tuple[str, str, dict]]:
    """(family, case, {backend: call | why not}) for the packed encoders."""
    return []
