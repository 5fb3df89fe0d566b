"""The parity tool: run a converted model on a golden case of the original implementation and compare.

A case folder (``<family>/<case>/``, made by the original code; see docs/parity.md) is either
* a weights case: ``checkpoint.*`` + ``inputs.safetensors`` + ``outputs.safetensors`` (+ optional
  ``outputs_float64.safetensors``) + ``case.json`` (tolerances), or
* a manifest case: only ``keys.json`` (keys and shapes of a real released checkpoint), or
* another kind a family understands (its adapter's ``check_other``).
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel

from .conversion import ConversionResult, build_on_meta, convert_checkpoint, save_atomically
from .load_report import IncompleteCheckpointError, compare_to_model, expected_tensors
from .registry import ModelFamily

Tensors = dict[str, torch.Tensor]
STAGES = ("converted", "reloaded", "processor", "post-processing")  # the user path, in order


Tolerance = tuple[
    dict[str, float | tuple[float, float]], float, float
]  # per tensor, default atol, default rtol


def read_tolerance(case: Mapping[str, Any], label: str) -> Tolerance:
    """THE reading of a case's tolerance for ``label`` (``float32`` / ``float64``), whichever schema its
    generator wrote:

    * ``tolerance.<label>.per_tensor_atol`` + ``rtol`` (DEIMv2 cases),
    * ``tolerances.suggested_port_<label>.atol`` / ``rtol`` (VidEoMT cases),
    * ``tolerances.<label>_max_abs_diff``, with ``"<name> is in pixels: <atol>"`` in ``tolerances.note`` for
      outputs whose name ends with ``<name>``, and ``tolerances.per_tensor``: ``{regex: atol | [atol, rtol]}``
      for the outputs whose name ends with a match (SAM3-LiteText cases).

    Otherwise the shared fixtures' rule: 1e-5 absolute in float32, 1e-8 in float64.
    """
    default = 1e-5 if label == "float32" else 1e-8
    per_label = case.get("tolerance", {}).get(label)
    if isinstance(per_label, Mapping):
        return dict(per_label.get("per_tensor_atol", {})), default, float(per_label.get("rtol", 0.0))
    spec = case.get("tolerances", {})
    suggested = spec.get(f"suggested_port_{label}")
    if isinstance(suggested, Mapping):
        return {}, float(suggested.get("atol", default)), float(suggested.get("rtol", 0.0))
    per_tensor: dict[str, float | tuple[float, float]] = {}
    for suffix, value in re.findall(r"(\w+) is in pixels: ([0-9.eE+-]+\d)", str(spec.get("note", ""))):
        per_tensor.update({name: float(value) for name in _output_names(case) if name.endswith(suffix)})
    for pattern, value in spec.get("per_tensor", {}).items():
        bound = tuple(float(v) for v in value) if isinstance(value, list) else float(value)
        per_tensor.update({name: bound for name in _output_names(case) if re.search(f"(?:{pattern})$", name)})
    return per_tensor, float(spec.get(f"{label}_max_abs_diff", default)), 0.0


def _output_names(case: Mapping[str, Any]) -> list[str]:
    """The outputs ``case.json`` documents, in its order (a list of names or ``{name, ...}`` entries, or a
    mapping keyed by name)."""
    outputs = case.get("outputs", [])
    return (
        list(outputs)
        if isinstance(outputs, Mapping)
        else [o["name"] if isinstance(o, dict) else o for o in outputs]
    )


class ParityAdapter:
    """What a family provides to run its golden cases; every hook but :meth:`run` has a default."""

    def run(self, model: PreTrainedModel, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """The model's outputs (and named intermediates) on the case's inputs, named as the case names them."""
        raise NotImplementedError

    def final_outputs(self, case: Mapping[str, Any]) -> set[str]:
        """Tensors that decide the verdict (the others are diagnostics): by default every recorded output."""
        return set(_output_names(case))

    def conversion_options(self, case: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments of the converter for this case (by default the case's ``variant``)."""
        return {"variant": case["variant"]} if case.get("variant") else {}

    def align(self, ours: Tensors, reference: Tensors, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """Undo legitimate re-orderings of ours before comparing (none by default)."""
        return ours

    def check_other(self, case_dir: Path, case: Mapping[str, Any]) -> ParityReport | None:
        """A report for a case kind other than weights and manifests, or None when the kind is unknown."""
        return None

    def case_tensors(self, case: Mapping[str, Any]) -> Tensors:
        """Results recorded in ``case.json`` rather than in the outputs files (e.g. segment ids), as reference
        tensors compared like the others; ``{}`` when there are none."""
        return {}

    def preprocess(self, processor: Any, inputs: Tensors, case: Mapping[str, Any]) -> Tensors:
        """Model inputs made by ``processor`` from the case's raw inputs (``image_uint8`` / ``frames_uint8``),
        named as the case names its prepared tensors (an input such as ``pixel_values`` or an output such as
        ``padded_pixel_values``); ``{}`` when the case carries no raw input."""
        return {}

    def postprocess(
        self, processor: Any, outputs: Tensors, inputs: Tensors, case: Mapping[str, Any]
    ) -> Tensors:
        """``processor``'s user-facing post-processing of ``run``'s outputs, named as the case's post-processed
        outputs; ``{}`` when the case records none."""
        return {}

    def tolerance(self, case: Mapping[str, Any], label: str) -> Tolerance:
        """Per-tensor tolerances (an atol, or an ``(atol, rtol)`` pair), the default atol and the default rtol,
        for ``label`` (``float32`` / ``float64``), as the case states them (:func:`read_tolerance`)."""
        return read_tolerance(case, label)


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
    """Checks grouped in sections (``float32``, ``float64``, ``reloaded``, ...), each section under a stage."""

    case: str
    kind: str
    sections: dict[str, list[TensorCheck]] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    ok: bool = True
    stages: dict[str, list[str]] = field(default_factory=dict)  # stage -> its sections

    def add(self, stage: str, section: str, checks: list[TensorCheck], finals_only: bool = False) -> None:
        """Record a section; it fails the report when a check fails (only final tensors with ``finals_only``)."""
        self.sections[section] = checks
        self.stages.setdefault(stage, []).append(section)
        self.ok &= all(c.passed for c in checks if c.final or not finals_only)

    def stage_passed(self, stage: str) -> bool:
        finals_only = stage == "converted"
        return all(
            c.passed for s in self.stages[stage] for c in self.sections[s] if c.final or not finals_only
        )

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
        if self.stages:
            lines += ["", self.render_stages()]
        lines.append("PARITY OK" if self.ok else "PARITY FAILED")
        return "\n".join(lines)

    def render_stages(self) -> str:
        """One row per stage of the user path: converted, reloaded, processor, post-processing."""
        rows = [f"{'stage':<16} {'result':<7} {'tensors':>7}  worst (max abs / atol)"]
        for stage in STAGES:
            sections = self.stages.get(stage)
            if not sections:
                rows.append(f"{stage:<16} {'-':<7} {'-':>7}  not applicable to this case")
                continue
            checks = [c for s in sections for c in self.sections[s]]
            worst = _worst(checks, stage)
            result = "pass" if self.stage_passed(stage) else "FAIL"
            rows.append(f"{stage:<16} {result:<7} {len(checks):>7}  {worst} [{', '.join(sections)}]")
        return "\n".join(rows)


def _worst(checks: list[TensorCheck], stage: str) -> str:
    if stage == "reloaded":
        differ = [c.name for c in checks if not c.passed]
        return f"{len(differ)} differ, first {differ[0]}" if differ else "all bit-identical"
    measured = [c for c in checks if c.max_abs is not None]
    if not measured:
        return "exact" if all(c.passed for c in checks) else "not produced"
    c = max(measured, key=lambda c: c.max_abs / c.atol if c.atol else (float("inf") if c.max_abs else 0.0))
    return f"{c.name} {_fmt(c.max_abs)} / {c.atol:.0e}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def compare_tensors(
    ours: Tensors,
    reference: Tensors,
    order: list[str],
    atols: Mapping[str, float | tuple[float, float]],
    default_atol: float,
    finals: set[str],
    rtol: float = 0.0,
) -> list[TensorCheck]:
    """Compare every reference tensor (in ``order`` first) with ours: max/mean abs diff, exact for integers.

    A float tensor passes when every element satisfies ``|ours - ref| <= atol + rtol * |ref|``; ``atols`` maps a
    name to its atol (``rtol`` applies) or to an ``(atol, rtol)`` pair of its own.
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
        atol, tensor_rtol = _tolerance_of(atols.get(name, default_atol), rtol)
        max_abs = float(diff.max()) if diff.numel() else 0.0
        mean_abs = float(diff.mean()) if diff.numel() else 0.0
        within = bool((diff <= atol + tensor_rtol * ref.double().abs()).all()) if diff.numel() else True
        passed = bool(torch.isfinite(got).eq(torch.isfinite(ref)).all()) and within
        checks.append(TensorCheck(name, tuple(ref.shape), max_abs, mean_abs, atol, passed, final))
    return checks


def _tolerance_of(value: float | tuple[float, float], rtol: float) -> tuple[float, float]:
    """A per-tensor tolerance: an atol (with the case's rtol) or an explicit ``(atol, rtol)`` pair."""
    return (float(value[0]), float(value[1])) if isinstance(value, tuple) else (float(value), rtol)


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
    """The converted model against the case (float32, float64), then the path a user walks."""
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
    processor = family.make_processor(result.config) if family.make_processor is not None else None
    prepared = {**_preprocess(adapter, processor, inputs, case), **inputs}
    order = _output_names(case)
    finals = adapter.final_outputs(case)
    runs = [("float32", torch.float32, "outputs.safetensors")]
    if float64 and (case_dir / "outputs_float64.safetensors").is_file():
        runs.append(("float64", torch.float64, "outputs_float64.safetensors"))
    in_memory: Tensors = {}
    post_names: set[str] = set()
    for label, dtype, filename in runs:
        model = result.model.to(dtype)
        reference = {**load_file(str(case_dir / filename)), **adapter.case_tensors(case)}
        cast = _cast(prepared, dtype)
        ours, posted = _run(adapter, model, processor, cast, case)
        if label == "float32":
            in_memory, post_names, reference32 = ours, posted & set(reference), reference
        ours = adapter.align(ours, reference, cast, case)
        atols, default_atol, rtol = adapter.tolerance(case, label)
        checks = compare_tensors(ours, reference, order, atols, default_atol, finals, rtol)
        report.add("converted", label, checks, finals_only=True)
    result.model.to(torch.float32)
    _user_path(family, adapter, result, report, inputs, prepared, in_memory, post_names, reference32, case)
    return report


def _user_path(
    family: ModelFamily,
    adapter: ParityAdapter,
    result: ConversionResult,
    report: ParityReport,
    inputs: Tensors,
    prepared: Tensors,
    in_memory: Tensors,
    post_names: set[str],
    reference: Tensors,
    case: dict,
) -> None:
    """save_pretrained -> from_pretrained (Auto classes) -> processor on raw inputs -> post-processing."""
    order = _output_names(case)
    atols, default_atol, rtol = adapter.tolerance(case, "float32")
    with tempfile.TemporaryDirectory(prefix="visionports-parity-") as tmp, _quiet_progress():
        folder = Path(tmp) / "model"
        save_atomically(result, family, folder)
        model, processor = load_saved(family, folder)
        reloaded, _ = _run(adapter, model, processor, prepared, case)
        report.add("reloaded", "reloaded", compare_exact(reloaded, in_memory, order))
        made = _preprocess(adapter, processor, inputs, case)
        if made:
            targets = {name: (inputs[name] if name in inputs else reference.get(name)) for name in made}
            targets = {name: t for name, t in targets.items() if t is not None}
            checks = compare_tensors(made, targets, order, atols, default_atol, set(targets), rtol)
            report.add("processor", "processor", checks)
        if post_names:
            user_inputs = {**prepared, **made}
            user = adapter.align(
                _run(adapter, model, processor, user_inputs, case)[0], reference, user_inputs, case
            )
            picked = {name: reference[name] for name in post_names}
            checks = compare_tensors(user, picked, order, atols, default_atol, post_names, rtol)
            report.add("post-processing", "post-processing", checks)


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """No transformers progress bars inside the report (saving shards, loading weights)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_saved(family: ModelFamily, folder: Path) -> tuple[PreTrainedModel, Any]:
    """A saved folder loaded the way a user does: the family's Auto model class and AutoImageProcessor."""
    import transformers

    model = getattr(transformers, family.auto_model).from_pretrained(folder).eval()
    processor = None
    if (folder / "preprocessor_config.json").is_file():
        processor = transformers.AutoImageProcessor.from_pretrained(folder)
    return model, processor


def _run(
    adapter: ParityAdapter, model: PreTrainedModel, processor: Any, inputs: Tensors, case: dict
) -> tuple[Tensors, set[str]]:
    """The adapter's outputs plus the processor's post-processed ones, and the names of the latter."""
    with torch.no_grad():
        outputs = adapter.run(model, inputs, case)
        posted = _postprocess(adapter, processor, outputs, inputs, case)
    return {**outputs, **posted}, set(posted)


def _preprocess(adapter: ParityAdapter, processor: Any, inputs: Tensors, case: dict) -> Tensors:
    return dict(adapter.preprocess(processor, inputs, case)) if processor is not None else {}


def _postprocess(
    adapter: ParityAdapter, processor: Any, outputs: Tensors, inputs: Tensors, case: dict
) -> Tensors:
    return dict(adapter.postprocess(processor, outputs, inputs, case)) if processor is not None else {}


def _cast(tensors: Tensors, dtype: torch.dtype) -> Tensors:
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}


def compare_exact(ours: Tensors, reference: Tensors, order: list[str]) -> list[TensorCheck]:
    """Every tensor of ``reference`` reproduced bit for bit (NaN where NaN, same infinities)."""
    names = [n for n in order if n in reference] + sorted(set(reference) - set(order))
    checks = []
    for name in names:
        ref, got = reference[name].detach(), ours.get(name)
        if got is None or tuple(got.shape) != tuple(ref.shape) or got.dtype != ref.dtype:
            note = "not produced" if got is None else f"{list(got.shape)} {got.dtype}"
            checks.append(TensorCheck(name, tuple(ref.shape), None, None, 0.0, False, True, note))
            continue
        got = got.detach()
        same = got == ref
        if ref.is_floating_point():
            same |= got.isnan() & ref.isnan()
        finite = torch.isfinite(ref) & torch.isfinite(got) if ref.is_floating_point() else None
        diff = (got.double() - ref.double()).abs()[finite] if finite is not None else (got != ref).double()
        max_abs = float(diff.max()) if diff.numel() else 0.0
        equal = bool(same.all())
        checks.append(TensorCheck(name, tuple(ref.shape), max_abs, None, 0.0, equal, True,
                                  "bit-identical" if equal else f"{int((~same).sum())} elements differ"))  # fmt: skip
    return checks


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
    state_dict = family.prepare(
        {k: torch.empty(shape, dtype=_dtype(dt), device="meta") for k, (shape, dt) in entries.items()}
    )
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
