"""Golden VidEoMT training-loss cases from the ORIGINAL code (reference runs only).

The original ``videomt_online`` meta-architecture is run in train() mode on one 5-frame clip with ground-truth
tracks (its own ``prepare_targets`` / ``frame_decoder_loss_reshape``), then its ``VideoSetCriterion`` with the
``VideoHungarianMatcher_Consistent`` and the released loss settings; the weighted terms it returns (the last
deep-supervision prediction has no weight and is dropped, as in the original) are the case's outputs. The run
is repeated in float64 (the criterion's buffers stay float32: the original casts class logits and matching
costs to float32 itself). The point samplers are detectron2's real ``point_features.py``, read from a
detectron2 checkout at run time; the other detectron2 / torchvision / matplotlib imports are import-only
stand-ins (see make_end_to_end_case.py); scipy is the real one (Hungarian matching).

Run it in a separate environment holding torch, timm 1.0.20, einops and scipy (never the project's .venv):

    git -C <mirror of tue-mps/videomt> archive 39411e9 videomt | tar -x -C <videomt-src>
    <original-venv>/bin/python tools/videomt_original/make_loss_cases.py --src <videomt-src> \
        --detectron2 <bare git dir of facebookresearch/detectron2> --out tests/fixtures/videomt
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import make_end_to_end_case as e2e  # noqa: E402

DETECTRON2_COMMIT = "02b5c4e295e990042a714712c21dc79b731e8833"
NUM_POINTS, OVERSAMPLE, IMPORTANCE = 12544, 3.0, 0.75
CLASS_WEIGHT, MASK_WEIGHT, DICE_WEIGHT, NO_OBJECT_WEIGHT = 2.0, 5.0, 5.0, 0.1
FRAMES = 5

CASES = {
    # name: model size, queries/classes, clip size, tracks, seeds
    "loss_dinov2_tiny_s0_t5": dict(dim=32, depth=3, heads=2, query_blocks=2, img_size=64, queries=10, classes=5,
                                   hw=(56, 84), tracks=4, seed=0, train_seed=3),
    "loss_dinov2_tiny_s1_qb3": dict(dim=32, depth=4, heads=2, query_blocks=3, img_size=96, queries=12, classes=7,
                                    hw=(64, 64), tracks=6, seed=1, train_seed=11),
}  # fmt: skip


def install_point_features(detectron2_git: str) -> None:
    """detectron2's own point_features.py (its ``cat`` is ``torch.cat``), executed as the module the original
    imports."""
    source = subprocess.run(
        ["git", f"--git-dir={detectron2_git}", "show", f"{DETECTRON2_COMMIT}:projects/PointRend/point_rend/point_features.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    layers = e2e._stub("detectron2.layers")
    layers.cat = lambda tensors, dim=0: torch.cat(list(tensors), dim=dim)
    layers.shapes_to_tensor = lambda shapes, device=None: torch.as_tensor(shapes, device=device)
    module = types.ModuleType("detectron2.projects.point_rend.point_features")
    exec(compile(source, "point_features.py", "exec"), module.__dict__)
    sys.modules[module.__name__] = module


def use_real_scipy() -> None:
    for name in [n for n in sys.modules if n == "scipy" or n.startswith("scipy.")]:
        del sys.modules[name]
    import scipy.optimize  # noqa: F401


class Instances:
    """What the original's ``prepare_targets`` reads of detectron2's ``Instances`` for one frame."""

    def __init__(self, image_size, gt_ids, gt_masks, gt_classes):
        self.image_size, self.gt_ids, self.gt_masks, self.gt_classes = (
            image_size,
            gt_ids,
            gt_masks,
            gt_classes,
        )

    def __len__(self) -> int:
        return len(self.gt_ids)

    def to(self, device):
        return self


def make_tracks(seed: int, count: int, classes: int, hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Moving ellipses: per track a class, per frame a mask; a track may start late or end early (id -1 and an
    empty mask where absent), and the last track is absent from every frame (the original drops it)."""
    g = torch.Generator().manual_seed(5000 + seed)
    h, w = hw
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    labels = torch.randint(0, classes, (count,), generator=g)
    ids = torch.full((count, FRAMES), -1, dtype=torch.int64)
    masks = torch.zeros(count, FRAMES, h, w, dtype=torch.bool)
    for n in range(count - 1):
        first = int(torch.randint(0, 3, (1,), generator=g)) if n % 2 else 0
        last = FRAMES - int(torch.randint(0, 2, (1,), generator=g))
        centre = torch.rand(2, generator=g) * torch.tensor([h, w])
        velocity = (torch.rand(2, generator=g) - 0.5) * 8
        radii = torch.rand(2, generator=g) * torch.tensor([h, w]) * 0.25 + 4
        for f in range(first, last):
            cy, cx = centre + velocity * f
            inside = ((yy - cy) / radii[0]) ** 2 + ((xx - cx) / radii[1]) ** 2 <= 1
            if inside.any():
                masks[n, f], ids[n, f] = inside, n
    return {"labels": labels, "ids": ids, "masks": masks}


def run(meta, pixel_values: torch.Tensor, tracks: dict, dtype: torch.dtype, train_seed: int):
    model = copy.deepcopy(meta).to(dtype)
    model.criterion.float()  # float32 buffers, as the original's float32 class logits need
    model.train()
    h, w = pixel_values.shape[-2:]
    instances = [
        Instances((h, w), tracks["ids"][:, f], tracks["masks"][:, f], tracks["labels"]) for f in range(FRAMES)
    ]
    batched = [{"image": list(pixel_values.to(dtype)), "instances": instances}]
    recorded: list = []
    matcher = model.criterion.matcher
    real = matcher.memory_efficient_forward

    def record(outputs, targets):
        indices = real(outputs, targets)
        recorded.append(indices[0])  # every frame of the (one) clip shares the assignment
        return indices

    matcher.memory_efficient_forward = record
    torch.manual_seed(train_seed)
    losses = model(batched)
    out = {f"loss.{k}": v.detach().reshape(()).to(dtype).clone() for k, v in sorted(losses.items())}
    out["loss.total"] = sum(losses.values()).detach().reshape(()).to(dtype)
    for name, (queries, targets) in zip(["final", *range(len(recorded) - 1)], recorded, strict=True):
        out[f"matching.{name}.queries"] = queries.clone()
        out[f"matching.{name}.tracks"] = targets.clone()
    return out


def build(backbone_module, meta_module, vit_module, spec: dict):
    args = SimpleNamespace(**spec)
    cfg = e2e.tiny_cfg(args)
    backbone = e2e.build_backbone(backbone_module, vit_module, cfg, args)
    e2e.redraw(backbone, spec["seed"], class_gain=4.0)
    criterion_module = sys.modules["videomt.criterion_videomt"]
    matcher = sys.modules["videomt.modeling.matcher"].VideoHungarianMatcher_Consistent(
        cost_class=CLASS_WEIGHT,
        cost_mask=MASK_WEIGHT,
        cost_dice=DICE_WEIGHT,
        num_points=NUM_POINTS,
        frames=FRAMES,
    )
    weights = {"loss_ce": CLASS_WEIGHT, "loss_mask": MASK_WEIGHT, "loss_dice": DICE_WEIGHT}
    for i in range(spec["query_blocks"] - 1):  # the original's deep-supervision weights: all but the last
        weights.update({f"{k}_{i}": v for k, v in list(weights.items())[:3]})
    criterion = criterion_module.VideoSetCriterion(
        spec["classes"], matcher=matcher, weight_dict=weights, eos_coef=NO_OBJECT_WEIGHT, losses=["labels", "masks"],
        num_points=NUM_POINTS, oversample_ratio=OVERSAMPLE, importance_sample_ratio=IMPORTANCE,
    )  # fmt: skip
    meta = meta_module.videomt_online(
        backbone=backbone, img_size=spec["img_size"], criterion=criterion, num_queries=spec["queries"],
        object_mask_threshold=0.8, overlap_threshold=0.8, metadata=SimpleNamespace(thing_dataset_id_to_contiguous_id={}),
        size_divisibility=32, sem_seg_postprocess_before_inference=True, pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3,
        num_frames=FRAMES, window_inference=True, max_num=10, max_iter_num=1, window_size=1, task="vis",
    )  # fmt: skip
    return meta, cfg


def pixel_values_of(spec: dict) -> torch.Tensor:
    """A smooth random clip, normalised as the processor does, zero-padded bottom/right to a multiple of 32."""
    frames = e2e.make_frames(spec["seed"], FRAMES, spec["hw"], spec["hw"]).to(torch.float32)
    mean = torch.tensor(e2e.MEAN).view(3, 1, 1)
    std = torch.tensor(e2e.STD).view(3, 1, 1)
    x = (frames - mean) / std
    h, w = spec["hw"]
    return F.pad(x, (0, -(-w // 32) * 32 - w, 0, -(-h // 32) * 32 - h))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True, help="extracted tue-mps/videomt tree holding videomt/")
    p.add_argument("--detectron2", required=True, help="git dir of facebookresearch/detectron2")
    p.add_argument("--out", required=True, help="folder receiving one sub-folder per case")
    args = p.parse_args()
    torch.set_num_threads(1)
    backbone_module, meta_module, vit_module = e2e.load_original(args.src)
    install_point_features(args.detectron2)
    use_real_scipy()
    import importlib

    for name in ("videomt.criterion_videomt", "videomt.modeling.matcher", "videomt.videomt"):
        sys.modules.pop(name, None)
    importlib.import_module("videomt.criterion_videomt")
    importlib.import_module("videomt.modeling.matcher")
    meta_module = importlib.import_module("videomt.videomt")

    from safetensors.torch import save_file

    for case_name, spec in CASES.items():
        meta, cfg = build(backbone_module, meta_module, vit_module, spec)
        pixel_values = pixel_values_of(spec)
        tracks = make_tracks(spec["seed"], spec["tracks"], spec["classes"], tuple(pixel_values.shape[-2:]))
        outputs = {
            dtype: run(meta, pixel_values, tracks, dtype, spec["train_seed"])
            for dtype in (torch.float32, torch.float64)
        }
        drift = {k: abs(float(outputs[torch.float32][k]) - float(outputs[torch.float64][k]))
                 for k in outputs[torch.float32] if k.startswith("loss.")}  # fmt: skip
        same_matching = all(
            torch.equal(outputs[torch.float32][k], outputs[torch.float64][k])
            for k in outputs[torch.float32]
            if k.startswith("matching.")
        )
        out = Path(args.out) / case_name
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v for k, v in meta.state_dict().items() if not k.startswith("criterion.")}
        state["criterion.empty_weight"] = meta.criterion.empty_weight.clone()
        torch.save({"model": state}, out / "checkpoint.pth")
        inputs = {"pixel_values": pixel_values[None].contiguous(), "targets.labels": tracks["labels"],
                  "targets.ids": tracks["ids"], "targets.masks": tracks["masks"].to(torch.uint8).contiguous()}  # fmt: skip
        save_file(inputs, str(out / "inputs.safetensors"))
        save_file(
            {k: v.contiguous() for k, v in outputs[torch.float32].items()}, str(out / "outputs.safetensors")
        )
        save_file(
            {k: v.contiguous() for k, v in outputs[torch.float64].items()},
            str(out / "outputs_float64.safetensors"),
        )
        terms = sorted(
            k.removeprefix("loss.")
            for k in outputs[torch.float32]
            if k.startswith("loss.") and k != "loss.total"
        )
        case = {
            "case": case_name,
            "kind": "loss",
            "description": "Training loss of the original videomt_online in train() mode on ONE clip of 5 frames: "
            "losses = meta(batched_inputs) (its prepare_targets, frame_decoder_loss_reshape, VideoSetCriterion with "
            "VideoHungarianMatcher_Consistent; terms multiplied by weight_dict, unweighted ones dropped). "
            "torch.manual_seed(train_seed) right before the call: the matcher's shared points and the loss's "
            "importance-sampled points are drawn from torch's default generator in the original's order.",
            "original_repo": "tue-mps/videomt",
            "original_commit": e2e.COMMIT,
            "detectron2_commit": DETECTRON2_COMMIT,
            "generator": "tools/videomt_original/make_loss_cases.py",
            "seed": spec["seed"],
            "train_seed": spec["train_seed"],
            "config": {
                "MODEL_NAME": e2e.TIMM_NAME,
                "IMG_SIZE": spec["img_size"],
                "NUM_OBJECT_QUERIES": spec["queries"],
                "NUM_CLASSES": spec["classes"],
                "SEGMENTER_BLOCKS": cfg.MODEL.BACKBONE.SEGMENTER_BLOCKS,
                "NORM_QUERIES": False,
                "SAMPLING_FRAME_NUM": FRAMES,
                "SIZE_DIVISIBILITY": 32,
                "embed_dim": spec["dim"],
                "depth": spec["depth"],
                "num_heads": spec["heads"],
                "patch_size": [16, 16],
                "num_register_tokens": 4,
                "layer_norm_eps": 1e-6,
                "pos_embed_grid": [spec["img_size"] // 16] * 2,
                "DEEP_SUPERVISION": True,
                "CLASS_WEIGHT": CLASS_WEIGHT,
                "MASK_WEIGHT": MASK_WEIGHT,
                "DICE_WEIGHT": DICE_WEIGHT,
                "NO_OBJECT_WEIGHT": NO_OBJECT_WEIGHT,
                "TRAIN_NUM_POINTS": NUM_POINTS,
                "OVERSAMPLE_RATIO": OVERSAMPLE,
                "IMPORTANCE_SAMPLE_RATIO": IMPORTANCE,
            },  # fmt: skip
            "clip_hw": list(spec["hw"]),
            "inputs": {
                "pixel_values": "(1, T, 3, Hp, Wp) one clip, normalised as the processor does ((x - mean) / std on "
                "0..255), zero-padded bottom/right to a multiple of 32; the meta-architecture ran with mean 0, std 1",
                "targets.labels": "(N,) class index of every ground-truth track (0..K-1)",
                "targets.ids": "(N, T) the track's id in each frame, -1 where absent (a track absent from every "
                "frame is dropped by the original)",
                "targets.masks": "(N, T, Hp, Wp) uint8 masks at the padded size, empty where absent",
            },
            "outputs": {
                "loss.<term>": "each weighted loss term (loss_ce, loss_mask, loss_dice, then _0.._{n-2} for the "
                "deep-supervision predictions made before each query block but the last)",
                "loss.total": "their sum",
                "matching.<final|i>.queries / .tracks": "the consistent matcher's assignment (query slot -> index "
                "among the kept tracks) for the final prediction and each deep-supervision prediction i",
            },
            "loss_terms": terms,
            "original_float32_vs_float64": drift,
            "float32_and_float64_match_the_same": same_matching,
            "tolerance": {
                "float32": {
                    "rtol": 1e-4,
                    "note": "relative, on the loss terms; exact when the matchings agree",
                },
                "float64": {
                    "rtol": 1e-9,
                    "note": "the class cross-entropy and the matching costs are float32 in "
                    "the original itself",
                },
            },  # fmt: skip
            "environment": {"torch": torch.__version__, "device": "cpu", "torch_num_threads": 1},
        }
        (out / "case.json").write_text(json.dumps(case, indent=1) + "\n")
        print(
            case_name,
            {k: round(float(v), 6) for k, v in outputs[torch.float32].items() if k.startswith("loss.")},
        )
        print("  f32 vs f64 drift max", max(drift.values()), "same matching", same_matching)


if __name__ == "__main__":
    main()
