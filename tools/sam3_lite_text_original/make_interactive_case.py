"""Golden point/box (SAM 1 task) case for SAM3-LiteText from the ORIGINAL code: ``Sam3Image.predict_inst``.

    ORIGINAL_VENV/bin/python tools/sam3_lite_text_original/make_interactive_case.py ORIGINAL_SAM3_DIR

``ORIGINAL_VENV`` is a separate environment for the original code with torch, torchvision and scikit-image (the
original fills mask holes with ``skimage.measure.label`` on CPU); never the project's .venv. ``ORIGINAL_SAM3_DIR``
is the ``sam3/`` folder of ``SimonZeng7108/efficientsam3`` (branch ``sam3_litetext``, commit bef17f5).

The model is the tiny image model with instance interactivity whose released-format checkpoint
``tests/fixtures/sam3_lite_text/tiny_tracker_s0_mct/checkpoint.pt`` is written by ``make_tracker_checkpoint.py``;
this script writes the case files beside it. The user's path of the original: ``Sam3Processor.set_image`` on a
90 x 130 image (resized to 112 x 112), then ``model.predict_inst(state, ...)`` calls:

* c0: one positive point, three masks;
* c1: a positive and a negative point, one mask (the decoder's stability fallback may pick a multimask output);
* c2: a box alone, one mask;
* c3: a box and a positive point, three masks;
* c4: c0's best low-resolution logits as ``mask_input`` + a negative point, one mask;
* c5: two objects at once (two boxes), one mask each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tracker_checkpoint import OUT, build_interactive  # noqa: E402

HEIGHT, WIDTH = 90, 130
CALLS = [
    {"point_coords": [[40.0, 30.0]], "point_labels": [1], "multimask_output": True},
    {"point_coords": [[70.0, 50.0], [20.0, 75.0]], "point_labels": [1, 0], "multimask_output": False},
    {"box": [[25.0, 15.0, 95.0, 70.0]], "multimask_output": False},
    {"box": [[10.0, 40.0, 60.0, 85.0]], "point_coords": [[30.0, 60.0]], "point_labels": [1],
     "multimask_output": True},
    {"point_coords": [[100.0, 20.0]], "point_labels": [0], "mask_from": 0, "multimask_output": False},
    {"box": [[5.0, 5.0, 60.0, 45.0], [70.0, 30.0, 125.0, 88.0]], "multimask_output": False},
]  # fmt: skip


def main(original: Path, seed: int = 13) -> None:
    model = build_interactive(original)
    from sam3.model.sam3_image_processor import Sam3Processor

    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, HEIGHT, WIDTH), generator=generator, dtype=torch.uint8)
    size = model.inst_interactive_predictor.model.image_size
    processor = Sam3Processor(model, resolution=size, device="cpu")
    captured: dict[str, torch.Tensor] = {}
    decoder = model.inst_interactive_predictor.model.sam_mask_decoder

    def capture(module, args, kwargs):
        if "image_embed" not in captured:
            captured["image_embed"] = kwargs["image_embeddings"]
            for level, feat in enumerate(kwargs["high_res_features"]):
                captured[f"high_res_{level}"] = feat

    hook = decoder.register_forward_pre_hook(capture, with_kwargs=True)
    with torch.no_grad():
        state = processor.set_image(image)
        inputs: dict[str, torch.Tensor] = {
            "image_uint8": image,
            "original_size": torch.tensor([HEIGHT, WIDTH]),
        }
        outputs: dict[str, torch.Tensor] = {}
        low_res: list[np.ndarray] = []
        for k, call in enumerate(CALLS):
            kwargs = {key: np.array(value, dtype=np.float32) for key, value in call.items()
                      if key in ("point_coords", "box")}  # fmt: skip
            if "point_labels" in call:
                kwargs["point_labels"] = np.array(call["point_labels"], dtype=np.int32)
            if "mask_from" in call:
                source = low_res[call["mask_from"]]
                best = int(outputs[f"c{call['mask_from']}_scores"].argmax())
                kwargs["mask_input"] = source[best : best + 1]
                inputs[f"c{k}_mask_input"] = torch.from_numpy(kwargs["mask_input"].copy())
            masks, scores, logits = model.predict_inst(
                state, multimask_output=call["multimask_output"], **kwargs
            )
            low_res.append(logits)
            for key in ("point_coords", "point_labels", "box"):
                if key in kwargs:
                    inputs[f"c{k}_{key}"] = torch.from_numpy(np.asarray(kwargs[key]).copy())
            inputs[f"c{k}_multimask_output"] = torch.tensor(call["multimask_output"])
            outputs.update({f"c{k}_masks": torch.from_numpy(masks.astype(bool)), f"c{k}_scores": torch.from_numpy(scores),
                            f"c{k}_low_res_masks": torch.from_numpy(logits)})  # fmt: skip
    hook.remove()
    inputs["pixel_values"] = processor.transform(image).unsqueeze(0)
    outputs.update({f"tracker_{name}": value for name, value in captured.items()})
    outputs = {name: value.contiguous() for name, value in outputs.items()}
    save_file({k: v.contiguous() for k, v in inputs.items()}, str(OUT / "inputs.safetensors"))
    save_file(outputs, str(OUT / "outputs.safetensors"))
    build = json.loads((OUT / "build.json").read_text())
    visible = json.loads((OUT.parent / "tiny_detector_s0_mct_seed5" / "case.json").read_text())
    import torchvision

    meta = {
        "case": OUT.name,
        "kind": "interactive",
        "description": "Point / box prompts of single objects (SAM 1 task) through the original Sam3Image."
        "predict_inst after Sam3Processor.set_image on a 90x130 uint8 image (image_uint8), calls c0..c5 as the "
        "generator's docstring lists. Per call: c{k}_point_coords / c{k}_box in pixels of the original image, "
        "c{k}_point_labels (1 positive, 0 negative), c{k}_mask_input (a previous call's low-resolution logits), "
        "c{k}_multimask_output; outputs c{k}_masks (bool [objects?, masks, H, W] at the original size, holes "
        "of at most 256 low-resolution pixels filled), c{k}_scores (predicted IoU), c{k}_low_res_masks (logits "
        "clamped to +-32). tracker_image_embed / tracker_high_res_{0,1}: the SAM heads' image inputs of the first "
        "call (no-memory embedding added; conv_s0 / conv_s1 applied).",
        "original_repo": build["original_repo"], "original_commit": build["original_commit"],
        "generator": "tools/sam3_lite_text_original/make_interactive_case.py", "seed": seed,
        "checkpoint_builder": build["generator"],
        "environment": f"torch {torch.__version__}, torchvision {torchvision.__version__}, scikit-image (hole "
        "filling on CPU)",
        "config": {**visible["config"], "tracker": build["tracker"], "calls": CALLS,
                   "predictor": {"mask_threshold": 0.0, "max_hole_area": 256.0, "max_sprinkle_area": 0.0}},
        "stand_ins": ["decord", "pycocotools", "iopath", "triton", "timm (Mlp, DropPath, trunc_normal_)"],
        "tolerances": {"float32_max_abs_diff": 1e-4, "note": "c{k}_masks are booleans: compared exactly."},
        "inputs": [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
                   for k, v in inputs.items()],
        "outputs": [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
                    for k, v in outputs.items()],
    }  # fmt: skip
    (OUT / "case.json").write_text(json.dumps(meta, indent=1))
    print({k: list(v.shape) for k, v in outputs.items() if k.endswith(("scores", "masks"))})


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
