"""Model families (one folder each, listed in :mod:`visionports.core.registry`)."""

from __future__ import annotations


def register_all() -> None:
    """Register every family of the registry with transformers' Auto classes and pipelines (idempotent)."""
    from ..core.registry import all_families, register_with_transformers

    for family in all_families():
        register_with_transformers(family)
