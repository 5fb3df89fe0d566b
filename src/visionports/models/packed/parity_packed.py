"""``visionports parity-packed --model DIR``: packed encoder vs the standard model, image by image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Siglip2VisionConfig

from .packing import pack_images, unpack


@dataclass
class PackedCheck:
    size: tuple[int, int]
    rows: int
    max_abs: float
    pooled_max_abs: float | None
    passed: bool


def _reference(model, image: torch.Tensor, config, patch: int):
    if isinstance(config, Siglip2VisionConfig):
        rows, grid = pack_images([image], patch)
        h, w = grid[0, 1:].tolist()
        return model(pixel_values=rows[None], pixel_attention_mask=torch.ones(1, h * w, dtype=torch.long),
                     spatial_shapes=torch.tensor([[h, w]]))  # fmt: skip
    return model(pixel_values=image[None])


def compare_packed(
    folder: str | Path, sizes: list[tuple[int, int]], tolerance: float = 1e-5
) -> list[PackedCheck]:
    """Run random images of ``sizes`` packed and one by one through the standard model; compare per image."""
    from transformers import AutoConfig

    from .family import encoders_for, vision_config

    config = AutoConfig.from_pretrained(folder)
    packed_cls, standard_cls = encoders_for(config)
    config = vision_config(config)
    packed = packed_cls.from_pretrained(folder).eval()
    standard = standard_cls.from_pretrained(folder).eval()
    patch = config.patch_size
    generator = torch.Generator().manual_seed(0)
    images = [torch.randn(config.num_channels, h, w, generator=generator) for h, w in sizes]
    hidden, grid = pack_images(images, patch)
    checks = []
    with torch.no_grad():
        out = packed(hidden, grid)
        for i, (image, rows) in enumerate(
            zip(images, unpack(out.last_hidden_state, grid, packed.num_prefix_tokens), strict=True)
        ):
            ref = _reference(standard, image, config, patch)
            diff = (rows - ref.last_hidden_state[0]).abs()
            pooled = None
            if out.pooler_output is not None and ref.pooler_output is not None:
                pooled = float((out.pooler_output[i] - ref.pooler_output[0]).abs().max())
            ok = (
                bool(torch.isfinite(rows).all())
                and bool((diff <= tolerance).all())
                and (pooled is None or pooled <= tolerance)
            )
            checks.append(PackedCheck(sizes[i], rows.shape[0], float(diff.max()), pooled, ok))
    return checks
