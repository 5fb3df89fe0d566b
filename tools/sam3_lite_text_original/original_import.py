"""Import the ORIGINAL SAM3-LiteText classes on CPU without torchvision / decord / pycocotools / timm / iopath.

The original repository (``SimonZeng7108/efficientsam3``, branch ``sam3_litetext``) is NOT part of this
project: extract its ``sam3/`` folder somewhere and pass that folder (the one holding the ``sam3`` package).
The stand-ins below only satisfy imports; the ones reached by text-prompted image inference are timm's ``Mlp``
(fc1 -> activation -> fc2, dropout 0), the identity ``DropPath`` (eval mode) and ``trunc_normal_``
(initialisation; every weight is re-drawn or loaded afterwards).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
from pathlib import Path

import torch
from torch import nn


class _Refuse:
    """A stand-in object that raises when it is used (text-only inference never reaches it)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        raise RuntimeError("stand-in called: this path needs the real library")

    def __getattr__(self, name):
        return _Refuse()


class _StandIn(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Refuse


class DropPath(nn.Module):
    """Stochastic depth stand-in: the identity, valid in eval mode only."""

    def __init__(self, drop_prob: float = 0.0, *args, **kwargs):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop_prob > 0:
            raise RuntimeError("DropPath stand-in: eval mode only")
        return x


class Mlp(nn.Module):
    """timm's two-layer MLP as the ViT blocks build it: ``fc2(drop(act(fc1(x))))`` (dropout 0 in eval)."""

    def __init__(
        self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0, **kw
    ):
        super().__init__()
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _roi_align_no_boxes(
    features: torch.Tensor, boxes: list, output_size: int, *args, **kwargs
) -> torch.Tensor:
    """torchvision's ``roi_align`` for the only case text-only prompts reach: no boxes at all."""
    if sum(len(b) for b in boxes):
        raise RuntimeError("roi_align stand-in: only the empty (text-only) prompt is supported")
    return features.new_zeros(0, features.shape[1], output_size, output_size)


class _RoiAlignModule(_StandIn):
    def __call__(self, *args, **kwargs):
        return _roi_align_no_boxes(*args, **kwargs)


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Every ``torchvision`` / ``decord`` / ``pycocotools`` / ``iopath`` (sub)module is a :class:`_StandIn`."""

    ROOTS = ("torchvision", "decord", "pycocotools", "iopath")

    def __init__(self, real: tuple[str, ...] = ()):
        self.roots = tuple(root for root in self.ROOTS if root not in real)

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        # ``torchvision.ops.roi_align`` is both a submodule and (after its import) the function the geometry
        # encoder calls
        module = (
            _RoiAlignModule(spec.name) if spec.name == "torchvision.ops.roi_align" else _StandIn(spec.name)
        )
        module.__path__ = []
        return module

    def exec_module(self, module):
        if module.__name__ == "iopath.common.file_io":  # the tokenizer reads its vocabulary through it
            module.g_pathmgr = types.SimpleNamespace(open=open, exists=os.path.exists)


def _install_stand_ins(real: tuple[str, ...] = ()) -> None:
    sys.meta_path.insert(0, _StandInFinder(real))
    torch.Tensor.pin_memory = lambda self, *args, **kwargs: self  # CPU only: pinning is a no-op here
    triton, language = types.ModuleType("triton"), types.ModuleType("triton.language")
    triton.jit, triton.language, language.constexpr = (lambda fn: fn), language, int  # kernels never run
    sys.modules.update({"triton": triton, "triton.language": language})
    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    layers.DropPath, layers.Mlp = DropPath, Mlp
    layers.trunc_normal_ = nn.init.trunc_normal_
    timm.models, models.layers = models, layers
    sys.modules.update(
        {"timm": timm, "timm.models": models, "timm.models.layers": layers, "timm.layers": layers}
    )


def import_original(root: Path, real: tuple[str, ...] = ()) -> types.ModuleType:
    """The original ``sam3`` package from ``root`` (its ``__init__`` is skipped: it imports the video stack).

    ``real``: libraries installed in the environment that are imported as they are instead of stood in (e.g.
    ``("torchvision",)`` for the box-prompt path, which pools with ``torchvision.ops.roi_align``)."""
    for (
        name
    ) in real:  # imported before the stand-ins exist (torchvision's import reaches torch's own triton checks)
        importlib.import_module(name)
    _install_stand_ins(real)
    package = types.ModuleType("sam3")
    package.__path__ = [str(Path(root) / "sam3")]
    sys.modules["sam3"] = package
    importlib.import_module("sam3.model.sam3_image")  # pulls in the triton kernels' module (never run)
    for name in ("triton", "triton.language"):  # torch's own optional triton checks must not see the stand-in
        sys.modules.pop(name, None)
    return package


@contextlib.contextmanager
def cuda_on_cpu():
    """While building: tensor factories asked for ``device="cuda"`` (position/coordinate caches) give CPU tensors."""
    names = ("zeros", "ones", "arange", "empty", "tensor", "linspace")
    saved = {name: getattr(torch, name) for name in names}

    def redirect(factory):
        def call(*args, **kwargs):
            if str(kwargs.get("device", "")).startswith("cuda"):
                kwargs["device"] = "cpu"
            return factory(*args, **kwargs)

        return call

    for name, factory in saved.items():
        setattr(torch, name, redirect(factory))
    try:
        yield
    finally:
        for name, factory in saved.items():
            setattr(torch, name, factory)
