"""Make a VidEoMT end-to-end golden case (spec §9) by running the ORIGINAL code (reference runs only).

The original ``videomt_online`` meta-architecture is run in eval on raw frames (one video, online, one
backbone call per frame as the released evaluation: ``WINDOW_INFERENCE`` with ``WINDOW_SIZE`` 1), then its
three post-processings (VIS, VSS, VPS with the given thresholds and once more with relaxed ones) on the same
weights. detectron2, torchvision, scipy and matplotlib are replaced by import-only stand-ins; the only
stand-in that computes is ``ImageList.from_tensors`` (zero padding to a multiple of ``size_divisibility``).

Run it in a separate environment holding torch, timm 1.0.20 and einops (never the project's .venv):

    git -C <mirror> archive HEAD videomt | tar -x -C <videomt-src>   # tue-mps/videomt at 39411e9
    <original-venv>/bin/python tools/videomt_original/make_end_to_end_case.py \
        --src <videomt-src> --out tests/fixtures/videomt/e2e_dinov2_micro_s0_t3 --seed 0
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

COMMIT = "39411e940499f34f54d7c9f031a34111bab190d6"
TIMM_NAME = "vit_small_patch14_reg4_dinov2"
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


# ----------------------------------------------------------------------------------------- stand-ins
def _raiser(name: str):
    def call(*args, **kwargs):
        raise RuntimeError(f"stand-in {name} called")

    return call


class _StubMeta(type):
    """Stand-in classes answer any class attribute (enum members such as ``InterpolationMode.NEAREST``)."""

    def __getattr__(cls, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return f"{cls.__name__}.{attr}"


def _stub(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr[:1].isupper():
            return _StubMeta(attr, (), {"__init__": _raiser(f"{name}.{attr}")})
        return _raiser(f"{name}.{attr}")

    module.__getattr__ = __getattr__
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


class _Registry:
    def __init__(self) -> None:
        self.items: dict[str, type] = {}

    def register(self):
        def wrap(cls):
            self.items[cls.__name__] = cls
            return cls

        return wrap


class _ImageList:
    """detectron2's ``ImageList.from_tensors``: zero-pad every image bottom/right to a common size that is a
    multiple of ``size_divisibility``; ``image_sizes`` are the unpadded sizes."""

    def __init__(self, tensor: torch.Tensor, image_sizes: list[tuple[int, int]]) -> None:
        self.tensor, self.image_sizes = tensor, image_sizes

    @classmethod
    def from_tensors(cls, tensors, size_divisibility: int = 0, pad_value: float = 0.0):
        sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        height, width = max(s[0] for s in sizes), max(s[1] for s in sizes)
        if size_divisibility > 1:
            height = -(-height // size_divisibility) * size_divisibility
            width = -(-width // size_divisibility) * size_divisibility
        padded = [
            F.pad(t, (0, width - t.shape[-1], 0, height - t.shape[-2]), value=pad_value) for t in tensors
        ]
        return cls(torch.stack(padded).contiguous(), sizes)


def install_stand_ins() -> None:
    for name in [
        "torchvision", "torchvision.ops", "torchvision.ops.misc", "torchvision.transforms",
        "torchvision.transforms.functional", "torchvision.transforms.v2", "torchvision.transforms.v2.functional",
        "torchvision.models", "torchvision.models.feature_extraction", "torchvision.datasets", "torchvision.io",
        "torchvision.utils", "scipy", "scipy.optimize", "matplotlib", "matplotlib.pyplot", "matplotlib.colors",
        "matplotlib.patches", "detectron2", "detectron2.config", "detectron2.data", "detectron2.modeling",
        "detectron2.modeling.backbone", "detectron2.structures", "detectron2.utils", "detectron2.utils.comm",
        "detectron2.projects", "detectron2.projects.point_rend", "detectron2.projects.point_rend.point_features",
        "transformers",
    ]:  # fmt: skip
        _stub(name)
    sys.modules["torchvision"].__version__ = "0.0.0"
    sys.modules["torchvision"]._is_tracing = lambda: False
    sys.modules["detectron2.config"].configurable = lambda init: init  # explicit keyword arguments only
    modeling = sys.modules["detectron2.modeling"]
    modeling.META_ARCH_REGISTRY, modeling.BACKBONE_REGISTRY = _Registry(), _Registry()
    modeling.Backbone = sys.modules["detectron2.modeling.backbone"].Backbone = type(
        "Backbone", (torch.nn.Module,), {}
    )
    sys.modules["detectron2.structures"].ImageList = _ImageList
    sys.modules["detectron2.utils.comm"].get_world_size = lambda: 1


def load_original(src: str):
    """The original backbone and meta-architecture modules, without the package's data-loading imports."""
    install_stand_ins()
    package = types.ModuleType("videomt")
    package.__path__ = [os.path.join(src, "videomt")]
    sys.modules["videomt"] = package
    backbone = importlib.import_module("videomt.modeling.backbone.videomt")
    meta = importlib.import_module("videomt.videomt")
    vit = importlib.import_module("videomt.modeling.backbone.vit")
    return backbone, meta, vit


# --------------------------------------------------------------------------------------------- model
def tiny_cfg(args) -> SimpleNamespace:
    backbone = SimpleNamespace(
        IMG_SIZE=args.img_size, NUM_OBJECT_QUERIES=args.queries, NUM_CLASSES=args.classes, MODEL_NAME=TIMM_NAME,
        SEGMENTER_BLOCKS=list(range(args.depth - args.query_blocks, args.depth)), FUSED_QKV=False,
        NORM_QUERIES=False,
    )  # fmt: skip
    return SimpleNamespace(
        MODEL=SimpleNamespace(BACKBONE=backbone), INPUT=SimpleNamespace(SAMPLING_FRAME_NUM=5)
    )


def build_backbone(backbone_module, vit_module, cfg, args):
    """The original ``VidEoMT`` backbone; timm builds the named model with tiny overrides, no download."""
    import timm

    real_create = timm.create_model

    def create_model(name, pretrained=False, **kwargs):
        return real_create(name, pretrained=False, embed_dim=args.dim, depth=args.depth, num_heads=args.heads,
                           **kwargs)  # fmt: skip

    vit_module.timm.create_model = create_model
    try:
        return backbone_module.VidEoMT(cfg, None)
    finally:
        vit_module.timm.create_model = real_create


def redraw(model: torch.nn.Module, seed: int, class_gain: float) -> None:
    """Re-draw every parameter (in ``named_parameters`` order) so the case is non-trivial."""
    g = torch.Generator().manual_seed(seed)

    def normal(shape, std=1.0, mean=0.0):
        return torch.randn(shape, generator=g) * std + mean

    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if name.endswith(("gamma", "ls1.gamma", "ls2.gamma")):
                p.copy_(normal(p.shape, 0.1, 0.4))
            elif "norm" in name and leaf == "weight":
                p.copy_(normal(p.shape, 0.1, 1.0))
            elif leaf == "bias":
                p.copy_(normal(p.shape, 0.05))
            elif name.endswith("pos_embed"):
                p.copy_(normal(p.shape, 0.5))
            elif name.endswith(("cls_token", "reg_token", "q.weight")):
                p.copy_(normal(p.shape))
            elif p.ndim == 4 and "conv1" in name:  # ConvTranspose2d [in, out, k, k]
                p.copy_(normal(p.shape, p.shape[0] ** -0.5))
            elif p.ndim >= 2:
                gain = class_gain if name.startswith("class_head") else 1.0
                p.copy_(normal(p.shape, gain * (p[0].numel()) ** -0.5))
            else:
                raise ValueError(f"no redraw rule for {name}")


def make_frames(
    seed: int, frames: int, original_hw: tuple[int, int], resized_hw: tuple[int, int]
) -> torch.Tensor:
    """Smooth random RGB video at the original size, resized as detectron2's test ResizeShortestEdge does
    (PIL bilinear on uint8): (T, 3, h, w) uint8."""
    from PIL import Image

    g = torch.Generator().manual_seed(10000 + seed)
    coarse = torch.rand(frames, 3, 5, 7, generator=g) * 255
    video = F.interpolate(coarse, size=original_hw, mode="bicubic", align_corners=False)
    video = (video + torch.randn(video.shape, generator=g) * 12).clamp(0, 255).round().to(torch.uint8)
    resized = []
    for frame in video:
        pil = Image.fromarray(frame.permute(1, 2, 0).numpy())
        pil = pil.resize((resized_hw[1], resized_hw[0]), resample=Image.BILINEAR)
        resized.append(torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1))
    return torch.stack(resized)


def build_meta(meta_module, backbone, args, things: int):
    return meta_module.videomt_online(
        backbone=backbone, img_size=args.img_size, criterion=None, num_queries=args.queries,
        object_mask_threshold=args.object_threshold, overlap_threshold=args.overlap_threshold,
        metadata=SimpleNamespace(thing_dataset_id_to_contiguous_id={i: i for i in range(things)}),
        size_divisibility=32, sem_seg_postprocess_before_inference=True, pixel_mean=MEAN, pixel_std=STD,
        num_frames=5, window_inference=True, max_num=args.max_num, max_iter_num=1, window_size=1, task="vis",
    ).eval()  # fmt: skip


# ------------------------------------------------------------------------------------------------ run
def run_case(meta, frames: torch.Tensor, output_hw: tuple[int, int], args) -> tuple[dict, dict]:
    """One forward per post-processing; records the padded input and the logits the post-processing reads."""
    seen: dict[str, torch.Tensor] = {}
    real_window, real_post = meta.run_window_inference, meta.post_processing

    def window(images, window_size=30):
        seen["padded_pixel_values"] = images.clone()
        return real_window(images, window_size=window_size)

    def post(outputs, aux_logits=None):
        seen["class_logits"] = outputs["pred_logits"].clone()
        seen["mask_logits"] = outputs["pred_masks"].clone()
        result = real_post(outputs)
        seen["video_class_logits"] = result["pred_logits"][0].clone()
        return result

    meta.run_window_inference, meta.post_processing = window, post
    video = [{"image": list(frames), "height": output_hw[0], "width": output_hw[1]}]
    results = {}
    settings = [
        ("vis", meta.inference_video_vis, args.object_threshold, args.overlap_threshold),
        ("vss", meta.inference_video_vss, args.object_threshold, args.overlap_threshold),
        ("vps", meta.inference_video_vps, args.object_threshold, args.overlap_threshold),
        (
            "vps_relaxed",
            meta.inference_video_vps,
            args.relaxed_object_threshold,
            args.relaxed_overlap_threshold,
        ),
    ]
    with torch.no_grad():
        for name, function, object_threshold, overlap_threshold in settings:
            meta.inference_video_task = function
            meta.object_mask_threshold, meta.overlap_threshold = object_threshold, overlap_threshold
            results[name] = meta(video)
    return results, seen


def tensors_of(results: dict, seen: dict, classes: int) -> dict[str, torch.Tensor]:
    vis = results["vis"]
    scores = torch.tensor(vis["pred_scores"], dtype=torch.float32)
    labels = torch.tensor(vis["pred_labels"], dtype=torch.int64)
    queries = torch.tensor(vis["pred_ids"], dtype=torch.int64)
    canonical = np.lexsort(((queries * classes + labels).numpy(), -scores.numpy()))
    out = {name: seen[name].contiguous() for name in ("padded_pixel_values", "mask_logits", "class_logits")}
    out["padded_pixel_values"] = out["padded_pixel_values"]  # (T, 3, Hp, Wp): the frames of one video
    out["video_class_logits"] = seen["video_class_logits"].contiguous()
    out.update(vis_scores=scores, vis_labels=labels, vis_query_ids=queries,
               vis_masks=torch.stack(vis["pred_masks"]).bool(),
               vis_canonical_order=torch.from_numpy(canonical.astype(np.int64)),
               vss_semseg=results["vss"]["pred_masks"].to(torch.int64))  # fmt: skip
    for name in ("vps", "vps_relaxed"):
        out[f"{name}_panoptic"] = results[name]["pred_masks"].to(torch.int32)
        out[f"{name}_query_ids"] = torch.tensor(
            [int(i) for i in results[name]["pred_ids"]], dtype=torch.int64
        )
    return out


def scalar_results(results: dict) -> dict:
    vis = results["vis"]
    scalars = {"vis": {"pred_scores": vis["pred_scores"], "pred_labels": vis["pred_labels"],
                       "pred_ids": [int(i) for i in vis["pred_ids"]], "image_size": list(vis["image_size"])}}  # fmt: skip
    for name in ("vps", "vps_relaxed"):
        scalars[name] = {
            "segments_infos": results[name]["segments_infos"],
            "pred_ids": [int(i) for i in results[name]["pred_ids"]],
            "image_size": list(results[name]["image_size"]),
        }
    return scalars


def describe(tensors: dict[str, torch.Tensor]) -> list[dict]:
    meaning = {
        "padded_pixel_values": "(T, 3, Hp, Wp) frames after (x - mean) / std and zero padding to a multiple of 32",
        "mask_logits": "per-frame mask logits 'b q t h w' (stride 4 of the padded frames)",
        "class_logits": "per-frame class logits 'b t q c' (last = no object)",
        "video_class_logits": "(Q, K+1) mean over frames of the class logits",
        "vis_scores": "VIS top-MAX_NUM scores in the original topk(sorted=False) order",
        "vis_labels": "VIS labels, same order",
        "vis_query_ids": "VIS query slots (track ids), same order",
        "vis_masks": "(K, T, height, width) bool, resized logits > 0",
        "vis_canonical_order": "indices sorting the VIS results by (-score, query * K + label)",
        "vss_semseg": "(T, height, width) class map",
        "vps_panoptic": "(T, height, width) int32 segment ids (0 = void), test_settings thresholds",
        "vps_query_ids": "query slot of each VPS segment, in segment-id order",
        "vps_relaxed_panoptic": "as vps_panoptic with the relaxed_vps thresholds",
        "vps_relaxed_query_ids": "as vps_query_ids with the relaxed_vps thresholds",
    }
    return [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""), "meaning": meaning[k]}
            for k, v in tensors.items()]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True, help="extracted tue-mps/videomt tree holding videomt/")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--original-hw", type=int, nargs=2, default=(40, 60))
    p.add_argument("--resized-hw", type=int, nargs=2, default=(56, 84))
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--query-blocks", type=int, default=2)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--queries", type=int, default=10)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--things", type=int, default=2)
    p.add_argument("--class-gain", type=float, default=4.0)
    p.add_argument("--max-num", type=int, default=6)
    p.add_argument("--object-threshold", type=float, default=0.8)
    p.add_argument("--overlap-threshold", type=float, default=0.8)
    p.add_argument("--relaxed-object-threshold", type=float, default=0.3)
    p.add_argument("--relaxed-overlap-threshold", type=float, default=0.3)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    backbone_module, meta_module, vit_module = load_original(args.src)
    cfg = tiny_cfg(args)
    backbone = build_backbone(backbone_module, vit_module, cfg, args)
    redraw(backbone, args.seed, args.class_gain)
    meta = build_meta(meta_module, backbone, args, args.things)
    frames = make_frames(args.seed, args.frames, tuple(args.original_hw), tuple(args.resized_hw))
    results, seen = run_case(meta, frames, tuple(args.original_hw), args)
    tensors = tensors_of(results, seen, args.classes)

    from safetensors.torch import save_file

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in meta.state_dict().items() if not k.startswith("criterion.")}
    torch.save({"model": state}, out / "checkpoint.pth")
    save_file({"frames_uint8": frames.contiguous()}, str(out / "inputs.safetensors"))
    save_file(tensors, str(out / "outputs.safetensors"))
    padded = tuple(seen["padded_pixel_values"].shape[-2:])
    case = {
        "case": out.name,
        "kind": "end-to-end",
        "description": "Tiny VidEoMT (random weights) run end to end by the ORIGINAL videomt_online meta-architecture "
        "(eval, float32, CPU, one backbone call per frame) on raw resized frames, then its VIS, VSS and VPS "
        "post-processings (VPS twice: test_settings and relaxed_vps thresholds).",
        "original_repo": "tue-mps/videomt",
        "original_commit": COMMIT,
        "generator": "tools/videomt_original/make_end_to_end_case.py",
        "seed": args.seed,
        "config": {
            "MODEL_NAME": TIMM_NAME, "IMG_SIZE": args.img_size, "NUM_OBJECT_QUERIES": args.queries,
            "NUM_CLASSES": args.classes, "SEGMENTER_BLOCKS": cfg.MODEL.BACKBONE.SEGMENTER_BLOCKS,
            "NORM_QUERIES": False, "SIZE_DIVISIBILITY": 32, "PIXEL_MEAN": MEAN, "PIXEL_STD": STD,
            "embed_dim": args.dim, "depth": args.depth, "num_heads": args.heads, "patch_size": [16, 16],
            "num_register_tokens": 4, "layer_norm_eps": 1e-6, "pos_embed_grid": [args.img_size // 16] * 2,
        },  # fmt: skip
        "test_settings": {
            "MAX_NUM": args.max_num,
            "OBJECT_MASK_THRESHOLD": args.object_threshold,
            "OVERLAP_THRESHOLD": args.overlap_threshold,
            "num_thing_classes_for_vps": args.things,
            "relaxed_vps": {
                "OBJECT_MASK_THRESHOLD": args.relaxed_object_threshold,
                "OVERLAP_THRESHOLD": args.relaxed_overlap_threshold,
            },
            "WINDOW_INFERENCE": True,
            "WINDOW_SIZE": 1,
        },
        "frames": args.frames,
        "resized_hw": list(args.resized_hw),
        "padded_hw": list(padded),
        "output_hw": list(args.original_hw),
        "postprocessing": scalar_results(results),
        "stand_ins": {
            "detectron2": "import-only stand-ins (configurable = identity with explicit keyword arguments, "
            "registries, Backbone = nn.Module, get_world_size = 1); ImageList.from_tensors re-implemented "
            "(zero padding bottom/right to a multiple of size_divisibility)",
            "torchvision, scipy, matplotlib, transformers (DINOv3 only)": "import-only stand-ins; never called",
            "pretrained_weights": "timm.create_model(..., pretrained=False) with embed_dim/depth/num_heads "
            "overrides; every parameter re-drawn from the seed",
            "frames": "smooth random video at output_hw, resized to resized_hw with PIL bilinear on uint8 "
            "(what detectron2's ResizeShortestEdge transform does at test time)",
        },
        "environment": {"torch": torch.__version__, "timm": importlib.import_module("timm").__version__,
                        "device": "cpu", "dtype": "float32", "torch_num_threads": 1},  # fmt: skip
        "tolerances": {
            "suggested_port_float32": {"atol": 1e-5, "rtol": 1e-4, "note": "logits; scores 1e-6; binary masks "
                                       "may differ only where the logit is within round-off of 0; id maps exact"},
        },  # fmt: skip
        "inputs": [{"name": "frames_uint8", "shape": list(frames.shape), "dtype": "uint8",
                    "meaning": "(T, 3, h, w) RGB frames of one video after ResizeShortestEdge (no batch axis)"}],
        "outputs": describe(tensors),
    }  # fmt: skip
    (out / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    summary = {k: v for k, v in case["postprocessing"].items()}
    print(json.dumps(summary, indent=None)[:2000])


if __name__ == "__main__":
    main()
