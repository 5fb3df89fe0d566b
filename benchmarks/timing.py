"""Shared timing for the benchmark table: interleaved repeats, min / median, ratio to the reference row.

Every family's benchmark module gives ``table(repeats, quick) -> list[Row]``; ``run_all.py`` prints them in
one table. Variants are dicts ``{backend name: callable(argument) | "why it did not run"}``; the reference
variant (upstream transformers, or the baseline the issue names) is the first key.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

WARMUP = 2


@dataclass
class Row:
    """One table row: ``times`` in ms (or a note why there are none), ratio to ``reference_ms``."""

    family: str
    case: str
    backend: str
    times: list[float] | str
    reference_ms: float
    reference: str = "upstream eager"

    def markdown(self) -> str:
        if isinstance(self.times, str):
            return f"| {self.family} | {self.case} | {self.backend} | {self.times} | | | |"
        low, mid = min(self.times), statistics.median(self.times)
        ratio = mid / self.reference_ms
        return f"| {self.family} | {self.case} | {self.backend} | {low:.1f} | {mid:.1f} | {ratio:.2f} | {self.reference} |"


HEADER = (
    "| family | case | backend | min ms | median ms | ratio | ÷ median of |\n|---|---|---|---|---|---|---|"
)


def time_interleaved(
    calls: dict[str, Callable[[object], object]], argument: object, repeats: int
) -> dict[str, list[float]]:
    """Milliseconds per call: warm-up, then each repeat runs every variant once in turn (noise hits all alike)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for _ in range(WARMUP):
            for call in calls.values():
                call(argument)
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call(argument)
                times[name].append(1000 * (time.perf_counter() - start))
    return times


def rows(
    family: str,
    case: str,
    variants: dict[str, Callable | str],
    argument: object,
    repeats: int,
    reference: str | None = None,
) -> list[Row]:
    """Time the runnable ``variants`` interleaved; ratios against ``reference`` (default: the first variant)."""
    reference = reference or next(iter(variants))
    runnable = {name: call for name, call in variants.items() if not isinstance(call, str)}
    times = time_interleaved(runnable, argument, repeats)
    reference_ms = statistics.median(times[reference])
    return [
        Row(family, case, name, call if isinstance(call, str) else times[name], reference_ms, reference)
        for name, call in variants.items()
    ]


def attempt(build: Callable[[], Callable], *, check: object = None) -> Callable | str:
    """``build()`` (and one call on ``check`` when given), or ``"failed: ErrorName"`` for the table."""
    try:
        call = build()
        if check is not None:
            with torch.inference_mode():
                call(check)
    except Exception as error:  # noqa: BLE001 - a failing variant is reported in the table, not raised
        return f"failed: {type(error).__name__}: {str(error).splitlines()[0][:80] if str(error) else ''}"
    return call
