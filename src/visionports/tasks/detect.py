"""Object detection on image files with any registered detector folder: annotated PNGs and JSON results."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..core.files import atomic_write, require_model_folder
from ..utils.drawing import Detection, draw_detections
from ..utils.images import collect_image_files, open_image


@dataclass
class DetectionRun:
    results: dict[str, list[Detection]]
    pictures: list[Path]
    json_path: Path


def _output_names(files: Sequence[Path]) -> list[str]:
    names, seen = [], {}
    for f in files:
        count = seen.get(f.stem, 0)
        seen[f.stem] = count + 1
        names.append(f.stem if count == 0 else f"{f.stem}_{count}")
    return names


def detect_files(
    inputs: Sequence[str | Path],
    model_dir: str | Path,
    output_dir: str | Path,
    threshold: float = 0.5,
    batch_size: int = 4,
    progress: bool = True,
) -> DetectionRun:
    """Detect objects in image files/folders; write ``<name>.png`` per image and ``detections.json``.

    Every input is checked (readable, non-empty image) before anything is written.
    """
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    files = collect_image_files(inputs)
    for file in files:  # validate everything first: nothing is written for a bad input
        open_image(file)
    model_dir = require_model_folder(model_dir)
    model = AutoModelForObjectDetection.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    id2label = model.config.id2label
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    names = _output_names(files)
    results: dict[str, list[Detection]] = {}
    pictures: list[Path] = []
    bar = tqdm(total=len(files), desc="detect", unit="image", disable=not progress)
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        images = [open_image(f) for f in chunk]
        inputs_ = processor(images, return_tensors="pt")
        with torch.inference_mode():
            outputs = model(**inputs_)
        sizes = [(im.height, im.width) for im in images]
        found = processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=sizes)
        for file, name, image, det in zip(
            chunk, names[start : start + batch_size], images, found, strict=True
        ):
            detections = [
                Detection(
                    int(label),
                    id2label.get(int(label), str(int(label))),
                    float(score),
                    tuple(map(float, box)),
                )
                for score, label, box in zip(det["scores"], det["labels"], det["boxes"], strict=True)
            ]
            picture = output_dir / f"{name}.png"
            annotated = draw_detections(image, detections)
            atomic_write(picture, lambda tmp, img=annotated: img.save(tmp, format="PNG"))
            results[str(file)] = detections
            pictures.append(picture)
            bar.update()
    bar.close()
    json_path = output_dir / "detections.json"
    payload = {
        "model": str(model_dir),
        "threshold": threshold,
        "images": {k: [d.to_json() for d in v] for k, v in results.items()},
    }
    atomic_write(json_path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))
    return DetectionRun(results=results, pictures=pictures, json_path=json_path)
