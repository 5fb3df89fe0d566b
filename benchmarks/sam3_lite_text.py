"""SAM3-LiteText text encoding: ours vs upstream transformers (same weights) and vs SAM3's own CLIP text encoder.

Run: ``python benchmarks/sam3_lite_text.py [--variant s0] [--repeats 5]``. CPU, float32. Reports the median latency
of one batch of 8 prompts (context 16) and the throughput for a 1,000-prompt vocabulary (tokenise + encode in
batches of 64) as prompts/s. Ratios: upstream / ours and SAM3-CLIP / ours (above 1: we are faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTextModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "models" / "sam3_lite_text"))

from test_upstream_text_anchor import _ours_from_upstream  # noqa: E402
from transformers.models.sam3_lite_text.configuration_sam3_lite_text import (  # noqa: E402
    Sam3LiteTextTextConfig as UpstreamConfig,
)
from transformers.models.sam3_lite_text.modeling_sam3_lite_text import (  # noqa: E402
    Sam3LiteTextTextModel as UpstreamText,
)

from visionports.models.sam3_lite_text import (  # noqa: E402
    Sam3LiteTextTextConfig,
    Sam3LiteTextTextModel,
    Sam3LiteTextTokenizer,
)

WORDS = ["cat", "dog", "person", "red", "hat", "car", "tree", "bench", "small", "wooden", "bright", "sweater"]


def vocabulary(n: int) -> list[str]:
    return [
        f"a {WORDS[i % 12]} {WORDS[(i // 12) % 12]} {WORDS[(i // 144) % 12]} number {i}" for i in range(n)
    ]


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="s0", choices=["s0", "s1", "l"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = Sam3LiteTextTextConfig.from_preset(args.variant)
    upstream = UpstreamText(UpstreamConfig(hidden_size=config.hidden_size, num_attention_heads=config.num_attention_heads,
                                           num_hidden_layers=len(config.block_types), intermediate_size=config.intermediate_size,
                                           projection_dim=config.hidden_size, use_repmixer_blocks=config.layout == "mct",
                                           max_position_embeddings=16)).eval()  # fmt: skip
    ours = Sam3LiteTextTextModel(config).eval()
    ours.load_state_dict(_ours_from_upstream(upstream, 16), strict=False)
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                        intermediate_size=4096, max_position_embeddings=32)).eval()  # fmt: skip
    tokenizer = Sam3LiteTextTokenizer(16)
    ids = tokenizer(vocabulary(8))["input_ids"]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, variant {args.variant}"
    )
    with torch.inference_mode():
        t_ours = median_ms(lambda: ours(ids), args.repeats)
        t_up = median_ms(lambda: upstream(input_ids=ids), args.repeats)
        t_clip = median_ms(lambda: clip(input_ids=ids), args.repeats)
        words = vocabulary(1000)
        start = time.perf_counter()
        for i in range(0, len(words), 64):
            ours(tokenizer(words[i : i + 64])["input_ids"])
        rate = len(words) / (time.perf_counter() - start)
    print(f"batch of 8 prompts: ours {t_ours:.1f} ms, upstream {t_up:.1f} ms (ratio {t_up / t_ours:.2f}), "
          f"SAM3 CLIP text encoder {t_clip:.1f} ms (ratio {t_clip / t_ours:.2f})")  # fmt: skip
    params = sum(p.numel() for p in ours.parameters()) / 1e6, sum(p.numel() for p in clip.parameters()) / 1e6
    print(f"parameters: ours {params[0]:.1f} M, SAM3 CLIP-size text encoder {params[1]:.1f} M")
    print(f"1,000-prompt vocabulary (tokenise + encode, batches of 64): {rate:.0f} prompts/s")


if __name__ == "__main__":
    main()
