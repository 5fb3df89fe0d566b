"""Build ORIGINAL DEIMv2 models (reference runs only; never imported by the package) with import-only stand-ins."""

import importlib
import os
import sys
import types

import torch

SRC = os.environ.get("DEIMV2_SRC", "DEIMv2")  # checkout of Intellindust-AI-Lab/DEIMv2 at 0fff8d4
CFG = {
    "atto": "configs/deimv2/deimv2_hgnetv2_atto_coco.yml",
    "femto": "configs/deimv2/deimv2_hgnetv2_femto_coco.yml",
    "pico": "configs/deimv2/deimv2_hgnetv2_pico_coco.yml",
    "n": "configs/deimv2/deimv2_hgnetv2_n_coco.yml",
    "s": "configs/deimv2/deimv2_dinov3_s_coco.yml",
    "m": "configs/deimv2/deimv2_dinov3_m_coco.yml",
    "l": "configs/deimv2/deimv2_dinov3_l_coco.yml",
    "x": "configs/deimv2/deimv2_dinov3_x_coco.yml",
}


def _raiser(name):
    def f(*a, **k):
        raise RuntimeError(f"stand-in {name} called")

    return f


class _StubType:
    def __init__(self, *a, **k):
        raise RuntimeError("stand-in class instantiated")


def _stub(name):
    m = types.ModuleType(name)
    m.__path__ = []

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr[:1].isupper():
            return type(attr, (_StubType,), {})
        return _raiser(f"{name}.{attr}")

    m.__getattr__ = __getattr__
    sys.modules[name] = m
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, m)
    return m


def _box_convert(boxes, in_fmt, out_fmt):
    assert in_fmt == "cxcywh" and out_fmt == "xyxy"
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def install_stand_ins():
    for n in [
        "torchvision",
        "torchvision.ops",
        "torchvision.ops.boxes",
        "torchvision.transforms",
        "torchvision.transforms.v2",
        "torchvision.transforms.v2.functional",
        "torchvision.transforms.functional",
        "torchvision.datasets",
        "torchvision.models",
        "torchvision.models.feature_extraction",
        "torchvision.utils",
        "torchvision.tv_tensors",
        "faster_coco_eval",
        "faster_coco_eval.core",
        "faster_coco_eval.core.mask",
        "calflops",
        "xformers",
        "xformers.ops",
        "torch.utils.tensorboard",
    ]:
        if n not in sys.modules:
            _stub(n)
    sys.modules["torchvision.ops"].box_convert = _box_convert
    sys.modules["torchvision"].__version__ = "0.0.0"
    sys.modules["torchvision"].disable_beta_transforms_warning = lambda: None


_LOADED = False


def load_engine():
    global _LOADED
    if _LOADED:
        return
    install_stand_ins()
    if SRC not in sys.path:
        sys.path.insert(0, SRC)
    eng = types.ModuleType("engine")
    eng.__path__ = [os.path.join(SRC, "engine")]
    sys.modules["engine"] = eng
    data = _stub("engine.data")
    data.__path__ = []
    for sub in ["engine.core", "engine.backbone", "engine.deim"]:
        importlib.import_module(sub)
    _LOADED = True


def build(preset, overrides=None):
    """Build the original DEIM model for a preset (eval mode), clearing the load_config default."""
    load_engine()
    from engine.core import YAMLConfig, yaml_utils

    yaml_utils.load_config.__defaults__[0].clear()
    kw = {"HGNetv2": {"pretrained": False}, "DINOv3STAs": {"weights_path": None}}
    if overrides:
        for k, v in overrides.items():
            if isinstance(v, dict):
                kw.setdefault(k, {}).update(v)
            else:
                kw[k] = v
    cwd = os.getcwd()
    os.chdir(SRC)
    try:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            cfg = YAMLConfig(CFG[preset], **kw)
            model = cfg.model
    finally:
        os.chdir(cwd)
    yaml_utils.load_config.__defaults__[0].clear()
    return model.eval(), cfg
