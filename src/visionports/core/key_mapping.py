"""Declarative mapping of an original checkpoint's key names onto a port's key names.

A :class:`KeyMapping` is an ordered list of rules:

* :class:`Skip` drops keys the port does not need (training-only heads, recomputed buffers);
* :class:`Duplicate` drops keys that are exact copies of another key (tied parameters, shared heads),
  after checking that they really are identical;
* :class:`Fold` merges one key into another (e.g. a bias mask multiplied into its bias);
* :class:`Rename` rewrites names with a regular expression (applied in order, chained);
* :class:`Split` turns one tensor into several along a dimension (fused qkv -> q, k, v).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch

from .checkpoint import CheckpointError


@dataclass(frozen=True)
class Rename:
    """Rewrite every key matching ``pattern`` (``re.sub`` semantics, groups allowed)."""

    pattern: str
    replacement: str


@dataclass(frozen=True)
class Split:
    """Split a (renamed) key fully matching ``pattern`` into ``len(targets)`` equal chunks along ``dim``."""

    pattern: str
    targets: tuple[str, ...]
    dim: int = 0


@dataclass(frozen=True)
class Skip:
    """Drop original keys fully matching ``pattern``; ``reason`` is shown in reports."""

    pattern: str
    reason: str


@dataclass(frozen=True)
class Duplicate:
    """Drop original keys fully matching ``pattern`` after checking they equal ``re.sub(pattern, of, key)``."""

    pattern: str
    of: str


@dataclass(frozen=True)
class Fold:
    """Merge an original key fully matching ``pattern`` into ``re.sub(pattern, into, key)`` with ``fn(into, this)``."""

    pattern: str
    into: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    description: str = ""


Rule = Rename | Split | Skip | Duplicate | Fold


@dataclass
class MappedStateDict:
    """The outcome of applying a :class:`KeyMapping`."""

    tensors: dict[str, torch.Tensor]
    source: dict[str, str]  # our key -> original key
    skipped: dict[str, str] = field(default_factory=dict)  # original key -> reason


@dataclass
class KeyMapping:
    rules: list[Rule]

    def __post_init__(self) -> None:
        self._compiled = [(rule, re.compile(_pattern_of(rule))) for rule in self.rules]

    def rename(self, key: str) -> list[str]:
        """Our key(s) for one original key (after renames and splits), ignoring skip rules."""
        return self._resolve(key)[0]

    def _resolve(self, key: str) -> tuple[list[str], int]:
        """Target names of ``key`` and the dimension to split it along (when several)."""
        name = key
        for rule, regex in self._compiled:
            if isinstance(rule, Rename):
                name = regex.sub(rule.replacement, name)
        for rule, regex in self._compiled:
            if isinstance(rule, Split) and regex.fullmatch(name):
                return [regex.sub(t, name) for t in rule.targets], rule.dim
        return [name], 0

    def apply(self, state_dict: Mapping[str, torch.Tensor], check_duplicates: bool = True) -> MappedStateDict:
        """Map ``state_dict`` (original names) to our names."""
        pending = dict(state_dict)
        skipped: dict[str, str] = {}
        for rule, regex in self._compiled:
            if isinstance(rule, Skip):
                for key in [k for k in pending if regex.fullmatch(k)]:
                    skipped[key] = rule.reason
                    del pending[key]
            elif isinstance(rule, Duplicate):
                for key in [k for k in pending if regex.fullmatch(k)]:
                    original = regex.sub(rule.of, key)
                    if original not in state_dict:
                        raise CheckpointError(f"key {key!r} should duplicate {original!r}, which is absent")
                    if check_duplicates and not _same(state_dict[key], state_dict[original]):
                        raise CheckpointError(
                            f"key {key!r} should be an exact copy of {original!r} (tied/shared weights) but differs"
                        )
                    skipped[key] = f"identical copy of {original}"
                    del pending[key]
            elif isinstance(rule, Fold):
                for key in [k for k in pending if regex.fullmatch(k)]:
                    target = regex.sub(rule.into, key)
                    if target not in pending:
                        raise CheckpointError(f"key {key!r} folds into {target!r}, which is absent")
                    pending[target] = rule.fn(pending[target], pending[key])
                    skipped[key] = f"folded into {target}" + (
                        f" ({rule.description})" if rule.description else ""
                    )
                    del pending[key]
        tensors: dict[str, torch.Tensor] = {}
        source: dict[str, str] = {}
        for key, value in pending.items():
            names, dim = self._resolve(key)
            chunks = [value] if len(names) == 1 else _split(value, names, key, dim)
            for name, chunk in zip(names, chunks, strict=True):
                if name in tensors:
                    raise CheckpointError(f"keys {source[name]!r} and {key!r} both map to {name!r}")
                tensors[name] = chunk
                source[name] = key
        return MappedStateDict(tensors=tensors, source=source, skipped=skipped)

    @classmethod
    def concat(cls, *mappings: KeyMapping | Iterable[Rule]) -> KeyMapping:
        rules: list[Rule] = []
        for m in mappings:
            rules.extend(m.rules if isinstance(m, KeyMapping) else m)
        return cls(rules)


def _pattern_of(rule: Rule) -> str:
    return rule.pattern


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.is_meta or b.is_meta:
        return a.shape == b.shape
    return a.shape == b.shape and torch.equal(a, b)


def _split(value: torch.Tensor, names: list[str], key: str, dim: int) -> list[torch.Tensor]:
    n = len(names)
    if value.shape[dim] % n:
        raise CheckpointError(
            f"key {key!r} with shape {tuple(value.shape)} cannot be split in {n} along dim {dim}"
        )
    return [c.contiguous() if not c.is_meta else c for c in value.chunk(n, dim=dim)]
