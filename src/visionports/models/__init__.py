"""Model families (one folder each, listed in :mod:`visionports.core.registry`)."""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

_AUTO_MODULE = "transformers.models.auto.configuration_auto"  # loaded by every transformers Auto class
_WATCHED = ("transformers", "visionports")
_registered = False


def register_all() -> None:
    """Register every family of the registry with transformers' Auto classes and pipelines (idempotent)."""
    global _registered
    from ..core.registry import all_families, register_with_transformers

    for family in all_families():
        register_with_transformers(family)
    _registered = True


class _Loader(importlib.abc.Loader):
    """A module's own loader, counting how many watched imports are in progress."""

    def __init__(self, loader: Any, hook: _RegisterAfterImports) -> None:
        self.loader = loader
        self.hook = hook

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # the module sees its own loader
        self.hook.depth += 1
        try:
            self.loader.exec_module(module)
        finally:
            self.hook.depth -= 1
        if self.hook.depth == 0:
            self.hook.import_finished()

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)


class _RegisterAfterImports(importlib.abc.MetaPathFinder):
    """Runs :func:`register_all` once transformers' Auto classes are loaded and no import of a transformers or
    visionports module is still running (registering mid-import would meet half-initialised modules)."""

    def __init__(self) -> None:
        self.depth = 0

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.partition(".")[0] not in _WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, self)
                return spec
        return None

    def import_finished(self) -> None:
        if _AUTO_MODULE in sys.modules and not _registered:
            self.remove()
            register_all()

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def register_lazily() -> None:
    """Register the families now if transformers' Auto classes are loaded, else right after they are.

    Until then nothing heavy (torch, transformers, the model code) is imported: ``import visionports`` stays
    cheap, and a converted folder still loads with ``AutoModel.from_pretrained`` / ``pipeline`` once the
    user imports them.
    """
    if _registered or any(isinstance(finder, _RegisterAfterImports) for finder in sys.meta_path):
        return
    if _AUTO_MODULE in sys.modules:
        register_all()
        return
    sys.meta_path.insert(0, _RegisterAfterImports())
