"""One-shot GPU check of every family: float32 parity, bfloat16 / float16 health, flash-attn varlen.

What it checks, per family (DEIMv2, SAM3-LiteText, VidEoMT on their golden cases in tests/fixtures; the packed
AIMv2 / SigLIP2 / DINOv3 encoders as small seeded random models on a pack of images of different sizes):

1. The model runs on the CPU in float32 (the reference), then on ``--device`` in float32, bfloat16 and float16
   (placed with ``visionports.core.devices``, as the tasks do). For every final output: max abs difference and
   cosine similarity (flattened, float64) against the CPU float32 run, and whether every value is finite.
   * float32 passes when the outputs are within the golden case's own tolerance of the golden outputs (read by
     the family's parity adapter, as ``visionports parity`` does; for the packed encoders the golden outputs
     are the standard transformers encoder run image by image, within 1e-5 as in the packed tests).
   * bfloat16 / float16 pass when every value is finite and the cosine is at least ``HALF_COSINE`` (DEIMv2:
     ``DEIMV2_COSINE`` on the queries both runs selected, plus its test's median box bound).
2. Packed encoders: flash-attn varlen over one pack vs per-image SDPA, both bfloat16 on CUDA; cosine per image
   >= ``FLASH_COSINE``. Skipped (not failed) without CUDA or without flash-attn.

TF32 is switched off, so that float32 on the GPU is float32. Exit status 1 when any check fails.

Run it on a CUDA machine, from the repository root::

    python -m venv .venv && . .venv/bin/activate
    pip install torch --index-url https://download.pytorch.org/whl/cu124   # any CUDA build of torch
    pip install -e ".[dev]"
    pip install flash-attn --no-build-isolation                           # optional: the flash check
    python benchmarks/gpu_check.py --output gpu_check.json

It takes under a minute on a GPU (the CPU float32 references dominate) and about 50 s with ``--device cpu``
on 2 cores (then CPU half precision is compared with CPU float32, and the flash check is skipped).
``--families deimv2,packed`` picks families; ``$VISIONPORTS_FIXTURES`` adds fixture roots as for the tests.
Paste the printed table (or the JSON) into docs, with the GPU and versions printed on its first line.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import load_file
from torch import nn
from transformers import Aimv2VisionConfig, DINOv3ViTConfig, Siglip2VisionConfig

from visionports.core.devices import DeviceError, place, resolve_device, resolve_dtype, to_model
from visionports.core.parity import TensorCheck, compare_tensors
from visionports.core.registry import get_family
from visionports.models.packed.family import encoders_for
from visionports.models.packed.packing import _flash_available, pack_images, unpack
from visionports.models.packed.parity_packed import _reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from golden import convert_case, golden_cases  # noqa: E402

Tensors = dict[str, torch.Tensor]

DTYPES = ("float32", "bfloat16", "float16")
# Half precision: finite and cosine >= bound vs CPU float32. A cosine c is a relative L2 error of about
# sqrt(2 (1 - c)): 0.995 ~ 10%, 0.999 ~ 4.5%. Measured on CPU (SAM3-LiteText, VidEoMT, packed): bf16 >= 0.9994
# (~3.5%), fp16 >= 0.99998 (~0.6%); tests/models/*/test_half_precision_*.py leave about 2x room over their
# measured errors, these bounds about 3x (bf16) and 7x (fp16).
HALF_COSINE = {"bfloat16": 0.995, "float16": 0.999}
# DEIMv2's tiny golden checkpoints are ill-conditioned (test_half_precision_deimv2.py: top-k queries reorder,
# single boxes move by up to 1.0), so its half-precision rows compare the queries both runs selected, skip the
# post-processed detections, and take that test's box bound (median |delta|) with a looser cosine (measured
# on CPU: bf16 0.92-0.99, fp16 0.986-0.9998).
DEIMV2_COSINE = {"bfloat16": 0.8, "float16": 0.95}
DEIMV2_BOX_MEDIAN = {"bfloat16": 2.5e-2, "float16": 5e-3}
FLASH_COSINE = 0.9999  # flash varlen vs per-image SDPA, same dtype: only the summation order differs
PACKED_ATOL = 1e-5  # packed vs standard encoder in float32 (TOL of tests/models/packed/)
GOLDEN = {  # family: golden cases (tests/fixtures/<family>/<case>, as the half-precision tests pick them)
    "deimv2": ("atto_s0_b1_320", "dinov3_s_tiny_s0_b1_256"),
    "sam3_lite_text": ("tiny_detector_s0_mct_seed5",),
    "videomt": ("dinov2_tiny_s0_b1_t3",),
}
PATCH = 4
SMALL = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, patch_size=PATCH
)
# tiny encoders, as in tests/models/packed/test_packed_conventions.py
PACKED: dict[str, Callable[[], Any]] = {
    "aimv2": lambda: Aimv2VisionConfig(image_size=16, is_native=True, **SMALL),
    "siglip2": lambda: Siglip2VisionConfig(num_patches=64, **SMALL),
    "dinov3": lambda: DINOv3ViTConfig(num_register_tokens=2, layerscale_value=0.5, **SMALL),
}
SIZES = [(8, 12), (4, 4), (12, 8), (4, 16), (16, 16)]  # pixels (h, w) of the packed images
FLASH_SIZES = [(64, 48), (16, 16), (32, 96), (8, 8), (80, 80)]
FAMILIES = (*GOLDEN, *PACKED)


@dataclass
class Target:
    """One model to check: its CPU float32 model, inputs, how to run it and how to judge float32."""

    family: str
    case: str
    model: nn.Module
    inputs: Tensors
    run: Callable[[nn.Module, Tensors], Tensors]
    names: list[str]  # outputs to report
    golden: Callable[[Tensors], dict[str, TensorCheck]]
    align: Callable[[Tensors, Tensors], tuple[Tensors, Tensors]] = lambda ours, reference: (ours, reference)


@dataclass
class Row:
    family: str
    case: str
    dtype: str
    output: str
    max_abs: float | None
    cosine: float | None
    finite: bool
    bound: str
    passed: bool
    median_abs: float | None = None
    golden_max_abs: float | None = None
    note: str = ""


@dataclass
class FlashRow:
    family: str
    image: str
    cosine: float | None
    passed: bool
    note: str = ""


# ----------------------------------------------------------------------------------------- targets


def golden_target(family: str, case_name: str) -> Target:
    """A golden case converted as the parity tool converts it, run and judged by the family's adapter."""
    case_dir = next((p for p in golden_cases(family) if p.name == case_name), None)
    if case_dir is None:
        raise FileNotFoundError(
            f"no golden case {family}/{case_name} in tests/fixtures or $VISIONPORTS_FIXTURES"
        )
    case = json.loads((case_dir / "case.json").read_text())
    adapter = get_family(family).parity
    inputs = load_file(str(case_dir / "inputs.safetensors"))
    reference = {**load_file(str(case_dir / "outputs.safetensors")), **adapter.case_tensors(case)}
    finals = adapter.final_outputs(case)

    def run(model: nn.Module, given: Tensors) -> Tensors:
        with torch.no_grad():
            return _to_cpu(adapter.run(model, to_model(given, model), case))

    def align(ours: Tensors, against: Tensors) -> tuple[Tensors, Tensors]:
        return match_queries(adapter.align(ours, against, inputs, case), against)

    def golden(ours: Tensors) -> dict[str, TensorCheck]:
        atols, default_atol, rtol = adapter.tolerance(case, "float32")
        picked = {n: reference[n] for n in finals if n in reference and n in ours}
        aligned = adapter.align(ours, reference, inputs, case)
        checks = compare_tensors(aligned, picked, sorted(picked), atols, default_atol,
                                 set(picked), rtol)  # fmt: skip
        return {c.name: c for c in checks}

    names = sorted(n for n in finals if n in reference and reference[n].is_floating_point())
    model = convert_case(family, case_dir)
    return Target(family, case_name, model, inputs, run, names, golden, align)


def packed_target(name: str, folder: Path) -> Target:
    """A seeded tiny packed encoder (saved to ``folder``) on a pack of ``SIZES``; golden = the standard
    transformers encoder image by image."""
    config = PACKED[name]()
    packed_cls, standard_cls = encoders_for(config)
    torch.manual_seed(0)
    standard = standard_cls(config).eval()
    standard.save_pretrained(folder)
    model = packed_cls.from_pretrained(folder).eval()
    images = _images(SIZES, config.num_channels)
    with torch.no_grad():
        singles = [_reference(standard, image, config, PATCH) for image in images]
    reference = {"last_hidden_state": torch.cat([s.last_hidden_state[0] for s in singles])}
    if singles[0].pooler_output is not None:
        reference["pooler_output"] = torch.cat([s.pooler_output for s in singles])

    def golden(ours: Tensors) -> dict[str, TensorCheck]:
        checks = compare_tensors(ours, reference, sorted(reference), {}, PACKED_ATOL, set(reference))
        return {c.name: c for c in checks}

    return Target(name, "random s0", model, packed_inputs(images), _run_packed, sorted(reference), golden)


def match_queries(ours: Tensors, reference: Tensors) -> tuple[Tensors, Tensors]:
    """DEIMv2: ``pred_logits`` / ``pred_boxes`` of both runs restricted to the encoder tokens both selected, in
    the reference's order (as test_half_precision_deimv2 matches them); other outputs unchanged."""
    key = "decoder.enc_topk_index"
    if key not in ours or key not in reference or ours[key].shape[0] != 1:
        return ours, reference
    position = {t: i for i, t in enumerate(ours[key][0].tolist())}
    pairs = [(position[t], j) for j, t in enumerate(reference[key][0].tolist()) if t in position]
    mine, theirs = (torch.tensor([p[k] for p in pairs], dtype=torch.long) for k in (0, 1))
    ours, reference = dict(ours), dict(reference)
    for name in ("pred_logits", "pred_boxes"):
        ours[name], reference[name] = ours[name][:, mine], reference[name][:, theirs]
    return ours, reference


def packed_inputs(images: Sequence[torch.Tensor]) -> Tensors:
    hidden, grid = pack_images(images, PATCH)
    return {"hidden_states": hidden, "grid_thw": grid}


def _run_packed(model: nn.Module, inputs: Tensors) -> Tensors:
    with torch.no_grad():
        out = model(**to_model(inputs, model))
    found = {"last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output}
    return _to_cpu({k: v for k, v in found.items() if v is not None})


def _images(sizes: Sequence[tuple[int, int]], channels: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(channels, h, w, generator=generator) for h, w in sizes]


def _to_cpu(outputs: dict[str, Any]) -> Tensors:
    return {k: v.detach().cpu() for k, v in outputs.items() if isinstance(v, torch.Tensor)}


# ----------------------------------------------------------------------------------------- measuring


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of the flattened tensors in float64 (1.0 for equal tensors, NaN if not finite)."""
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return math.nan
    if torch.equal(a, b):
        return 1.0
    norms = a.norm() * b.norm()
    return float(a @ b / norms) if norms > 0 else 0.0


def check_dtype(target: Target, reference: Tensors, device: torch.device, dtype: str) -> list[Row]:
    """``target`` on ``device`` in ``dtype``: one row per output, judged against ``reference`` / golden."""
    try:
        model = place(copy.deepcopy(target.model), device, resolve_dtype(dtype))
        raw = target.run(model, target.inputs)
        outputs, reference = target.align(dict(raw), reference)
    except Exception as err:  # a failed run is a failed check, the others still run
        return [
            Row(target.family, target.case, dtype, "-", None, None, False, "runs", False, note=_error(err))
        ]
    golden = target.golden(raw) if dtype == "float32" else {}
    names = target.names if dtype == "float32" else [n for n in target.names if not n.startswith("post.")]
    return [_row(target, dtype, name, outputs.get(name), reference[name], golden.get(name))
            for name in names]  # fmt: skip


def _row(target: Target, dtype: str, name: str, got: torch.Tensor | None, ref: torch.Tensor,
         golden: TensorCheck | None) -> Row:  # fmt: skip
    if got is None or got.shape != ref.shape:
        note = "not produced" if got is None else f"shape {list(got.shape)}"
        return Row(target.family, target.case, dtype, name, None, None, False, "-", False, note=note)
    finite = bool(torch.isfinite(got).all())
    diff = (got.double() - ref.double()).abs().flatten()
    max_abs, median = (float(diff.max()), float(diff.median())) if diff.numel() else (0.0, 0.0)
    cos = cosine(got, ref)
    measured = dict(max_abs=max_abs, cosine=cos, finite=finite, median_abs=median)
    if dtype == "float32":
        passed = finite and golden is not None and golden.passed
        bound = f"golden atol {golden.atol:.0e}" if golden is not None else "golden: missing"
        golden_abs = golden.max_abs if golden is not None else None
        return Row(target.family, target.case, dtype, name, **measured, bound=bound, passed=passed,
                   golden_max_abs=golden_abs)  # fmt: skip
    least, most = half_bounds(target.family, name, dtype)
    passed = finite and not math.isnan(cos) and cos >= least and (most is None or median <= most)
    bound = f"cos >= {least}" + (f", med <= {most:.1e}" if most is not None else "")
    return Row(target.family, target.case, dtype, name, **measured, bound=bound, passed=passed)


def half_bounds(family: str, name: str, dtype: str) -> tuple[float, float | None]:
    """(least cosine, largest median |delta| or None) of a half-precision output."""
    if family != "deimv2":
        return HALF_COSINE[dtype], None
    return DEIMV2_COSINE[dtype], (DEIMV2_BOX_MEDIAN[dtype] if name == "pred_boxes" else None)


def check_target(build: Callable[[], Target], family: str, case: str, device: torch.device) -> list[Row]:
    """Every dtype of the target ``build`` makes; a target that cannot be built or run on the CPU is a failed row."""
    try:
        target = build()
        reference = target.run(target.model, target.inputs)
    except Exception as err:
        return [
            Row(family, case, "float32", "-", None, None, False, "cpu reference", False, note=_error(err))
        ]
    target.names = [n for n in target.names if n in reference and reference[n].is_floating_point()]
    return [row for dtype in DTYPES for row in check_dtype(target, reference, device, dtype)]


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0][:200]


# ----------------------------------------------------------------------------------------- flash


def flash_skip_reason(device: torch.device) -> str | None:
    """Why the flash check cannot run here (None when it can)."""
    if importlib.util.find_spec("flash_attn") is None:
        return "skipped: flash-attn not installed"
    reason = _flash_available(torch.zeros(1, device=device, dtype=torch.bfloat16))
    return f"skipped: {reason}" if reason else None


def flash_check(name: str, folder: Path, device: torch.device) -> list[FlashRow]:
    """One bfloat16 pack through flash-attn varlen vs each image alone through SDPA: cosine per image."""
    try:
        return _flash_rows(name, folder, device)
    except Exception as err:
        return [FlashRow(name, "-", None, False, note=_error(err))]


def _flash_rows(name: str, folder: Path, device: torch.device) -> list[FlashRow]:
    packed_cls, _ = encoders_for(PACKED[name]())
    load = packed_cls.from_pretrained
    flash = place(load(folder, attn_implementation="flash_attention_2").eval(), device, torch.bfloat16)
    sdpa = place(load(folder, attn_implementation="sdpa").eval(), device, torch.bfloat16)
    images = _images(FLASH_SIZES, flash.config.num_channels)
    pack = to_model(packed_inputs(images), flash)
    backend = flash.attention_backend(pack["hidden_states"])
    if backend != "flash":
        return [FlashRow(name, "-", None, False, note=f"backend {backend!r} instead of flash")]
    rows = []
    with torch.no_grad():
        packed = flash(**pack).last_hidden_state
        parts = unpack(packed, pack["grid_thw"], flash.num_prefix_tokens)
        for (h, w), image, got in zip(FLASH_SIZES, images, parts, strict=True):
            alone = sdpa(**to_model(packed_inputs([image]), sdpa))
            cos = cosine(got, alone.last_hidden_state)
            passed = bool(torch.isfinite(got).all()) and cos >= FLASH_COSINE
            rows.append(FlashRow(name, f"{h}x{w}", cos, passed))
    return rows


# ----------------------------------------------------------------------------------------- report


def render(rows: Sequence[Row], flash: Sequence[FlashRow], skipped: str | None) -> str:
    lines = [f"{'family':<15} {'case':<26} {'dtype':<9} {'output':<22} {'max abs':>9} {'cosine':>10} "
             f"{'median':>9} {'finite':<6} {'golden':>9}  {'bound':<30} result"]  # fmt: skip
    for r in rows:
        lines.append(f"{r.family:<15} {r.case:<26} {r.dtype:<9} {r.output:<22} {_num(r.max_abs):>9} "
                     f"{_cos(r.cosine):>10} {_num(r.median_abs):>9} {str(r.finite):<6} {_num(r.golden_max_abs):>9}  {r.bound:<30} "
                     f"{'pass' if r.passed else 'FAIL'}{'  ' + r.note if r.note else ''}")  # fmt: skip
    lines.append(f"\nflash-attn varlen vs per-image SDPA (bfloat16, cosine >= {FLASH_COSINE}):")
    if skipped:
        lines.append(f"  {skipped}")
    for f in flash:
        lines.append(f"  {f.family:<8} {f.image:<8} {_cos(f.cosine):>10}  {'pass' if f.passed else 'FAIL'}"
                     f"{'  ' + f.note if f.note else ''}")  # fmt: skip
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def _cos(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def environment(device: torch.device) -> dict[str, str]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    flash = "absent" if importlib.util.find_spec("flash_attn") is None else "present"
    return {"device": str(device), "device_name": name, "torch": torch.__version__,
            "cuda": str(torch.version.cuda), "transformers": transformers.__version__, "flash_attn": flash}  # fmt: skip


def parse_families(text: str) -> list[str]:
    """Comma-separated family names; ``packed`` stands for aimv2, siglip2 and dinov3; ``all`` for all."""
    names: list[str] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        expanded = list(FAMILIES) if item == "all" else list(PACKED) if item == "packed" else [item]
        if any(n not in FAMILIES for n in expanded):
            raise SystemExit(f"--families: unknown {item!r}; choose from all, packed, {', '.join(FAMILIES)}")
        names += [n for n in expanded if n not in names]
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument(
        "--families", default="all", help="comma-separated: all, packed, " + ", ".join(FAMILIES)
    )
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except DeviceError as err:
        parser.error(str(err))
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    transformers.utils.logging.disable_progress_bar()
    families = parse_families(args.families)
    rows: list[Row] = []
    flash: list[FlashRow] = []
    skipped = flash_skip_reason(device)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for family in families:
            if family in PACKED:
                folder = Path(tmp) / family
                rows += check_target(
                    lambda f=family, d=folder: packed_target(f, d), family, "random s0", device
                )
                if skipped is None:
                    flash += flash_check(family, folder, device)
            else:
                for case in GOLDEN[family]:
                    rows += check_target(lambda f=family, c=case: golden_target(f, c), family, case, device)
    env = environment(device)
    ok = all(r.passed for r in rows) and all(f.passed for f in flash)
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    print(render(rows, flash, skipped if any(f in PACKED for f in families) else "skipped: no packed family"))
    print("GPU CHECK OK" if ok else "GPU CHECK FAILED")
    if args.output:
        payload = {"environment": env, "ok": ok, "rows": [asdict(r) for r in rows],
                   "flash": [asdict(f) for f in flash], "flash_skipped": skipped,
                   "bounds": {"half_cosine": HALF_COSINE, "deimv2_cosine": DEIMV2_COSINE,
                              "deimv2_box_median": DEIMV2_BOX_MEDIAN, "flash_cosine": FLASH_COSINE}}  # fmt: skip
        args.output.write_text(json.dumps(payload, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
