"""COCO results files of ``visionports detect`` / ``segment``: ``images``, ``categories`` and ``annotations``.

What ``pycocotools.coco.COCO(path)`` loads (its ``annotations`` also go through ``COCO.loadRes``) and FiftyOne's
``COCODetectionDataset`` importer reads: ``bbox`` is ``[x, y, width, height]`` in pixels (clipped to the
image), ``segmentation`` a COCO RLE with ``counts`` as a string, ``score`` the model's confidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .coco import COCO_CATEGORY_IDS, COCO_CLASSES

# (input path, (width, height), manifest entry) per input, in input order
Rows = Sequence[tuple[str, tuple[int, int], list[dict]]]


def label_categories(id2label: Mapping[int, str]) -> dict[int, int]:
    """Label id -> COCO category id: COCO's own ids (1..90 with gaps) for a label map of COCO's 80 classes
    in their usual order (``data.coco``), else the label ids themselves."""
    ids = sorted(int(i) for i in id2label)
    names = [str(id2label[i]).strip().lower() for i in ids]
    if ids == list(range(80)) and names == list(COCO_CLASSES):
        return dict(zip(ids, COCO_CATEGORY_IDS, strict=True))
    return {i: i for i in ids}


def categories(id2label: Mapping[int, str], table: Mapping[int, int]) -> list[dict]:
    return [
        {"id": table[int(i)], "name": str(name), "supercategory": ""} for i, name in sorted(id2label.items())
    ]


def images(rows: Rows) -> list[dict]:
    """One image per input (ids from 1, in input order); ``file_name`` is the input path as given."""
    return [{"id": n, "file_name": path, "width": int(size[0]), "height": int(size[1])}
            for n, (path, size, _) in enumerate(rows, start=1)]  # fmt: skip


def xywh(box: Sequence[float], size: tuple[int, int]) -> list[float]:
    """``[x, y, w, h]`` of an (x0, y0, x1, y1) box clipped to a ``(width, height)`` image."""
    width, height = size
    x0, x1 = (min(max(float(v), 0.0), width) for v in (box[0], box[2]))
    y0, y1 = (min(max(float(v), 0.0), height) for v in (box[1], box[3]))
    return [round(x0, 2), round(y0, 2), round(max(x1 - x0, 0.0), 2), round(max(y1 - y0, 0.0), 2)]


def results_file(rows: Rows, cats: list[dict], annotations: list[dict], info: Mapping) -> dict:
    """The payload, annotation ids from 1 and ``iscrowd`` 0 (what ``COCO`` indexes)."""
    for n, annotation in enumerate(annotations, start=1):
        annotation.update(id=n, iscrowd=0)
    return {"info": dict(info), "images": images(rows), "categories": cats, "annotations": annotations}


def detection_results(rows: Rows, id2label: Mapping[int, str], info: Mapping) -> dict:
    """From ``detections.json`` entries (``label_id``, ``score``, ``box``)."""
    table = label_categories(id2label)
    annotations = []
    for image_id, (_, size, entry) in enumerate(rows, start=1):
        for det in entry:
            bbox = xywh(det["box"], size)
            category = table.get(int(det["label_id"]), int(det["label_id"]))
            annotations.append({"image_id": image_id, "category_id": category, "bbox": bbox,
                                "score": det["score"], "area": round(bbox[2] * bbox[3], 2)})  # fmt: skip
    return results_file(rows, categories(id2label, table), annotations, info)


def segmentation_results(rows: Rows, prompts: Sequence[str], info: Mapping) -> dict:
    """From ``segments.json`` entries (``label`` = the prompt, ``score``, ``box``, ``mask_pixels``, ``mask``);
    a prompt's category id is its index in ``prompts``."""
    index = {prompt: n for n, prompt in enumerate(prompts)}
    annotations = []
    for image_id, (_, size, entry) in enumerate(rows, start=1):
        for seg in entry:
            annotations.append({"image_id": image_id, "category_id": index[seg["label"]],
                                "bbox": xywh(seg["box"], size), "score": seg["score"],
                                "area": int(seg["mask_pixels"]), "segmentation": seg["mask"]})  # fmt: skip
    cats = [{"id": n, "name": prompt, "supercategory": ""} for n, prompt in enumerate(prompts)]
    return results_file(rows, cats, annotations, info)
