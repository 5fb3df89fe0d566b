"""Object detection on image files with any registered detector folder: annotated PNGs and JSON results."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..backends import speed_settings
from ..core.devices import place, resolve_device, resolve_dtype, run_settings, to_model
from ..data.coco_results import detection_results
from ..utils.drawing import Detection, draw_detections
from .runner import ImageTask, Predict, package_version, run_image_task

FORMATS = ("visionports", "coco")  # the manifest always; ``coco`` also writes detections.coco.json


@dataclass
class DetectionRun:
    results: dict[str, list[Detection]]  # the inputs detected by this run
    pictures: list[Path]  # one per input
    json_path: Path
    entries: dict[str, list[dict]]  # every input's detections as written to the JSON (resumed ones too)
    resumed: int = 0  # inputs kept from an interrupted run of the same request
    coco_path: Path | None = None  # detections.coco.json (``output_format="coco"``)


def _detector(
    threshold: float,
    device: str | None,
    dtype: str | None,
    labels: dict[int, str],
    backend: str = "torch",
    deploy: bool = False,
    compile_model: bool = False,
) -> Callable[[Path], Predict]:
    """The loader; it fills ``labels`` with the model's label map (for the COCO categories)."""

    def load(model_dir: Path) -> Predict:
        if backend != "torch":
            return _graph_predict(model_dir, backend, threshold, device, dtype, labels)
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        model = AutoModelForObjectDetection.from_pretrained(model_dir).eval()
        model = place(model, resolve_device(device), resolve_dtype(dtype))
        if deploy:
            model.deploy(channels_last=True)
        if compile_model:
            model.forward = torch.compile(model.forward, dynamic=False)  # one graph per input shape
        processor = AutoImageProcessor.from_pretrained(model_dir)
        id2label = model.config.id2label
        labels.update({int(i): str(name) for i, name in id2label.items()})

        def predict(images: list[Image.Image]) -> list[list[Detection]]:
            with torch.inference_mode():
                outputs = model(**to_model(processor(images, return_tensors="pt"), model))
            sizes = [(im.height, im.width) for im in images]
            found = processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=sizes)
            return [_detections(det, id2label) for det in found]

        return predict

    return load


def _graph_predict(
    model_dir: Path,
    backend: str,
    threshold: float,
    device: str | None,
    dtype: str | None,
    labels: dict[int, str],
) -> Predict:
    """The onnxruntime / OpenVINO predictor (:mod:`visionports.backends.deimv2`)."""
    from ..backends.deimv2 import load_detector

    detector = load_detector(model_dir, backend, device, dtype)
    labels.update(detector.id2label)
    return lambda images: detector(images, threshold)


def _detections(found: dict, id2label: dict) -> list[Detection]:
    """Post-processed tensors -> ``Detection``s (read through ``tolist``: per-element tensor access cost 3 ms for
    300 detections, a quarter of Atto's network time)."""
    scores, labels, boxes = (found[key].tolist() for key in ("scores", "labels", "boxes"))
    return [
        Detection(int(label), id2label.get(int(label), str(int(label))), float(score), tuple(box))
        for score, label, box in zip(scores, labels, boxes, strict=True)
    ]


def detection_task(
    threshold: float = 0.5,
    device: str | None = "auto",
    dtype: str | None = "float32",
    output_format: str = "visionports",
    backend: str = "torch",
    deploy: bool = False,
    compile_model: bool = False,
) -> ImageTask:
    """``detect`` as an :class:`ImageTask` (load, predict, draw, report), for a local or a distributed run.

    ``backend="onnxruntime"`` or ``"openvino"`` runs DEIMv2 folders in that runtime (exported and validated
    once, cached beside the folder; see :mod:`visionports.backends.deimv2`); ``deploy`` runs the torch model in
    deploy mode (``Deimv2ForObjectDetection.deploy(channels_last=True)``: BatchNorm folded, RepVGG merged);
    ``compile_model`` wraps its forward in ``torch.compile`` (the first batch of each size compiles).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if output_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    speed = speed_settings(backend, deploy, compile_model, device, dtype)  # refused before any work
    labels: dict[int, str] = {}
    settings = {"threshold": threshold, **run_settings(device, dtype), **speed}
    return ImageTask(
        name="detect",
        load=_detector(threshold, device, dtype, labels, backend, deploy, compile_model),
        render=draw_detections,
        to_json=lambda detections: [d.to_json() for d in detections],
        manifest="detections.json",
        settings=settings,
        coco=None
        if output_format != "coco"
        else lambda rows: detection_results(rows, labels, _info(settings)),
    )


def detect_files(
    inputs: Sequence[str | Path],
    model_dir: str | Path,
    output_dir: str | Path,
    threshold: float = 0.5,
    batch_size: int = 4,
    progress: bool = True,
    device: str | None = "auto",
    dtype: str | None = "float32",
    output_format: str = "visionports",
    backend: str = "torch",
    deploy: bool = False,
    compile_model: bool = False,
) -> DetectionRun:
    """Detect objects in image files/folders; write ``<name>.png`` per image and ``detections.json`` (and,
    with ``output_format="coco"``, ``detections.coco.json``: see :mod:`visionports.data.coco_results`).

    Every input is checked (readable, non-empty image) before anything is written; the run is resumable and
    its folder locked (see :func:`~visionports.tasks.runner.run_image_task`).
    """
    task = detection_task(threshold, device, dtype, output_format, backend, deploy, compile_model)
    run = run_image_task(task, inputs, model_dir, output_dir, batch_size=batch_size, progress=progress)
    return DetectionRun(run.results, run.pictures, run.manifest, run.entries, run.resumed, run.coco)


def _info(settings: dict) -> dict:
    return {"description": "visionports detect", "version": package_version(), **settings}
