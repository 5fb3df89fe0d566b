"""Golden DEIMv2 training-loss cases from the ORIGINAL code.

DEIMV2_SRC=<checkout of the original> FIXTURES=<shared fixtures> OUT=<folder> python make_loss_cases.py
Runs the original model in train() mode and its DEIMCriterion on the visible cases' checkpoints (see the
case.json it writes); needs scipy. Made tests/fixtures/deimv2/*_loss_*.
"""

import copy
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import original_build as ob  # noqa: E402
from safetensors.torch import save_file


def box_area(b):
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def make_targets(batch, seed, num_classes=80):
    g = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(batch):
        n = int(torch.randint(1, 7, (1,), generator=g))
        wh = torch.rand(n, 2, generator=g) * 0.4 + 0.05
        c = wh / 2 + torch.rand(n, 2, generator=g) * (1 - wh)
        labels = torch.randint(0, num_classes, (n,), generator=g)
        targets.append({"labels": labels, "boxes": torch.cat([c, wh], 1)})
    return targets


def run(src_case, out_name, preset, batch, epoch, train_seed, target_seed, image_seed):
    ob.load_engine()
    sys.modules["torchvision.ops.boxes"].box_area = box_area
    import engine.deim.box_ops as bo

    bo.box_area = box_area
    import inspect

    import engine.deim.dfine_utils as du

    if not getattr(du, "_patched", False):
        src_code = inspect.getsource(du.translate_gt).replace(
            "closest_left_indices.float()", "closest_left_indices.to(gt.dtype)"
        )
        exec(compile(src_code, du.__file__, "exec"), du.__dict__)
        du._patched = True
    src = Path(os.environ.get("FIXTURES", "../shared/fixtures")) / "deimv2" / src_case
    case = json.loads((src / "case.json").read_text())
    model, cfg = ob.build(preset, case["yml_overrides"])
    import contextlib
    import io

    cwd = os.getcwd()
    os.chdir(ob.SRC)
    with contextlib.redirect_stdout(io.StringIO()):
        criterion = cfg.criterion
    os.chdir(cwd)
    sd = torch.load(src / "checkpoint.pth", weights_only=True)["model"]
    print(model.load_state_dict(sd, strict=False))
    h, w = case["input_hw"]
    g = torch.Generator().manual_seed(image_seed)
    pixel_values = torch.rand(batch, 3, h, w, generator=g)
    targets = make_targets(batch, target_seed)
    results = {}
    for dtype in (torch.float32, torch.float64):
        m = copy.deepcopy(model).to(dtype).train()
        t = [{"labels": x["labels"], "boxes": x["boxes"].to(dtype)} for x in targets]
        torch.manual_seed(train_seed)
        out = m(pixel_values.to(dtype), targets=t)
        losses = criterion(out, t, epoch=epoch)
        total = sum(losses.values())
        results[dtype] = {f"loss.{k}": v.detach().reshape(()).to(dtype).clone() for k, v in losses.items()}
        results[dtype]["loss.total"] = total.detach().reshape(()).clone()
        results[dtype]["pred_logits"] = out["pred_logits"].detach().contiguous()
        results[dtype]["pred_boxes"] = out["pred_boxes"].detach().contiguous()
    d = Path(os.environ.get("OUT", "loss_cases")) / out_name
    d.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copy(src / "checkpoint.pth", d / "checkpoint.pth")
    flat_labels = torch.cat([x["labels"] for x in targets])
    flat_boxes = torch.cat([x["boxes"] for x in targets])
    index = torch.cat([torch.full((len(x["labels"]),), i, dtype=torch.int64) for i, x in enumerate(targets)])
    save_file(
        {
            "pixel_values": pixel_values.contiguous(),
            "targets.labels": flat_labels,
            "targets.boxes": flat_boxes.contiguous(),
            "targets.batch_index": index,
        },
        str(d / "inputs.safetensors"),
    )
    save_file(results[torch.float32], str(d / "outputs.safetensors"))
    save_file(results[torch.float64], str(d / "outputs_float64.safetensors"))
    noise = {
        k: abs(float(results[torch.float32][k]) - float(results[torch.float64][k]))
        for k in results[torch.float32]
        if k.startswith("loss.")
    }
    new = {
        k: case[k]
        for k in (
            "original_repo",
            "original_commit",
            "original_yml",
            "variant",
            "yml_overrides",
            "config",
            "input_hw",
            "weight_redraw",
        )
    }
    new.update(
        {
            "case": out_name,
            "kind": "loss",
            "description": f"Training loss of the original DEIMv2 ({preset}) in train() mode: outputs = model(pixel_values, targets=targets) (denoising groups drawn after torch.manual_seed(train_seed)), losses = cfg.criterion(outputs, targets, epoch=epoch) with the yml's DEIMCriterion/HungarianMatcher; loss.total = sum of the weighted terms. Weights = the checkpoint of case {src_case}. BatchNorm in training mode (batch statistics).",
            "batch": batch,
            "epoch": epoch,
            "train_seed": train_seed,
            "inputs": {
                "pixel_values": {
                    "meaning": f"random images in [0,1] (torch.rand, generator seed {image_seed})"
                },
                "targets.labels": {
                    "meaning": "class index (0..79) of every target box, all images concatenated"
                },
                "targets.boxes": {"meaning": "target boxes, normalised (cx, cy, w, h), same order"},
                "targets.batch_index": {"meaning": "image index of every target"},
            },
            "outputs": {
                "loss.<term>": "each weighted loss term of the criterion (loss_mal, loss_bbox_aux_0, ..., loss_ddf_dn_1, ...)",
                "loss.total": "their sum",
                "pred_logits": "final matching-query logits of the training forward",
                "pred_boxes": "final boxes of the training forward",
            },
            "original_float32_vs_float64": noise,
            "tolerance": {
                "float32": {
                    "rtol": 1e-3,
                    "per_tensor_atol": {"pred_logits": 1e-3, "pred_boxes": 1e-4},
                    "note": "relative: random-weight float32 noise of the original (original_float32_vs_float64)",
                },
                "float64": {"rtol": 1e-9, "per_tensor_atol": {"pred_logits": 1e-10, "pred_boxes": 1e-12}},
            },
            "loss_terms": sorted(
                k[5:] for k in results[torch.float32] if k.startswith("loss.") and k != "loss.total"
            ),
        }
    )
    (d / "case.json").write_text(json.dumps(new, indent=1))
    print(
        out_name, {k: round(float(v), 6) for k, v in results[torch.float64].items() if k.startswith("loss.")}
    )
    print("max f32-f64 noise", max(noise.values()))


if __name__ == "__main__":
    run("atto_s0_b1_320", "atto_loss_b2_e0", "atto", 2, 0, 5, 11, 21)
    run("dinov3_s_tiny_s0_b1_256", "dinov3_s_tiny_loss_b2_e0", "s", 2, 0, 6, 12, 22)
    run("dinov3_s_tiny_s0_b1_256", "dinov3_s_tiny_loss_b2_e100", "s", 2, 100, 7, 13, 23)
