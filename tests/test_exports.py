"""Every family's public classes are importable from the package top level."""

from __future__ import annotations

import importlib

import visionports
from visionports.core.registry import all_families


def _public_classes(family) -> dict[str, type]:
    """The configs, models, processors and tokenizers of the registry entry (the folder's exports for a family
    that registers no Auto class, like the packed encoders)."""
    classes = [cls for entry in family.auto_models for cls in entry[1:]]
    classes += [*family.processors.values(), *family.tokenizers.values()]
    if not classes:
        module = importlib.import_module(f"visionports.models.{family.name}")
        classes = [getattr(module, n) for n in module.__all__ if isinstance(getattr(module, n), type)]
    return {cls.__name__: cls for cls in classes}


def test_every_family_is_exported_at_the_top_level() -> None:
    for family in all_families():
        classes = _public_classes(family)
        assert classes, family.name
        for name, cls in classes.items():
            assert name in visionports.__all__ and getattr(visionports, name) is cls, (family.name, name)
