"""The parity tool: run a converted model on a golden case of the original implementation and compare.

A case folder (see ``shared/README.md``) is either
* a weights case: ``checkpoint.*`` + ``inputs.safetensors`` + ``outputs.safetensors`` (+ optional
  ``outputs_float64.safetensors``) + ``case.json`` (tolerances), or
* a manifest case: only ``keys.json`` (keys and shapes of a real released checkpoint), or
* another kind a family understands (its adapter's ``check_other``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel

from .conversion import build_on_meta, convert_checkpoint
from .load_report import IncompleteCheckpointError, compare_to_model, expected_tensors
from .registry import ModelFamily

Tensors = dict[str, torch.Tensor]


class ParityAdapter(Protocol):
    """What a family provides to run its golden cases."""

    def final_outputs(self, case: Mapping[str, Any]) -> set[str]: ...

    def conversion_options(self, case: Mapping[str, Any]) -> dict[str, Any]: ...

    def run(self, model: PreTrainedModel, inputs: Tensors, case: Mapping[str, Any]) -> Tensors: ...

    def align(
        self, ours: Tensors, reference: Tensors, inputs: Tensors, case: Mapping[str, Any]
    ) -> Tensors: ...

    def check_other(self, case_dir: Path, case: Mapping[str, Any]) -> ParityReport | None: ...

    def preprocess(self, processor: Any, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """Model inputs made by ``processor`` from the case's raw inputs (``image_uint8`` / ``frames_uint8``),
        named as the case names its prepared tensors (an input such as ``pixel_values`` or an output such as
        ``padded_pixel_values``); ``{}`` when the case carries no raw input."""
        ...

    def postprocess(
        self, processor: Any, outputs: Tensors, inputs: Tensors, case: Mapping[str, Any]
    ) -> Tensors:
        """``processor``'s user-facing post-processing of ``run``'s outputs, named as the case's post-processed
        outputs; ``{}`` when the case records none."""
        ...

    def tolerance(self, case: Mapping[str, Any], label: str) -> tuple[dict[str, float], float, float]:
        """Per-tensor absolute tolerances, the default one and a relative tolerance, for ``label``
        (``float32`` / ``float64``), as the case states them."""
        ...


@dataclass
class TensorCheck:
    name: str
    shape: tuple[int, ...]
    max_abs: float | None
    mean_abs: float | None
    atol: float
    passed: bool
    final: bool
    note: str = ""


@dataclass
class ParityReport:
    case: str
    kind: str
    sections: dict[str, list[TensorCheck]] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    ok: bool = True

    def first_divergence(self, section: str) -> str | None:
        return next((c.name for c in self.sections.get(section, []) if not c.passed), None)

    def render(self) -> str:
        lines = [f"case {self.case} ({self.kind})"]
        for section, checks in self.sections.items():
            lines.append(f"\n[{section}]")
            width = max([len(c.name) for c in checks] + [6])
            lines.append(
                f"{'tensor'.ljust(width)}  {'shape':<18} {'max abs':>10} {'mean abs':>10} {'atol':>8}  result"
            )
            for c in checks:
                flag = ("pass" if c.passed else "FAIL") + (" (final)" if c.final else "")
                lines.append(
                    f"{c.name.ljust(width)}  {str(list(c.shape)):<18} {_fmt(c.max_abs):>10} {_fmt(c.mean_abs):>10} "
                    f"{c.atol:>8.0e}  {flag}{'  ' + c.note if c.note else ''}"
                )
            first = self.first_divergence(section)
            lines.append(f"first divergence: {first}" if first else "no divergence")
        lines += self.messages
        lines.append("PARITY OK" if self.ok else "PARITY FAILED")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def compare_tensors(
    ours: Tensors,
    reference: Tensors,
    order: list[str],
    atols: Mapping[str, float],
    default_atol: float,
    finals: set[str],
    rtol: float = 0.0,
) -> list[TensorCheck]:
    """Compare every reference tensor (in ``order`` first) with ours: max/mean abs diff, exact for integers.

    A float tensor passes when every element satisfies ``|ours - ref| <= atol + rtol * |ref|``.
    """
    names = [n for n in order if n in reference] + sorted(set(reference) - set(order))
    checks = []
    for name in names:
        ref = reference[name]
        final = name in finals
        if name not in ours:
            checks.append(
                TensorCheck(name, tuple(ref.shape), None, None, 0.0, not final, final, "not produced")
            )
            continue
        got = ours[name].detach()
        if tuple(got.shape) != tuple(ref.shape):
            note = f"shape {list(got.shape)}"
            checks.append(TensorCheck(name, tuple(ref.shape), None, None, 0.0, False, final, note))
            continue
        if not ref.is_floating_point():
            equal = torch.equal(got.to(ref.dtype), ref)
            mismatches = int((got.to(ref.dtype) != ref).sum())
            checks.append(
                TensorCheck(
                    name,
                    tuple(ref.shape),
                    float(mismatches),
                    None,
                    0.0,
                    equal,
                    True,
                    "exact" if equal else f"{mismatches} differ",
                )
            )
            continue
        diff = (got.double() - ref.double()).abs()
        atol = float(atols.get(name, default_atol))
        max_abs = float(diff.max()) if diff.numel() else 0.0
        mean_abs = float(diff.mean()) if diff.numel() else 0.0
        within = bool((diff <= atol + rtol * ref.double().abs()).all()) if diff.numel() else True
        passed = bool(torch.isfinite(got).eq(torch.isfinite(ref)).all()) and within
        checks.append(TensorCheck(name, tuple(ref.shape), max_abs, mean_abs, atol, passed, final))
    return checks


def _case_file(case_dir: Path, stem: str) -> Path | None:
    hits = sorted(p for p in case_dir.glob(stem + ".*") if p.is_file())
    return hits[0] if hits else None


def run_parity(family: ModelFamily, case_dir: str | Path, float64: bool = True) -> ParityReport:
    """Check one case folder against a family's converter and model."""
    case_dir = Path(case_dir)
    if not case_dir.is_dir():
        raise FileNotFoundError(f"CASE_DIR {case_dir} is not a folder")
    case_path = case_dir / "case.json"
    case: dict[str, Any] = json.loads(case_path.read_text()) if case_path.is_file() else {}
    adapter: ParityAdapter = family.parity
    checkpoint = _case_file(case_dir, "checkpoint")
    if checkpoint is not None:
        return _weights_case(family, adapter, case_dir, case, checkpoint, float64)
    if (case_dir / "keys.json").is_file():
        return manifest_case(family, case_dir, case, adapter)
    other = adapter.check_other(case_dir, case)
    if other is None:
        raise ValueError(
            f"{case_dir} holds no checkpoint, keys.json or other case kind that {family.name} knows"
        )
    return other


def _weights_case(
    family: ModelFamily, adapter: ParityAdapter, case_dir: Path, case: dict, checkpoint: Path, float64: bool
) -> ParityReport:
    report = ParityReport(case=case.get("case", case_dir.name), kind="weights")
    options = adapter.conversion_options(case)
    try:
        result = convert_checkpoint(family, checkpoint, progress=False, **options)
    except IncompleteCheckpointError as err:
        report.messages.append(f"conversion refused: {err}")
        report.ok = False
        return report
    report.messages.append(f"converted: {result.report.summary()} (weights from '{result.weights_source}')")
    inputs = load_file(str(case_dir / "inputs.safetensors"))
    outputs_doc = case.get("outputs", {})
    order = [o["name"] for o in outputs_doc] if isinstance(outputs_doc, list) else list(outputs_doc)
    finals = adapter.final_outputs(case)
    runs = [("float32", torch.float32, "outputs.safetensors")]
    if float64 and (case_dir / "outputs_float64.safetensors").is_file():
        runs.append(("float64", torch.float64, "outputs_float64.safetensors"))
    model = result.model
    for label, dtype, filename in runs:
        model = model.to(dtype)
        reference = load_file(str(case_dir / filename))
        cast = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
        with torch.no_grad():
            ours = adapter.run(model, cast, case)
        ours = adapter.align(ours, reference, cast, case)
        atols, default_atol, rtol = adapter.tolerance(case, label)
        checks = compare_tensors(ours, reference, order, atols, default_atol, finals, rtol)
        report.sections[label] = checks
        report.ok &= all(c.passed for c in checks if c.final)
    return report


def _load_manifest(path: Path) -> tuple[dict[str, tuple[list[int], str]], dict[str, Any]]:
    """Keys, shapes and dtypes of a manifest, plus its other top-level fields (e.g. ``variant``).

    Accepts a list of ``{name, shape, dtype}`` entries, a ``{name: shape}`` mapping, or either of those under
    ``keys`` (possibly inside a ``checkpoint`` object, as in ``case.json``).
    """
    data = json.loads(path.read_text())
    meta: dict[str, Any] = {}
    while isinstance(data, dict) and ("keys" in data or "checkpoint" in data):
        meta.update({k: v for k, v in data.items() if k not in ("keys", "checkpoint")})
        data = data["keys"] if "keys" in data else data["checkpoint"]
    entries: dict[str, tuple[list[int], str]] = {}
    if isinstance(data, dict):
        for name, value in data.items():
            shape, dtype = (
                (value.get("shape"), value.get("dtype", "float32"))
                if isinstance(value, dict)
                else (value, "float32")
            )
            entries[name] = (list(shape), str(dtype))
    else:
        for item in data:
            entries[item["name"]] = (list(item["shape"]), str(item.get("dtype", "float32")))
    return entries, meta


def _dtype(name: str) -> torch.dtype:
    value = getattr(torch, name.replace("torch.", ""), None)
    return value if isinstance(value, torch.dtype) else torch.float32


def manifest_case(family: ModelFamily, case_dir: Path, case: dict, adapter: ParityAdapter) -> ParityReport:
    """Every key of a released checkpoint must be mapped (or explicitly skipped) with matching shapes."""
    entries, meta = _load_manifest(case_dir / "keys.json")
    report = ParityReport(case=case.get("case", case_dir.name), kind="manifest")
    state_dict = {
        k: torch.empty(shape, dtype=_dtype(dt), device="meta") for k, (shape, dt) in entries.items()
    }
    options = adapter.conversion_options({**meta, **case})
    config = family.infer_config(
        state_dict, variant=options.get("variant"), **options.get("config_overrides", {})
    )
    mapped = family.convert_state_dict(state_dict, config)
    model = build_on_meta(family, config)
    load = compare_to_model(mapped, expected_tensors(model))
    report.messages.append(f"{len(entries)} keys: {load.summary()}")
    if not load.complete:
        report.messages.append(load.describe())
    report.ok = load.complete
    return report
