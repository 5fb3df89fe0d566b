"""Golden DEIMv2 evaluation cases from the ORIGINAL code (batch > 1, raw images, float32 + float64).

DEIMV2_SRC=<checkout of the original at 0fff8d4> OUT=<folder> python make_eval_cases.py [--dump DIR]
Builds the original model (reduced widths), re-draws its weights from a seed (the rules written to
case.json), calibrates BatchNorm statistics, and runs eval forward + PostProcessor on synthetic 8-bit images
in float32 and with ``model.double()``. ``--dump`` also saves every captured float64 intermediate (debugging).
Made tests/fixtures/deimv2/dinov3_m_tiny_s0_b2_128.
"""

import argparse
import ast
import copy
import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
import original_build as ob  # noqa: E402

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
BOX_LAST = ("enc_bbox_head.layers.2", "pre_bbox_head.layers.2", "dec_bbox_head.")
FLOAT64_NAMES = ["pred_logits", "pred_boxes", "decoder.enc_topk_bbox_unact", "post.boxes", "post.scores",
                 "decoder.enc_topk_index", "post.labels", "post.labels_coco_category"]  # fmt: skip


def coco_label_to_category() -> dict[int, int]:
    """mscoco_label2category of the original, read from its source (the data package is not importable)."""
    text = (Path(ob.SRC) / "engine/data/dataset/coco_dataset.py").read_text()
    tree = ast.parse(text)
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else None
        if isinstance(target, ast.Name) and target.id == "mscoco_category2name":
            return dict(
                enumerate(ast.literal_eval(node.value))
            )  # label i <-> i-th category (insertion order)
    raise RuntimeError("mscoco_category2name not found")


def redraw(model: torch.nn.Module, seed: int) -> None:
    """Re-draw every floating parameter (rules as in the visible cases' case.json weight_redraw)."""
    g = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    keep = ("decoder.up", "decoder.reg_scale", "decoder.decoder.up", "decoder.decoder.reg_scale")
    for name, t in model.state_dict().items():
        if not t.is_floating_point() or name in keep or "anchors" in name or "num_points_scale" in name:
            continue
        if "rope_embed.periods" in name:
            continue
        owner, _, leaf = name.rpartition(".")
        mod = modules.get(owner)
        kind = type(mod).__name__
        shape = t.shape
        if kind == "Conv2d" and leaf == "weight":
            fan_in = shape[1] * shape[2] * shape[3]
            new = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        elif kind in ("Linear", "NonDynamicallyQuantizableLinear") and leaf == "weight":
            std = 3.0 if any(k in name for k in BOX_LAST) and owner.endswith("layers.2") else 1.0
            new = torch.randn(shape, generator=g) * std / math.sqrt(shape[1])
        elif kind == "MultiheadAttention" and leaf == "in_proj_weight":
            new = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        elif leaf in ("bias", "in_proj_bias") and kind not in ("BatchNorm2d", "SyncBatchNorm", "LayerNorm"):
            new = torch.randn(shape, generator=g) * 0.05
        elif kind in ("BatchNorm2d", "SyncBatchNorm"):
            if leaf == "running_var":
                new = 0.5 + torch.rand(shape, generator=g)
            else:
                scale, shift = {"weight": (0.1, 1.0), "bias": (0.05, 0.0), "running_mean": (0.1, 0.0)}[leaf]
                new = shift + scale * torch.randn(shape, generator=g)
        elif kind == "LayerNorm":
            new = (
                1 + 0.1 * torch.randn(shape, generator=g)
                if leaf == "weight"
                else 0.05 * torch.randn(shape, generator=g)
            )
        elif kind == "RMSNorm":
            new = 1 + 0.1 * torch.randn(shape, generator=g)
        elif leaf in ("cls_token", "storage_tokens", "mask_token") or kind == "Embedding":
            new = torch.randn(shape, generator=g)
        else:
            raise RuntimeError(f"no re-draw rule for {name} ({kind})")
        t.copy_(new)


def calibrate_batchnorm(model: torch.nn.Module, images: torch.Tensor, seed: int) -> None:
    """running stats from the statistics of each BatchNorm's input in one eval forward (see case.json)."""
    g = torch.Generator().manual_seed(seed)

    def pre_hook(module, args):
        x = args[0].detach()
        mean = x.mean((0, 2, 3))
        std = x.std((0, 2, 3))
        module.running_mean.copy_(mean + 0.1 * torch.randn(mean.shape, generator=g) * std)
        var = x.var((0, 2, 3))
        module.running_var.copy_(var * (0.5 + torch.rand(var.shape, generator=g)) + 1e-3)

    hooks = [m.register_forward_pre_hook(pre_hook) for m in model.modules()
             if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm))]  # fmt: skip
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()


def synth_images(batch: int, h: int, w: int, seed: int) -> torch.Tensor:
    """uint8 [B, 3, H, W]: smooth random blobs plus noise (different per image)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, h // 16, w // 16, generator=g)
    smooth = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    noisy = (0.8 * smooth + 0.2 * torch.rand(batch, 3, h, w, generator=g)).clamp(0, 1)
    return (noisy * 255).round().to(torch.uint8)


def normalise(images: torch.Tensor) -> torch.Tensor:
    x = images.float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def capture(model: torch.nn.Module, pixel_values: torch.Tensor, sizes: torch.Tensor, label2cat) -> dict:
    """One eval forward with the tensors the visible S case records, plus PostProcessor outputs."""
    out: dict[str, torch.Tensor] = {}
    hooks = []
    bb, dec = model.backbone, model.decoder

    def keep_vit(m, a, layers):
        for idx, (p, c) in zip(bb.interaction_indexes, layers, strict=True):
            out[f"backbone.vit.layer{idx}.patch_tokens"], out[f"backbone.vit.layer{idx}.cls_token"] = p, c

    hooks.append(bb.dinov3.register_forward_hook(keep_vit))
    hooks.append(
        bb.sta.register_forward_hook(
            lambda m, a, o: out.update({f"backbone.sta.{i}": t for i, t in enumerate(o)})
        )
    )
    hooks.append(
        bb.register_forward_hook(
            lambda m, a, o: out.update({f"backbone.feat.{i}": t for i, t in enumerate(o)})
        )
    )
    hooks.append(
        model.encoder.register_forward_hook(
            lambda m, a, o: out.update({f"encoder.feat.{i}": t for i, t in enumerate(o)})
        )
    )
    hooks.append(
        dec.enc_score_head.register_forward_hook(
            lambda m, a, o: out.setdefault("decoder.enc_outputs_logits", o)
        )
    )
    hooks.append(
        dec.pre_bbox_head.register_forward_hook(lambda m, a, o: out.setdefault("decoder.pre_bbox_head", o))
    )
    for i, layer in enumerate(dec.decoder.layers):
        hooks.append(
            layer.register_forward_hook(lambda m, a, o, i=i: out.setdefault(f"decoder.layer{i}.hidden", o))
        )
    original = dec._get_decoder_input

    def get_input(*a, **k):
        content, unact, *rest = original(*a, **k)
        out["decoder.enc_topk_content"], out["decoder.enc_topk_bbox_unact"] = content, unact
        return (content, unact, *rest)

    dec._get_decoder_input = get_input
    try:
        with torch.no_grad():
            res = model(pixel_values)
    finally:
        del dec._get_decoder_input
        for h in hooks:
            h.remove()
    out["pred_logits"], out["pred_boxes"] = res["pred_logits"], res["pred_boxes"]
    out["decoder.enc_topk_index"] = torch.topk(
        out["decoder.enc_outputs_logits"].max(-1).values, dec.num_queries, dim=-1
    )[1]
    from engine.deim.postprocessor import PostProcessor

    post = PostProcessor(num_classes=80, use_focal_loss=True, num_top_queries=300).deploy()
    labels, boxes, scores = post({k: v.clone() for k, v in res.items()}, sizes)
    out["post.labels"], out["post.boxes"], out["post.scores"] = labels, boxes, scores
    out["post.flat_index"] = torch.topk(res["pred_logits"].sigmoid().flatten(1), 300, dim=-1)[1]
    out["post.labels_coco_category"] = torch.tensor([label2cat[int(x)] for x in labels.flatten()]).reshape(
        labels.shape
    )
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def post_noise(f32: dict, f64: dict) -> dict[str, float]:
    """float32-vs-float64 noise of the detections after matching them by (query, class) (order may differ)."""
    perms = []
    for a, b in zip(f32["post.flat_index"], f64["post.flat_index"], strict=True):
        position = {int(v): i for i, v in enumerate(a)}
        if set(position) != {int(v) for v in b}:
            raise RuntimeError("float32 and float64 select different detections: choose another draw seed")
        perms.append(torch.tensor([position[int(v)] for v in b]))
    perm = torch.stack(perms)
    boxes = f32["post.boxes"].gather(1, perm[..., None].expand(-1, -1, 4))
    scores = f32["post.scores"].gather(1, perm)
    return {"post.boxes": float((boxes.double() - f64["post.boxes"]).abs().max()),
            "post.scores": float((scores.double() - f64["post.scores"]).abs().max())}  # fmt: skip


def make_case(name: str, preset: str, overrides: dict, batch: int, hw: tuple[int, int], seed: int,
              draw_seed: int, out_dir: Path, dump: Path | None) -> None:  # fmt: skip
    model, _ = ob.build(preset, overrides)
    redraw(model, draw_seed)
    calib = normalise(synth_images(2, *hw, seed=777))
    calibrate_batchnorm(model, calib, 50000 + draw_seed)
    images = synth_images(batch, *hw, seed=10000 + seed)
    g = torch.Generator().manual_seed(20000 + seed)
    sizes = torch.stack(
        [torch.randint(200, 1400, (batch,), generator=g), torch.randint(200, 1400, (batch,), generator=g)], 1
    )
    pixel_values = normalise(images)
    label2cat = coco_label_to_category()
    f32 = capture(model, pixel_values, sizes, label2cat)
    f64 = capture(copy.deepcopy(model).double(), pixel_values.double(), sizes, label2cat)
    per_image = [capture(copy.deepcopy(model).double(), pixel_values[i : i + 1].double(), sizes[i : i + 1], label2cat)
                 for i in range(batch)]  # fmt: skip
    batch_vs_single = max(
        float((f64[k][i] - p[k][0]).abs().max())
        for i, p in enumerate(per_image)
        for k in ("pred_logits", "pred_boxes")
    )
    noise = {
        k: float((f32[k].double() - f64[k].double()).abs().max()) for k in f32 if f32[k].is_floating_point()
    }
    noise.update(post_noise(f32, f64))
    for d in (f32, f64):
        d.pop("post.flat_index")
    round_up = lambda v: float(f"{math.ceil(float(f'{v:.1e}'.split('e')[0]))}e{f'{v:.1e}'.split('e')[1]}")  # noqa: E731
    tol32 = {k: round_up(max(1e-5, 10 * v)) for k, v in noise.items()}
    tol64 = {k: round_up(max(1e-8, 1e-3 * noise[k])) for k in FLOAT64_NAMES if k in noise}
    d = out_dir / name
    d.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, d / "checkpoint.pth")
    save_file({"pixel_values": pixel_values.contiguous(), "orig_target_sizes": sizes.contiguous(),
               "image_uint8": images.contiguous()}, str(d / "inputs.safetensors"))  # fmt: skip
    save_file(f32, str(d / "outputs.safetensors"))
    save_file({k: f64[k] for k in FLOAT64_NAMES}, str(d / "outputs_float64.safetensors"))
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        save_file(f64, str(dump / f"{name}_float64_all.safetensors"))
    _, cfg = ob.build(preset, overrides)
    case = {
        "case": name,
        "description": f"DEIMv2 {preset.upper()} (reduced widths) built with the original code (eval mode), weights re-drawn from the seed, batch {batch} of different synthetic images and orig_target_sizes; eval forward = model(pixel_values), then PostProcessor(outputs, orig_target_sizes) (deploy mode for labels/boxes/scores; labels mapped with mscoco_label2category for post.labels_coco_category).",
        "variant": preset,
        "original_repo": "Intellindust-AI-Lab/DEIMv2",
        "original_commit": "0fff8d4dcdc272e6cf2d84be31399db471357941",
        "original_yml": ob.CFG[preset],
        "generator": "tools/deimv2_original/make_eval_cases.py",
        "seed": seed,
        "draw_seed": draw_seed,
        "yml_overrides": overrides,
        "reduced": True,
        "config": copy.deepcopy(cfg.yaml_cfg),
        "batch": batch,
        "input_hw": list(hw),
        "preprocessing": {
            "image_uint8": "synthetic uint8 RGB images at the network size [B,3,H,W]",
            "pixel_values": "image_uint8 / 255, then (x - mean) / std with ImageNet mean/std (float32)",
            "normalize": {"mean": MEAN, "std": STD, "applied": True},
        },  # fmt: skip
        "weight_redraw": "as in the visible cases' case.json (Conv/Linear N(0, 1/fan_in), last box-MLP layers x3, biases N(0, 0.05^2), norms 1+N(0, 0.1^2) / N(0, 0.05^2), tokens N(0,1)), then BatchNorm calibration on 2 synthetic images (seed 777, generator 50000+draw_seed)",
        "inputs": {
            "pixel_values": {
                "shape": list(pixel_values.shape),
                "dtype": "float32",
                "meaning": "preprocessed image batch",
            },
            "orig_target_sizes": {
                "shape": list(sizes.shape),
                "dtype": "int64",
                "meaning": "(width, height) per image",
            },
            "image_uint8": {
                "shape": list(images.shape),
                "dtype": "uint8",
                "meaning": "raw images the pixel_values come from",
            },
        },
        "outputs": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in f32.items()
        },
        "outputs_float64": {"file": "outputs_float64.safetensors", "tensors": FLOAT64_NAMES},
        "tolerance": {
            "float32": {
                "file": "outputs.safetensors",
                "rtol": 0.0,
                "per_tensor_atol": tol32,
                "rule": "atol = max(1e-5, 10 x the original's own max |float32 - float64|), rounded up",
            },
            "float64": {
                "file": "outputs_float64.safetensors",
                "rtol": 0.0,
                "per_tensor_atol": tol64,
                "rule": "atol = max(1e-8, 1e-3 x that difference)",
            },
        },  # fmt: skip
        "checks": {
            "float32_vs_float64_max_abs_diff": noise,
            "float64_batch_vs_per_image_max_abs_diff": batch_vs_single,
            "post_order_same_in_float32_and_float64": bool(
                torch.equal(f32["post.labels"], f64["post.labels"])
            ),
            "enc_topk_same_in_float32_and_float64": bool(
                torch.equal(f32["decoder.enc_topk_index"], f64["decoder.enc_topk_index"])
            ),
        },
        "environment": {"torch": torch.__version__, "torch_num_threads": torch.get_num_threads()},
    }
    (d / "case.json").write_text(json.dumps(case, indent=1))
    print(name, "batch-vs-single", batch_vs_single, "enc topk same", case["checks"]["enc_topk_same_in_float32_and_float64"],
          "post same", case["checks"]["post_order_same_in_float32_and_float64"])  # fmt: skip


M_TINY = {
    "DINOv3STAs": {"weights_path": None, "embed_dim": 32, "num_heads": 4, "hidden_dim": 32},
    "HybridEncoder": {"in_channels": [32, 32, 32], "hidden_dim": 32, "dim_feedforward": 64},
    "DEIMTransformer": {"feat_channels": [32, 32, 32], "hidden_dim": 32, "dim_feedforward": 64},
    "eval_spatial_size": [128, 128],
}

NAME = "dinov3_m_tiny_s0_b2_128"

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dump", type=Path, default=None)
    parser.add_argument("--draw-seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out = Path(os.environ.get("OUT", "eval_cases"))
    make_case(NAME, "m", M_TINY, 2, (128, 128), 0, args.draw_seed, out, args.dump)
    if os.environ.get("COPY_TO"):
        shutil.copytree(out / NAME, Path(os.environ["COPY_TO"]) / NAME, dirs_exist_ok=True)
