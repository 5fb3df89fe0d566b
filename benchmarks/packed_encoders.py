"""Packed encoders (AIMv2, SigLIP2 naflex, DINOv3) vs pad-and-mask and vs one upstream call per image, CPU.

Run: ``python benchmarks/packed_encoders.py [--repeats 5] [--threads 1] [--quick]`` (``--quick`` skips
``torch.compile``, about 70 s of compiling per family on a shared 2-core machine). Each family: a small
encoder (384 wide, 6 layers, 6 heads, same random weights in every path) and eight images of mixed sizes (the
grids of ``GRIDS``, 3032 patches packed, 4800 padded to the longest). Paths:

- pad-and-mask: our packed embeddings padded to the longest image, upstream's own layers with a key-padding
  mask (one SDPA call per layer over the padded batch), then the final norm and pooling on the valid rows;
- one upstream call per image: the standard transformers model on each image alone;
- ours, packed: eager (per-segment SDPA) and ``torch.compile`` (checked against eager).

``table()`` gives two ratio groups per family: every path ÷ pad-and-mask, and the packed paths ÷ one call per
image. Timing (interleaved repeats, min / median): ``benchmarks/timing.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from transformers import (
    Aimv2VisionConfig,
    Aimv2VisionModel,
    DINOv3ViTConfig,
    DINOv3ViTModel,
    Siglip2VisionConfig,
    Siglip2VisionModel,
)
from transformers.models.aimv2.modeling_aimv2 import Aimv2EncoderLayer
from transformers.models.dinov3_vit.modeling_dinov3_vit import DINOv3ViTLayer
from transformers.models.siglip2.modeling_siglip2 import Siglip2EncoderLayer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import HEADER, Row, rows  # noqa: E402

from visionports.models.packed.aimv2_packed import Aimv2PackedVisionModel  # noqa: E402
from visionports.models.packed.dinov3_packed import Dinov3PackedVisionModel  # noqa: E402
from visionports.models.packed.packing import pack_images, segment_lengths  # noqa: E402
from visionports.models.packed.siglip2_packed import Siglip2PackedVisionModel  # noqa: E402

GRIDS = [(16, 16), (16, 24), (24, 24), (32, 16), (8, 8), (20, 30), (16, 16), (24, 16)]  # (h, w) in patches
WIDTH = dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6)
PAD = "pad-and-mask (upstream layers)"
PER_IMAGE = "one upstream call per image"
Packed = tuple[torch.Tensor, torch.Tensor]
FAMILIES = {  # config, standard model, packed model, upstream layer (for pad-and-mask)
    "aimv2": (
        lambda: Aimv2VisionConfig(patch_size=14, image_size=224, is_native=True, use_head=True, **WIDTH),
        Aimv2VisionModel,
        Aimv2PackedVisionModel,
        Aimv2EncoderLayer,
    ),
    "siglip2": (
        lambda: Siglip2VisionConfig(patch_size=16, num_patches=256, **WIDTH),
        Siglip2VisionModel,
        Siglip2PackedVisionModel,
        Siglip2EncoderLayer,
    ),
    "dinov3": (
        lambda: DINOv3ViTConfig(patch_size=16, num_register_tokens=4, **WIDTH),
        DINOv3ViTModel,
        Dinov3PackedVisionModel,
        DINOv3ViTLayer,
    ),
}


def _models(family: str) -> tuple[nn.Module, nn.Module, type[nn.Module], int]:
    """(standard model, packed model with its weights, upstream layer class, patch size)."""
    make_config, standard_class, packed_class, layer_class = FAMILIES[family]
    config = make_config()
    torch.manual_seed(0)
    standard, packed = standard_class(config).eval(), packed_class(config).eval()
    packed.load_state_dict(standard.state_dict())
    return standard, packed, layer_class, config.patch_size


def _per_image(family: str, standard: nn.Module, images: list[torch.Tensor], patch: int) -> Callable:
    """One standard call per image (SigLIP2: its naflex input for one image, an all-ones mask)."""
    if family != "siglip2":
        return lambda _: [standard(image[None]) for image in images]
    inputs = []
    for image in images:
        rows, grid = pack_images([image], patch)
        inputs.append((rows[None], torch.ones(1, rows.shape[0], dtype=torch.long), grid[:, 1:]))
    return lambda _: [
        standard(pixel_values=p, pixel_attention_mask=m, spatial_shapes=s) for p, m, s in inputs
    ]


def _pad(rows: torch.Tensor, lengths: list[int], longest: int, fill: float = 0.0) -> torch.Tensor:
    """Packed rows ``[N, ...]`` -> ``[n, longest, ...]``, padding rows set to ``fill``."""
    batch = rows.new_full((len(lengths), longest, *rows.shape[1:]), fill)
    for i, segment in enumerate(rows.split(lengths)):
        batch[i, : segment.shape[0]] = segment
    return batch


def pad_and_mask(model: nn.Module, layer_class: type[nn.Module], inputs: Packed) -> tuple[torch.Tensor, ...]:
    """Our packed embeddings padded to the longest image, upstream's layers with a key-padding mask."""
    x, segments, extra = model.embed_packed(*inputs)
    lengths, longest = segments.lengths, segments.max_seqlen
    batch = _pad(x, lengths, longest)
    valid = _pad(torch.ones(x.shape[0], dtype=torch.bool), lengths, longest, False)
    mask = torch.zeros(valid.shape, dtype=x.dtype).masked_fill(~valid, torch.finfo(x.dtype).min)[
        :, None, None
    ]
    kwargs = {}
    if extra:  # DINOv3 RoPE: padded rows get angle 0; every row is rotated (prefix rows have cos 1, sin 0)
        cos, sin = (
            _pad(t[:, 0], lengths, longest, fill)[:, None] for t, fill in zip(extra, (1.0, 0.0), strict=True)
        )
        kwargs["position_embeddings"] = (cos, sin)
    for layer in model.get_submodule(model.layers_path):
        batch = layer_class.forward(layer, batch, attention_mask=mask, **kwargs)
    return model.finish_packed(batch[valid], segments)


def _compiled(model: nn.Module, inputs: Packed) -> Callable | str:
    """``torch.compile(model)``, or why it failed / differs from eager (beyond 1e-5)."""
    try:
        compiled = torch.compile(model)
        with torch.inference_mode():
            got, want = compiled(*inputs), model(*inputs)
    except Exception as error:  # noqa: BLE001 - reported in the table, not raised
        return f"failed: {type(error).__name__}"
    error = max(
        float((a - b).abs().max()) for a, b in zip(got.to_tuple()[:2], want.to_tuple()[:2], strict=True)
    )
    return (lambda args: compiled(*args)) if error <= 1e-5 else f"differs from eager by {error:.1e}"


def family_rows(family: str, repeats: int, quick: bool) -> list[Row]:
    """The two ratio groups of one family (see the module docstring)."""
    standard, packed, layer_class, patch = _models(family)
    generator = torch.Generator().manual_seed(0)
    images = [torch.randn(3, h * patch, w * patch, generator=generator) for h, w in GRIDS]
    inputs = pack_images(images, patch)
    lengths = segment_lengths(inputs[1], packed.num_prefix_tokens)
    case = f"{len(GRIDS)} images, {sum(lengths)} rows ({len(lengths) * max(lengths)} padded)"
    variants = {
        PAD: lambda args: pad_and_mask(packed, layer_class, args),
        PER_IMAGE: _per_image(family, standard, images, patch),
        "ours packed eager": lambda args: packed(*args),
        "ours packed torch.compile": "skipped (--quick)" if quick else _compiled(packed, inputs),
    }
    timed = rows(family, case, variants, inputs, repeats, reference=PAD)
    per_image_ms = statistics.median(next(row.times for row in timed if row.backend == PER_IMAGE))
    versus_per_image = [
        Row(row.family, row.case, row.backend, row.times, per_image_ms, PER_IMAGE)
        for row in timed
        if row.backend.startswith("ours")
    ]
    return timed + versus_per_image


def table(repeats: int, quick: bool, threads: int | None = None) -> list[Row]:
    """Every family, float32, at ``threads`` CPU threads (default: the current one; ``run_all.py`` sets 1)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        return [row for family in FAMILIES for row in family_rows(family, repeats, quick)]
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="skip torch.compile")
    args = parser.parse_args()
    result = table(args.repeats, args.quick, args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU, float32")
    print(HEADER)
    for row in result:
        print(row.markdown())


if __name__ == "__main__":
    main()
