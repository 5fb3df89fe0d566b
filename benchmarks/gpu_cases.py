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

        def want(model: torch.nn.Module, pixels: torch.Tensor = pixels) -> dict[str, torch.Tensor]:
            out = model(pixel_values=pixels)
            return {"logits": out.logits, "pred_boxes": out.pred_boxes}

        found.append(Case(
            "DEIMv2", f"{preset}@{size} b1", upstream, ours, {"pixel_values": pixels}, export,
            graph_feed={"pixel_values": pixels}, graph_want=want, tolerances=dict(TOLERANCES),
            deploy=lambda model: model.deploy(channels_last=True),
        ))  # fmt: skip
    return found


def videomt_cases(quick: bool) -> list[Case]:
    from videomt_streaming import build

    from visionports.backends.videomt import TOLERANCES
    from visionports.models.videomt.export_videomt import export_step_onnx, initial_queries

    size = 224
    ours, upstream = build(size)
    video = torch.randn(
        1, 1, 3, size, size, generator=torch.Generator().manual_seed(1)
    )  # one frame: a stream's step
    first, queries = video[:, 0], initial_queries(ours)

    def want(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        out = model(first)
        return {"class_queries_logits": out.class_queries_logits[:, 0],
                "masks_queries_logits": out.masks_queries_logits[:, 0], "next_queries": out.state.queries}  # fmt: skip

    return [Case(
        "VidEoMT", f"ViT-S/16 {size}x{size}, one frame", upstream, ours, {"pixel_values": video},
        lambda model, path: export_step_onnx(model, path, (size, size)),
        graph_feed={"pixel_values": first, "queries": queries}, graph_want=want, tolerances=dict(TOLERANCES),
        deploy=lambda model: model.deploy(),
        upstream_inputs=lambda inputs: {"pixel_values_videos": inputs["pixel_values"]},
    )]  # fmt: skip


def sam3_cases(quick: bool) -> list[Case]:
    from sam3_lite_text import build, vocabulary

    from visionports.backends.sam3_lite_text import TOLERANCES
    from visionports.models.sam3_lite_text import Sam3LiteTextTokenizer
    from visionports.models.sam3_lite_text.export_sam3_lite_text import export_text

    upstream, ours = build("s0")
    ids = Sam3LiteTextTokenizer(16)(vocabulary(8))["input_ids"]
    return [Case(
        "SAM3-LiteText", "S0 text encoder, 8 prompts x 16 tokens", upstream, ours, {"input_ids": ids},
        export_text, graph_feed={"input_ids": ids},
        graph_want=lambda model: {"text_features": model(input_ids=ids).last_hidden_state},
        tolerances={"text_features": TOLERANCES["text_features"]}, deploy=lambda model: model.deploy(),
    )]  # fmt: skip


def all_cases(quick: bool) -> list[Case]:
    return [*deimv2_cases(quick), *videomt_cases(quick), *sam3_cases(quick)]


def packed_variants(device: torch.device, quick: bool) -> list[tuple[str, str, dict]]:
    """(family, case, {backend: call | why not}) per packed encoder: our pack with flash-attn varlen (its default
    on CUDA in half precision), the same pack with per-image SDPA, upstream layers on a padded batch with a key
    mask, and one upstream call per image; bfloat16 on CUDA, float32 elsewhere (``quick``: AIMv2 only)."""
    import copy

    import packed_encoders as bench

    from visionports.models.packed.packing import pack_images

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    found = []
    for family in ["aimv2"] if quick else list(bench.FAMILIES):
        standard, packed, layer_class, patch = bench._models(family)
        standard, packed = standard.to(device, dtype), packed.to(device, dtype)
        generator = torch.Generator().manual_seed(0)
        images = [
            torch.randn(3, h * patch, w * patch, generator=generator).to(device, dtype)
            for h, w in bench.GRIDS
        ]
        inputs = pack_images(images, patch)
        sdpa = copy.deepcopy(packed)
        sdpa.set_attn_implementation("sdpa")
        flash = _flash_reason(device)
        variants = {
            "ours packed, flash varlen": (lambda p=packed, i=inputs: p(*i))
            if flash is None
            else f"skipped: {flash}",
            "ours packed, per-image SDPA": lambda p=sdpa, i=inputs: p(*i),
            bench.PAD: lambda p=packed, c=layer_class, i=inputs: bench.pad_and_mask(p, c, i),
            bench.PER_IMAGE: (lambda call: lambda: call(None))(
                bench._per_image(family, standard, images, patch)
            ),
        }
        found.append((family, f"{len(images)} images", variants))
    return found


def _flash_reason(device: torch.device) -> str | None:
    if device.type != "cuda":
        return "flash-attn varlen needs CUDA"
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return "flash-attn is not installed"
    return None
