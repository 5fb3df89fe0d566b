"""Strict loading of mapped weights into a model, with a report of everything that did not fit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import VisionportsError
from .key_mapping import MappedStateDict


class IncompleteCheckpointError(VisionportsError, RuntimeError):
    """Weights did not cover the model exactly; carries the :class:`LoadReport`."""

    def __init__(self, report: LoadReport):
        self.report = report
        super().__init__("the checkpoint does not match the model:\n" + report.describe())


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)  # our keys with no weight
    unexpected: list[str] = field(default_factory=list)  # original keys with no place in the model
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # original key -> reason
    loaded: int = 0

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        return (
            f"loaded {self.loaded}, skipped {len(self.skipped)}, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, mis-shaped {len(self.mismatched)}"
        )

    def describe(self, limit: int = 50) -> str:
        lines = [self.summary()]
        for title, items in (
            ("missing (in the model, not in the checkpoint)", self.missing),
            ("unexpected (in the checkpoint, not in the model)", self.unexpected),
        ):
            if items:
                lines.append(f"{title}:")
                lines += [f"  {k}" for k in items[:limit]]
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")
        if self.mismatched:
            lines.append("mis-shaped (original -> ours: checkpoint shape vs model shape):")
            for orig, ours, got, want in self.mismatched[:limit]:
                lines.append(f"  {orig} -> {ours}: {list(got)} vs {list(want)}")
        return "\n".join(lines)

    def raise_if_incomplete(self) -> None:
        if not self.complete:
            raise IncompleteCheckpointError(self)


def expected_tensors(model: nn.Module) -> dict[str, torch.Size]:
    """Shapes of every persistent parameter and buffer the model saves."""
    return {k: v.shape for k, v in model.state_dict().items()}


def compare_to_model(mapped: MappedStateDict, expected: dict[str, torch.Size]) -> LoadReport:
    """Report how ``mapped`` covers a model whose state dict has shapes ``expected``."""
    report = LoadReport(skipped=dict(mapped.skipped))
    for name, tensor in mapped.tensors.items():
        if name not in expected:
            report.unexpected.append(
                mapped.source[name] + (f" (as {name})" if name != mapped.source[name] else "")
            )
        elif tuple(tensor.shape) != tuple(expected[name]):
            report.mismatched.append((mapped.source[name], name, tuple(tensor.shape), tuple(expected[name])))
        else:
            report.loaded += 1
    report.missing = sorted(set(expected) - set(mapped.tensors))
    return report


def load_mapped(model: nn.Module, mapped: MappedStateDict, allow_partial: bool = False) -> LoadReport:
    """Load ``mapped`` into ``model``; raise :class:`IncompleteCheckpointError` unless it fits exactly."""
    expected = expected_tensors(model)
    report = compare_to_model(mapped, expected)
    if not allow_partial:
        report.raise_if_incomplete()
    usable = {
        k: v for k, v in mapped.tensors.items() if k in expected and tuple(v.shape) == tuple(expected[k])
    }
    model.load_state_dict(usable, strict=False)
    return report


@dataclass
class ValueProblems:
    """Weights whose values cannot be right: NaN/inf, or integers where the model holds floating point."""

    non_finite: list[str] = field(default_factory=list)
    integer: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.non_finite or self.integer)

    def describe(self, limit: int = 5) -> str:
        parts = []
        for items, what in (
            (self.non_finite, "hold NaN or infinite values"),
            (self.integer, "are integers where weights are floating point"),
        ):
            if items:
                more = f" and {len(items) - limit} more" if len(items) > limit else ""
                parts.append(f"{len(items)} tensor(s) {what}: {', '.join(items[:limit])}{more}")
        return "; ".join(parts)


def find_value_problems(
    tensors: Mapping[str, torch.Tensor],
    expected_dtypes: Mapping[str, torch.dtype] | None = None,
    source: Mapping[str, str] | None = None,
) -> ValueProblems:
    """Non-finite floating tensors, and integer tensors where ``expected_dtypes`` is floating.

    Integer scalars (one element) pass: originals store hyper-parameters so (DEIMv2's ``reg_scale``), and
    they convert exactly. Without ``expected_dtypes`` (raw checkpoint weights), integer ``*.weight`` /
    ``*.bias`` tensors count. Keys are reported by their original names from ``source`` when given.
    """
    problems = ValueProblems()
    for key, tensor in tensors.items():
        name = _display_name(key, source)
        if _is_real_or_complex(tensor.dtype):
            if not bool(torch.isfinite(tensor).all()):
                problems.non_finite.append(name)
        elif tensor.numel() > 1 and _wants_float(key, expected_dtypes):
            problems.integer.append(f"{name} ({str(tensor.dtype).removeprefix('torch.')})")
    return problems


def _display_name(key: str, source: Mapping[str, str] | None) -> str:
    original = source.get(key, key) if source else key
    return original if original == key else f"{original} (as {key})"


def _is_real_or_complex(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point or dtype.is_complex


def _wants_float(key: str, expected_dtypes: Mapping[str, torch.dtype] | None) -> bool:
    if expected_dtypes is None:
        return key.endswith((".weight", ".bias"))
    return key in expected_dtypes and _is_real_or_complex(expected_dtypes[key])
