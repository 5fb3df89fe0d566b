"""``visionports segment``: text-prompted segmentation of image files with annotated pictures and JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..core.files import atomic_write, require_model_folder
from ..utils.drawing import Detection, blend_masks, draw_detections
from ..utils.images import collect_image_files, open_image


@dataclass
class SegmentationSummary:
    images: int
    instances: int
    output_dir: Path


def segment_files(
    inputs: Sequence[str | Path],
    prompts: Sequence[str],
    model_dir: str | Path,
    output_dir: str | Path,
    threshold: float | None = None,
    progress: bool = True,
) -> SegmentationSummary:
    """Segment every prompt in every image; write ``<name>.png`` (masks, boxes, prompt labels) and ``segments.json``."""
    from transformers import pipeline

    prompts = [p for p in prompts]
    if not prompts or any(not p.strip() for p in prompts):
        raise ValueError("--prompt: give at least one non-empty text prompt")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"--threshold must be in [0, 1], got {threshold}")
    files = collect_image_files(inputs)
    for file in files:  # nothing is written unless every input is a readable image
        open_image(file)
    model_dir = require_model_folder(model_dir)
    segmenter = pipeline("text-prompted-segmentation", model=str(model_dir))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results, total = {}, 0
    for file in tqdm(files, desc="segment", unit="image", disable=not progress):
        image = open_image(file)
        found = segmenter(image, prompts=prompts, threshold=threshold)
        label_ids = [prompts.index(f["label"]) for f in found]
        picture = blend_masks(image, [f["mask"] for f in found], label_ids)
        boxes = [Detection(i, f["label"], f["score"], tuple(f["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")))
                 for i, f in zip(label_ids, found, strict=True)]  # fmt: skip
        picture = draw_detections(picture, boxes)
        atomic_write(output_dir / f"{file.stem}.png", lambda tmp, img=picture: img.save(tmp, format="PNG"))
        results[str(file)] = [{"label": f["label"], "score": round(f["score"], 6), "box": [round(v, 2) for v in f["box"].values()],
                               "mask_pixels": int(f["mask"].sum())} for f in found]  # fmt: skip
        total += len(found)
    payload = {"model": str(model_dir), "prompts": prompts, "threshold": threshold, "images": results}
    atomic_write(output_dir / "segments.json", lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))
    return SegmentationSummary(len(files), total, output_dir)
