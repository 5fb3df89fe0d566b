"""Packed variable-resolution encoding vs padding and vs one call per image (AIMv2-native-like encoder, CPU).

Run: ``python benchmarks/packed_encoders.py [--repeats 5] [--threads N]``. Six images of mixed sizes (the spec's
mix). Paths, same weights: packed per-segment SDPA, packed eager, pad-to-longest with a key-padding mask (one
SDPA call per layer over the padded batch), and one standard ``Aimv2VisionModel`` call per image. Prints images/s,
tokens/s and time ratios against the padded path (the compass goal: packed <= 0.6x padded).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import Aimv2VisionConfig, Aimv2VisionModel

from visionports.models.packed.aimv2_packed import Aimv2PackedVisionModel
from visionports.models.packed.packing import pack_images, segment_lengths

SIZES = [(224, 224), (224, 336), (336, 336), (448, 224), (112, 112), (280, 420)]


def padded_forward(model: Aimv2PackedVisionModel, hidden: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The same encoder on a padded batch with a key-padding mask (exact for the valid rows)."""
    config = model.config
    lengths = segment_lengths(grid)
    longest = max(lengths)
    x = model.embeddings.rms_norm(model._patch_rows(hidden)) + model._positions(grid, hidden)
    batch = torch.zeros(len(lengths), longest, config.hidden_size)
    valid = torch.zeros(len(lengths), longest, dtype=torch.bool)
    for i, segment in enumerate(x.split(lengths)):
        batch[i, : segment.shape[0]] = segment
        valid[i, : segment.shape[0]] = True
    mask = valid[:, None, None, :]
    heads, head_dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    for layer in model.encoder.layers:
        att = layer.attention
        normed = layer.rms_norm1(batch)
        q, k, v = (
            p(normed).view(len(lengths), longest, heads, head_dim).transpose(1, 2)
            for p in (att.q_proj, att.k_proj, att.v_proj)
        )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=att.scale)
        batch = batch + att.out_proj(out.transpose(1, 2).reshape(len(lengths), longest, -1))
        batch = batch + layer.ffn(layer.rms_norm2(batch))
    return model.rms_norm(batch)


def median_s(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = Aimv2VisionConfig(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
                               patch_size=14, image_size=224, is_native=True, use_head=False)  # fmt: skip
    standard = Aimv2VisionModel(config).eval()
    packed = Aimv2PackedVisionModel(config).eval()
    packed.load_state_dict(standard.state_dict())
    images = [torch.randn(3, h, w) for h, w in SIZES]
    hidden, grid = pack_images(images, 14)
    tokens = hidden.shape[0]
    padded_tokens = len(SIZES) * max(segment_lengths(grid))
    with torch.inference_mode():
        times = {
            "packed (sdpa, per segment)": median_s(lambda: packed(hidden, grid), args.repeats),
            "padded + key mask (sdpa)": median_s(lambda: padded_forward(packed, hidden, grid), args.repeats),
            "one call per image (upstream)": median_s(
                lambda: [standard(img[None]) for img in images], args.repeats
            ),
        }
        packed.config._attn_implementation = "eager"
        times["packed (eager, per segment)"] = median_s(lambda: packed(hidden, grid), args.repeats)
    base = times["padded + key mask (sdpa)"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32; {len(SIZES)} images, "
          f"{tokens} patches packed, {padded_tokens} when padded")  # fmt: skip
    print(f"{'path':<32}{'seconds':>9}{'images/s':>10}{'tokens/s':>10}{'vs padded':>11}")
    for name, seconds in times.items():
        print(
            f"{name:<32}{seconds:>9.3f}{len(SIZES) / seconds:>10.1f}{tokens / seconds:>10.0f}{seconds / base:>11.2f}"
        )


if __name__ == "__main__":
    main()
