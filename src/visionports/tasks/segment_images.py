"""``visionports segment``: text-prompted segmentation of image files with annotated pictures and JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..backends import speed_settings
from ..core.devices import run_settings
from ..data.coco_results import segmentation_results
from ..utils.drawing import Detection, blend_masks, draw_detections, draw_prompts
from ..utils.masks import encode_rle, mask_box
from .detect import FORMATS
from .runner import ImageTask, Predict, package_version, run_image_task

_BOX = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class SegmentationSummary:
    images: int
    instances: int
    output_dir: Path
    resumed: int = 0  # inputs kept from an interrupted run of the same request
    coco_path: Path | None = None  # segments.coco.json (``output_format="coco"``)


def _segmenter(
    prompts: list[str],
    threshold: float | None,
    device: str | None,
    dtype: str | None,
    backend: str = "torch",
    deploy: bool = False,
    compile_model: bool = False,
    geometry: dict[str, list] | None = None,
) -> Callable[[Path], Predict]:
    """The loader: the pipeline's results, each prompt encoded once per run
    (:mod:`visionports.backends.sam3_lite_text`); ``geometry`` (pixel boxes / points and labels) joins every
    prompt's query on every image."""
    geometry = geometry or {}

    def load(model_dir: Path) -> Predict:
        from ..backends import sam3_lite_text as backends

        if backend == "torch":
            segmenter = backends.load_torch_segmenter(model_dir, device, dtype, deploy, compile_model)
        else:
            segmenter = backends.load_segmenter(model_dir, backend, device, dtype)
        return lambda images: [
            segmenter(image, prompts, threshold=threshold, deferred_masks=True, **geometry)
            for image in images
        ]  # fmt: skip  (masks resized one at a time when drawn or encoded)

    return load


OBJECT_LABEL = "object"


def _object_segmenter(
    geometry: dict[str, list], device: str | None, dtype: str | None
) -> Callable[[Path], Predict]:
    """The loader of ``--single-object``: the ``interactive-segmentation`` pipeline (the original
    ``predict_inst``) with the run's clicks and box, one mask per image labelled ``object``."""
    prompts = {"input_points": geometry.get("input_points"), "input_labels": geometry.get("input_points_labels"),
               "input_boxes": (geometry.get("input_boxes") or [None])[0]}  # fmt: skip
    prompts = {k: v for k, v in prompts.items() if v is not None}

    def load(model_dir: Path) -> Predict:
        from transformers import AutoImageProcessor, pipeline

        from ..core.devices import place, resolve_device, resolve_dtype
        from ..models.sam3_lite_text.modeling_sam3_lite_text import Sam3LiteTextModel

        model = place(
            Sam3LiteTextModel.from_pretrained(model_dir).eval(), resolve_device(device), resolve_dtype(dtype)
        )
        if model.tracker is None:
            raise ValueError(
                f"--single-object: {model_dir} holds no tracker weights (convert a file that has them)"
            )
        segmenter = pipeline("interactive-segmentation", model=model,
                             image_processor=AutoImageProcessor.from_pretrained(model_dir))  # fmt: skip
        return lambda images: [[_object(found) for found in segmenter(image, multimask_output=False, **prompts)]
                               for image in images]  # fmt: skip

    return load


def _object(found: dict) -> dict:
    """A pipeline mask as a ``segment`` instance: label ``object``, the predicted IoU as score, the mask's box."""
    return {"label": OBJECT_LABEL, "score": found["score"], "mask": found["mask"],
            "box": dict(zip(_BOX, mask_box(found["mask"]), strict=True))}  # fmt: skip


def _render(
    prompts: list[str], geometry: dict[str, list]
) -> Callable[[Image.Image, list[dict]], Image.Image]:
    """Masks blended in their prompt's colour, then each instance's box and ``prompt score`` tag; box exemplars
    and points, when given, drawn on top (green positive, red negative)."""

    def render(image: Image.Image, found: list[dict]) -> Image.Image:
        label_ids = [prompts.index(f["label"]) for f in found]
        picture = blend_masks(image, [f["mask"] for f in found], label_ids)
        boxes = [Detection(i, f["label"], f["score"], tuple(f["box"][k] for k in _BOX))
                 for i, f in zip(label_ids, found, strict=True)]  # fmt: skip
        picture = draw_detections(picture, boxes)
        if not geometry:
            return picture
        return draw_prompts(picture, geometry.get("input_boxes", ()), geometry.get("input_boxes_labels"),
                            geometry.get("input_points", ()), geometry.get("input_points_labels"))  # fmt: skip

    return render


def _to_json(found: list[dict]) -> list[dict]:
    """Each instance's label, score, box (xmin, ymin, xmax, ymax), pixel count and mask as COCO RLE."""
    return [_entry(f, np.asarray(f["mask"], dtype=bool)) for f in found]


def _entry(found: dict, mask: np.ndarray) -> dict:
    return {"label": found["label"], "score": round(found["score"], 6),
            "box": [round(found["box"][k], 2) for k in _BOX], "mask_pixels": int(mask.sum()),
            "mask": encode_rle(mask)}  # fmt: skip


def segmentation_task(
    prompts: Sequence[str],
    threshold: float | None = None,
    device: str | None = "auto",
    dtype: str | None = "float32",
    output_format: str = "visionports",
    backend: str = "torch",
    deploy: bool = False,
    compile_model: bool = False,
    geometry: dict[str, list] | None = None,
    single_object: bool = False,
) -> ImageTask:
    """``segment`` as an :class:`ImageTask` (load, predict, draw, report), for a local or a distributed run.

    ``backend="onnxruntime"`` or ``"openvino"`` runs the text and image encoders as graphs (exported and
    validated once, cached beside the folder) and the detector head in torch; ``deploy`` runs the torch model in
    deploy mode (:meth:`Sam3LiteTextModel.deploy`); ``compile_model`` compiles its text and image encoders.
    ``geometry``: box exemplars / points in pixels (``input_boxes``, ``input_points`` and their labels, as the
    pipeline takes them), applied to every image; without prompts the query reads ``"visual"``.
    ``single_object``: the points and (at most one) box outline one object instead, whose mask the tracker's SAM
    heads predict (``interactive-segmentation``); torch backend only.
    """
    from ..models.sam3_lite_text.image_processing_sam3_lite_text import prepare_geometry
    from ..models.sam3_lite_text.pipeline_sam3_lite_text import VISUAL_PROMPT

    prompts, geometry = list(prompts), {k: v for k, v in (geometry or {}).items() if v}
    prepare_geometry(None, **geometry)  # wrong values refused before any work
    if single_object:
        return _single_object_task(
            prompts, geometry, device, dtype, output_format, backend, deploy, compile_model
        )
    if not prompts and any(k in geometry for k in ("input_boxes", "input_points")):
        prompts = [VISUAL_PROMPT]
    if not prompts or any(not p.strip() for p in prompts):
        raise ValueError("--prompt: give at least one non-empty text prompt (or --box / --point exemplars)")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"--threshold must be in [0, 1], got {threshold}")
    if output_format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    speed = speed_settings(backend, deploy, compile_model, device, dtype)  # refused before any work
    settings = {
        "prompts": prompts,
        "threshold": threshold,
        **geometry,
        **run_settings(device, dtype),
        **speed,
    }
    info = {"description": "visionports segment", "version": package_version(), **settings}
    return ImageTask(
        name="segment",
        load=_segmenter(prompts, threshold, device, dtype, backend, deploy, compile_model, geometry),
        render=_render(prompts, geometry),
        to_json=_to_json,
        manifest="segments.json",
        settings=settings,
        keep_results=False,  # masks at image size: only their RLE stays, in the manifest
        coco=None if output_format != "coco" else lambda rows: segmentation_results(rows, prompts, info),
    )


def _single_object_task(prompts: list[str], geometry: dict[str, list], device: str | None, dtype: str | None,
                        output_format: str, backend: str, deploy: bool, compile_model: bool) -> ImageTask:  # fmt: skip
    """``segment --single-object``: refused combinations first, then the task."""
    boxes, labels = geometry.get("input_boxes", []), geometry.get("input_boxes_labels", [])
    refusals = [
        (prompts, "--prompt does not apply with --single-object (clicks and a box outline the object)"),
        (
            not boxes and not geometry.get("input_points"),
            "--single-object needs --point clicks and/or one --box",
        ),
        (len(boxes) > 1 or 0 in labels, "--single-object takes at most one --box (no --negative-box)"),
        (backend != "torch" or deploy or compile_model, "--single-object runs the torch backend only"),
        (
            output_format != "visionports",
            "--format coco applies to prompted segmentation, not --single-object",
        ),
    ]
    for refused, message in refusals:
        if refused:
            raise ValueError(message)
    settings = {"single_object": True, **geometry, **run_settings(device, dtype)}
    return ImageTask(name="segment", load=_object_segmenter(geometry, device, dtype),
                     render=_render([OBJECT_LABEL], geometry), to_json=_to_json, manifest="segments.json",
                     settings=settings, keep_results=False)  # fmt: skip


def segment_files(
    inputs: Sequence[str | Path],
    prompts: Sequence[str],
    model_dir: str | Path,
    output_dir: str | Path,
    threshold: float | None = None,
    progress: bool = True,
    device: str | None = "auto",
    dtype: str | None = "float32",
    output_format: str = "visionports",
    backend: str = "torch",
    deploy: bool = False,
    compile_model: bool = False,
    geometry: dict[str, list] | None = None,
    single_object: bool = False,
) -> SegmentationSummary:
    """Segment every prompt in every image; write ``<name>.png`` (masks, boxes, prompt labels) and ``segments.json``
    (and, with ``output_format="coco"``, ``segments.coco.json``: see :mod:`visionports.data.coco_results`).
    ``geometry``: box exemplars / points for every image (see :func:`segmentation_task`)."""
    task = segmentation_task(prompts, threshold, device, dtype, output_format, backend, deploy, compile_model,
                             geometry, single_object)  # fmt: skip
    run = run_image_task(task, inputs, model_dir, output_dir, progress=progress)
    total = sum(len(found) for found in run.entries.values())
    return SegmentationSummary(len(run.pictures), total, Path(output_dir), run.resumed, run.coco)
