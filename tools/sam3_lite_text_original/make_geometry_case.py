"""Golden geometric-prompt case for SAM3-LiteText from the ORIGINAL code: points and boxes, positive and negative.

    ORIGINAL_VENV/bin/python tools/sam3_lite_text_original/make_geometry_case.py ORIGINAL_SAM3_DIR OUT_DIR

``ORIGINAL_VENV`` is a separate environment for the original code with torch and **torchvision** installed (the
box path pools with ``torchvision.ops.roi_align``, which is imported for real here; never the project's .venv).
``ORIGINAL_SAM3_DIR`` is the ``sam3/`` folder of ``SimonZeng7108/efficientsam3`` (branch ``sam3_litetext``,
commit bef17f5), not part of this project.

The tiny detector is the visible case ``tiny_detector_s0_mct_seed5`` (its checkpoint, linked; the replica is
checked against that case first). Two 112 x 112 images, four queries in one ``forward_grounding``, each with its
own ``Prompt`` (points, then boxes, right-padded across queries):

* q0: image 0, "a cat" + one positive box;
* q1: image 0, "person wearing a red hat" + a positive and a negative box;
* q2: image 1, "visual" (what ``Sam3Processor`` uses when no text is given) + two positive boxes, one partly
  outside the image;
* q3: image 1, "a cat" + a positive and a negative point + a negative box thinner than a feature-map pixel.

Also the original ``Sam3Processor`` itself on image 1: ``set_image`` then two ``add_geometric_prompt`` calls
(a positive and a negative box, no text), its selection as ``processor_*``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_batch_case import (  # noqa: E402
    VISIBLE,
    build,
    check_replica,
    load,
    processor_selection,
    tensors,
    threshold_between_top_scores,
)
from original_import import cuda_on_cpu, import_original  # noqa: E402

PROMPTS = ["a cat", "person wearing a red hat", "visual"]
PAD = -10
# (image, prompt, points [(x, y, label)], boxes [(cx, cy, w, h, label)]), coordinates normalised to [0, 1]
QUERIES = [
    (0, 0, [], [(0.5, 0.5, 0.4, 0.3, 1)]),
    (0, 1, [], [(0.3, 0.6, 0.2, 0.5, 1), (0.75, 0.25, 0.3, 0.2, 0)]),
    (1, 2, [], [(0.45, 0.55, 0.5, 0.6, 1), (0.9, 0.9, 0.4, 0.3, 1)]),
    (1, 0, [(0.2, 0.3, 1), (0.7, 0.8, 0)], [(0.5, 0.4, 0.05, 0.05, 0)]),
]
PROCESSOR_BOXES = [((0.4, 0.5, 0.5, 0.4), True), ((0.7, 0.3, 0.2, 0.3), False)]


def padded(items: list[list[tuple]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-first ``[Q, n, width]`` coordinates and ``[Q, n]`` labels, padding labelled ``PAD``."""
    count = max(len(i) for i in items)
    coords = torch.zeros(len(items), count, width)
    labels = torch.full((len(items), count), PAD, dtype=torch.long)
    for q, entries in enumerate(items):
        for n, entry in enumerate(entries):
            coords[q, n] = torch.tensor(entry[:width])
            labels[q, n] = entry[width]
    return coords, labels


def original_prompt(points, point_labels, boxes, box_labels):
    """The original ``Prompt`` (sequence-first coordinates and labels, masks True = padding)."""
    from sam3.model.geometry_encoders import Prompt

    return Prompt(box_embeddings=boxes.transpose(0, 1), box_mask=box_labels == PAD,
                  box_labels=box_labels.clamp(min=0).transpose(0, 1), point_embeddings=points.transpose(0, 1),
                  point_mask=point_labels == PAD, point_labels=point_labels.clamp(min=0).transpose(0, 1))  # fmt: skip


@torch.no_grad()
def ground(model, pixels, prompt):
    from sam3.model.data_misc import FindStage

    backbone_out = {"img_batch_all_stages": pixels, **model.backbone.forward_image(pixels)}
    backbone_out.update(model.backbone.forward_text(PROMPTS, device="cpu"))
    stage = FindStage(img_ids=torch.tensor([q[0] for q in QUERIES]), text_ids=torch.tensor([q[1] for q in QUERIES]),
                      input_boxes=None, input_boxes_mask=None, input_boxes_label=None, input_points=None,
                      input_points_mask=None)  # fmt: skip
    captured = {}
    hooks = [model.geometry_encoder.register_forward_hook(lambda m, a, out: captured.update(geo=out)),
             model.transformer.encoder.register_forward_hook(lambda m, a, out: captured.update(enc=out)),
             model.transformer.decoder.register_forward_hook(lambda m, a, out: captured.update(dec=out))]  # fmt: skip
    out = model.forward_grounding(backbone_out=backbone_out, find_input=stage, find_target=None,
                                  geometric_prompt=prompt)  # fmt: skip
    for hook in hooks:
        hook.remove()
    return backbone_out, out, captured


@torch.no_grad()
def processor_run(model, image: torch.Tensor, size: int) -> tuple[dict, float]:
    """The original ``Sam3Processor``: set_image, then one ``add_geometric_prompt`` per box (no text)."""
    from sam3.model.sam3_image_processor import Sam3Processor

    processor = Sam3Processor(model, resolution=size, device="cpu", confidence_threshold=0.0)
    state = processor.set_image(image)
    for box, label in PROCESSOR_BOXES:
        state = processor.add_geometric_prompt(list(box), label, state)
    threshold = threshold_between_top_scores(state["scores"])
    state = processor.set_confidence_threshold(threshold, state)
    return {"processor_scores": state["scores"], "processor_boxes_xyxy": state["boxes"],
            "processor_masks_prob": state["masks_logits"], "processor_masks": state["masks"]}, threshold  # fmt: skip


def main(original: Path, out_dir: Path, seed: int = 12) -> None:
    import_original(original, real=("torchvision",))
    case = json.loads((VISIBLE / "case.json").read_text())
    cfg = case["config"]
    det, student, ctx = cfg["detector"], cfg["student_cfg"], cfg["context_length"]
    size = det["image_size"]
    with cuda_on_cpu():
        model = build(size, det, student, ctx)
    load(model, VISIBLE / "checkpoint.pt", ctx)
    replica_error = check_replica(model, VISIBLE)
    print("replica vs visible case: max abs", replica_error)
    assert replica_error < 1e-5, replica_error
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (2, 3, size, size), generator=generator, dtype=torch.uint8)
    pixels = (images.float() / 255 - 0.5) / 0.5  # Sam3Processor.transform; Resize is the identity here
    points, point_labels = padded([q[2] for q in QUERIES], 2)
    boxes, box_labels = padded([q[3] for q in QUERIES], 4)
    store: dict = {}
    hook = model.backbone.vision_backbone.trunk.register_forward_hook(
        lambda m, a, out: store.update(vit=out[-1])
    )
    backbone_out, out, captured = ground(
        model, pixels, original_prompt(points, point_labels, boxes, box_labels)
    )
    hook.remove()
    outputs = tensors({**backbone_out, "vit_trunk": store["vit"]}, out, captured, 0)
    thresholds = [processor_selection(out, k, size, outputs) for k in range(len(QUERIES))]
    processor_outputs, processor_threshold = processor_run(model, images[1], size)
    outputs.update(processor_outputs)
    outputs = {k: v.contiguous() for k, v in outputs.items()}
    ids = torch.stack(
        [model.backbone.language_backbone.tokenizer([p], context_length=ctx)[0] for p in PROMPTS]
    )
    inputs = {"image_uint8": images, "pixel_values": pixels, "input_ids": ids, "attention_mask": (ids != 0).long(),
              "img_ids": torch.tensor([q[0] for q in QUERIES]), "text_ids": torch.tensor([q[1] for q in QUERIES]),
              "input_points": points, "input_points_labels": point_labels, "input_boxes": boxes,
              "input_boxes_labels": box_labels, "original_size": torch.tensor([[size, size], [size, size]]),
              "processor_image_index": torch.tensor(1),
              "processor_boxes": torch.tensor([b for b, _ in PROCESSOR_BOXES]),
              "processor_box_labels": torch.tensor([int(label) for _, label in PROCESSOR_BOXES])}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in inputs.items()}, str(out_dir / "inputs.safetensors"))
    save_file(outputs, str(out_dir / "outputs.safetensors"))
    link = out_dir / "checkpoint.pt"
    if not link.exists():
        link.symlink_to(Path("..") / VISIBLE.name / "checkpoint.pt")
    config = {**cfg, "confidence_threshold": thresholds, "processor_confidence_threshold": processor_threshold,
              "prompts": PROMPTS, "img_ids": [q[0] for q in QUERIES], "text_ids": [q[1] for q in QUERIES]}  # fmt: skip
    import torchvision

    meta = {
        "case": out_dir.name,
        "kind": "geometry",
        "description": "Geometric prompts (points and boxes, positive and negative, right-padded across queries "
        "with label -10) on the tiny detector of tiny_detector_s0_mct_seed5 (checkpoint.pt links to it): one "
        "Sam3Image.forward_grounding over 4 queries (see the generator's docstring), inputs batch-first "
        "(input_points [Q, P, 2] normalised x, y; input_boxes [Q, N, 4] normalised cx, cy, w, h). Unprefixed "
        "tensors are the batched run (geometry_prompt_* sequence-first, masks True = padding); p{k}_post_* is "
        "Sam3Processor's selection on query k. processor_* is the original Sam3Processor on image "
        "processor_image_index with add_geometric_prompt per processor_boxes row (no text: 'visual').",
        "original_repo": case["original_repo"], "original_commit": case["original_commit"],
        "generator": "tools/sam3_lite_text_original/make_geometry_case.py", "seed": seed,
        "replica_check": f"replica reproduces tiny_detector_s0_mct_seed5 outputs: max abs {replica_error}",
        "environment": f"torch {torch.__version__}, torchvision {torchvision.__version__} (real roi_align)",
        "config": config, "preprocessing": {"original_size_for_postprocessing": [[size, size], [size, size]]},
        "stand_ins": ["decord", "pycocotools", "iopath", "triton", "timm (Mlp, DropPath, trunc_normal_)"],
        "tolerances": case["tolerances"],
        "inputs": [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in inputs.items()],
        "outputs": [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in outputs.items()],
    }  # fmt: skip
    (out_dir / "case.json").write_text(json.dumps(meta, indent=1))
    print("thresholds", thresholds, "kept", [len(outputs[f"p{k}_post_scores"]) for k in range(len(QUERIES))],
          "processor kept", len(outputs["processor_scores"]))  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
