"""SAM3-LiteText text encoding: ours vs upstream transformers (same weights) and vs SAM3's own CLIP text encoder.

Run: ``python benchmarks/sam3_lite_text.py [--variant s0] [--repeats 5]``. CPU, float32. Reports the median latency
of one batch of 8 prompts (context 16) and the throughput for a 1,000-prompt vocabulary (tokenise + encode in
batches of 64) as prompts/s. Ratios: upstream / ours and SAM3-CLIP / ours (above 1: we are faster).

``table(repeats, quick)`` (``run_all.py``, or ``--table``): text-encoding latency of the same batch at the
caller's thread count (1 in ``run_all.py``): upstream eager against ours eager, ``deploy()``, ``torch.compile``
and the text graph in onnxruntime / OpenVINO. Image encoding is not in the table: at the released size
(ViT-L, 1008 x 1008) one image takes seconds per backend, and its export minutes.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTextModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "models" / "sam3_lite_text"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from test_upstream_text_anchor import _ours_from_upstream  # noqa: E402
from timing import Row, attempt, rows  # noqa: E402
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


def build(variant: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Upstream's text encoder at random weights (context 16) and ours holding the same weights."""
    config = Sam3LiteTextTextConfig.from_preset(variant)
    upstream = UpstreamText(UpstreamConfig(hidden_size=config.hidden_size, num_attention_heads=config.num_attention_heads,
                                           num_hidden_layers=len(config.block_types), intermediate_size=config.intermediate_size,
                                           projection_dim=config.hidden_size, use_repmixer_blocks=config.layout == "mct",
                                           max_position_embeddings=16)).eval()  # fmt: skip
    ours = Sam3LiteTextTextModel(config).eval()
    ours.load_state_dict(_ours_from_upstream(upstream, 16), strict=False)
    return upstream, ours


def _graph_variants(ours: torch.nn.Module, ids: torch.Tensor, folder: Path) -> dict[str, Callable | str]:
    """The text graph in each runtime, named with its max |features - eager| on the batch."""
    from visionports.backends import GRAPH_BACKENDS
    from visionports.backends.runtimes import open_graph
    from visionports.models.sam3_lite_text.export_sam3_lite_text import export_text

    path = export_text(ours, folder / "text.onnx")
    with torch.inference_mode():
        want = ours(ids).last_hidden_state
    variants: dict[str, Callable | str] = {}
    for name in GRAPH_BACKENDS:

        def open_session(name: str = name) -> Callable:
            session = open_graph(path, name, "cpu")
            return lambda batch: session(input_ids=batch)["text_features"]

        call = attempt(open_session, check=ids)
        drift = f" (max Δ {float((call(ids) - want).abs().max()):.1e})" if not isinstance(call, str) else ""
        variants[f"{name}{drift}"] = call
    return variants


def table(repeats: int, quick: bool, variant: str = "s0") -> list[Row]:
    """Text-encoding latency rows: one batch of 8 prompts at context 16 (``quick`` changes nothing: one case)."""
    upstream, ours = build(variant)
    ids = Sam3LiteTextTokenizer(16)(vocabulary(8))["input_ids"]
    variants: dict[str, Callable | str] = {
        "upstream eager": lambda batch: upstream(input_ids=batch),
        "eager": lambda batch: ours(batch),
        "deploy()": (lambda model: lambda batch: model(batch))(copy.deepcopy(ours).deploy()),
        "torch.compile": attempt(lambda: torch.compile(copy.deepcopy(ours), dynamic=False), check=ids),
    }
    with tempfile.TemporaryDirectory() as folder:
        variants.update(_graph_variants(ours, ids, Path(folder)))
        return rows(
            "SAM3-LiteText", f"text encoder {variant.upper()} 8 prompts x 16 tokens", variants, ids, repeats
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="s0", choices=["s0", "s1", "l"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--table", action="store_true", help="the backend latency table (1 thread) instead")
    args = parser.parse_args()
    if args.table:
        from timing import HEADER

        torch.set_num_threads(1)
        print(HEADER)
        for row in table(args.repeats, False, args.variant):
            print(row.markdown(), flush=True)
        return
    upstream, ours = build(args.variant)
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
