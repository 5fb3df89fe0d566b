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
class _PatternRule:
    """A rule selecting keys by the regular expression ``pattern``."""

    pattern: str


@dataclass(frozen=True)
class Rename(_PatternRule):
    """Rewrite every key matching ``pattern`` (``re.sub`` semantics, groups allowed)."""

    replacement: str


@dataclass(frozen=True)
class Split(_PatternRule):
    """Split a (renamed) key fully matching ``pattern`` into ``len(targets)`` equal chunks along ``dim``."""

    targets: tuple[str, ...]
    dim: int = 0


@dataclass(frozen=True)
class Skip(_PatternRule):
    """Drop original keys fully matching ``pattern``; ``reason`` is shown in reports."""

    reason: str


@dataclass(frozen=True)
class Duplicate(_PatternRule):
    """Drop original keys fully matching ``pattern`` after checking they equal ``re.sub(pattern, of, key)``."""

    of: str


@dataclass(frozen=True)
class Fold(_PatternRule):
    """Merge an original key fully matching ``pattern`` into ``re.sub(pattern, into, key)`` with ``fn(into, this)``."""

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
        self._compiled = [(rule, re.compile(rule.pattern)) for rule in self.rules]

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
            if isinstance(rule, (Skip, Duplicate, Fold)):
                for key in [k for k in pending if regex.fullmatch(k)]:
                    skipped[key] = _drop(rule, regex, key, pending, state_dict, check_duplicates)
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


def _drop(
    rule: Skip | Duplicate | Fold,
    regex: re.Pattern[str],
    key: str,
    pending: dict[str, torch.Tensor],
    state_dict: Mapping[str, torch.Tensor],
    check_duplicates: bool,
) -> str:
    """Why ``rule`` drops the original ``key`` (a :class:`Fold` merges it into its target in ``pending``)."""
    if isinstance(rule, Skip):
        return rule.reason
    if isinstance(rule, Duplicate):
        original = regex.sub(rule.of, key)
        if original not in state_dict:
            raise CheckpointError(f"key {key!r} should duplicate {original!r}, which is absent")
        if check_duplicates and not _same(state_dict[key], state_dict[original]):
            raise CheckpointError(
                f"key {key!r} should be an exact copy of {original!r} (tied/shared weights) but differs"
            )
        return f"identical copy of {original}"
    target = regex.sub(rule.into, key)
    if target not in pending:
        raise CheckpointError(f"key {key!r} folds into {target!r}, which is absent")
    pending[target] = rule.fn(pending[target], pending[key])
    return f"folded into {target}" + (f" ({rule.description})" if rule.description else "")


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
