"""COCO box AP of a detector folder on a COCO-format split, computed by ``pycocotools``."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..core.devices import place, resolve_device, resolve_dtype, to_model
from ..core.files import require_family_folder
from ..utils.images import open_image
from .coco_dataset import CocoSplit, load_coco_split

AP_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
            "AR_1", "AR_10", "AR_100", "AR_small", "AR_medium", "AR_large")  # fmt: skip


def _category_table(split: CocoSplit, num_labels: int) -> list[int]:
    if num_labels != len(split.category_ids):
        raise ValueError(
            f"the model predicts {num_labels} classes but {split.annotation_file} has "
            f"{len(split.category_ids)} categories; fine-tune the model on this data set first"
        )
    return split.category_ids


def predict_split(
    model, processor, split: CocoSplit, batch_size: int = 4, progress: bool = True
) -> list[dict]:
    """COCO result entries (image_id, category_id, bbox xywh, score) for every image of ``split``."""
    table = torch.tensor(_category_table(split, model.config.num_labels))
    results: list[dict] = []
    batches = range(0, len(split.images), batch_size)
    for start in tqdm(batches, desc="evaluate", disable=not progress):
        chunk = split.images[start : start + batch_size]
        pictures = [open_image(image.path) for image in chunk]
        inputs = to_model(processor(pictures, return_tensors="pt"), model)
        with torch.no_grad():
            outputs = model(**inputs)
        sizes = [(picture.height, picture.width) for picture in pictures]
        detections = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=sizes)
        for image, found in zip(chunk, detections, strict=True):
            boxes = found["boxes"].float().cpu()
            xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
            for label, box, score in zip(
                table[found["labels"].cpu()], xywh, found["scores"].float().cpu(), strict=True
            ):
                results.append({"image_id": image.image_id, "category_id": int(label),
                                "bbox": [round(float(v), 3) for v in box], "score": float(score)})  # fmt: skip
    return results


def coco_ap(split: CocoSplit, results: list[dict]) -> dict[str, float]:
    """The 12 COCO box metrics of ``results`` against ``split``'s annotation file (pycocotools)."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("COCO evaluation needs pycocotools: pip install 'visionports[train]'") from err
    if not results:
        return dict.fromkeys(AP_NAMES, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(split.annotation_file))
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.params.imgIds = [image.image_id for image in split.images]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: max(float(value), 0.0) for name, value in zip(AP_NAMES, evaluation.stats, strict=True)}


def evaluate_folder(model_dir: str | Path, data_dir: str | Path, split: str = "val", batch_size: int = 4,
                    progress: bool = True, device: str | None = "auto",
                    dtype: str | None = "float32") -> dict[str, float]:  # fmt: skip
    """Load a converted detector folder and return its COCO metrics on ``data_dir``'s ``split``."""
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    where, precision = resolve_device(device), resolve_dtype(dtype)
    model_dir, _ = require_family_folder(model_dir, "evaluate")
    coco_split = load_coco_split(data_dir, split)
    model = place(AutoModelForObjectDetection.from_pretrained(model_dir).eval(), where, precision)
    processor = AutoImageProcessor.from_pretrained(model_dir)
    return coco_ap(coco_split, predict_split(model, processor, coco_split, batch_size, progress))


def evaluate_on_ray(model_dir: str | Path, data_dir: str | Path, output: str | Path, options, split: str = "val",
                    progress: bool = True, device: str | None = "auto",
                    dtype: str | None = "float32") -> dict[str, float]:  # fmt: skip
    """``evaluate_folder`` with the predictions made on a Ray cluster (``distributed.ray_runner``): the split's
    images run as a ``detect`` job at threshold 0 into ``output`` (sharded, resumable), then pycocotools here."""
    from transformers import AutoConfig

    from ..distributed.ray_runner import run_image_task_on_ray
    from ..distributed.shards import ShardStore
    from ..tasks.detect import detection_task

    model_dir, _ = require_family_folder(model_dir, "evaluate")
    coco_split = load_coco_split(data_dir, split)
    table = _category_table(coco_split, AutoConfig.from_pretrained(model_dir).num_labels)
    paths = [str(image.path) for image in coco_split.images]
    run_image_task_on_ray(detection_task(0.0, device, dtype), paths, model_dir, output, options, progress)
    ids = {str(image.path): image.image_id for image in coco_split.images}
    results = [{"image_id": ids[record["input"]], "category_id": table[found["label_id"]], "bbox": found["bbox"],
                "score": found["score"]}
               for record in ShardStore(output, options.results_format).read() for found in record["outputs"]]  # fmt: skip
    return coco_ap(coco_split, results)


def format_metrics(metrics: dict[str, float]) -> str:
    """A two-column table of the COCO metrics, in the usual order."""
    return "\n".join(f"{name:<10} {metrics[name] * 100:6.2f}" for name in AP_NAMES)
