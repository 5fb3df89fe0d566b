"""SAM3 image preprocessing and instance post-processing, as the original ``Sam3Processor`` (no torchvision)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_utils import ChannelDimension
from transformers.utils import TensorType

from ...core.processing_options import RgbImageProcessor, normalize, rescale, to_layout
from ...utils.boxes import center_to_corners
from ...utils.images import to_rgb


class Sam3LiteTextImageProcessor(RgbImageProcessor):
    r"""Resize to ``size`` x ``size`` (bilinear with antialiasing on the uint8 image, aspect ratio not kept: what
    torchvision's ``Resize`` computes on uint8 tensors), scale to [0, 1], normalise with mean/std 0.5.

    ``post_process_instance_segmentation`` keeps queries whose ``sigmoid(logit) * sigmoid(presence)`` exceeds
    ``threshold`` and returns their scores, pixel boxes (not clipped) and masks at the original size, per query;
    ``post_process_per_image`` gathers them per image, labelled with their prompt (the pipeline's results).
    """

    model_input_names = ["pixel_values"]
    _reader = "SAM3"
    _prompt_arguments = ("input_boxes", "input_boxes_labels", "input_points", "input_points_labels")

    def __init__(
        self,
        size: int = 1008,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        do_resize: bool = True,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        do_convert_rgb: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.size = int(size)
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.threshold, self.mask_threshold = float(threshold), float(mask_threshold)
        self.do_resize, self.do_rescale, self.do_normalize = (
            bool(do_resize),
            bool(do_rescale),
            bool(do_normalize),
        )
        self.rescale_factor = float(rescale_factor)
        self.do_convert_rgb = bool(do_convert_rgb)

    def _prompts(self, data: Mapping[str, torch.Tensor], **geometry: Any) -> dict[str, torch.Tensor]:
        """Geometric prompts given with the images, in pixels of each original image.

        ``input_boxes``: per image, ``[x1, y1, x2, y2]`` boxes; ``input_points``: per image, ``[x, y]`` points;
        their ``*_labels``: per image, 1 (positive, the default) or 0 (negative). For one image the outer list
        may be left out. They come back normalised for the model (boxes as ``cx, cy, w, h``), padded across
        images with label -10.
        """
        return prepare_geometry(data["original_sizes"], **geometry)

    def prepare_object_prompts(
        self,
        original_sizes: Sequence[Sequence[int]] | torch.Tensor,
        input_points: Any = None,
        input_labels: Any = None,
        input_boxes: Any = None,
    ) -> dict[str, torch.Tensor]:
        """Point/box prompts of single objects (``predict_masks``) from pixels of each original image.

        ``input_points``: per image, per object, ``[x, y]`` points; ``input_labels`` the same nesting with 1
        (positive, the default) or 0 (negative); ``input_boxes``: per image, one ``[x1, y1, x2, y2]`` box per
        object. For one image the outer list may be left out. Returns normalised ``input_points``
        ``[B, objects, P, 2]`` (padding label -10), ``input_labels`` and ``input_boxes`` ``[B, objects, 4]``.
        """
        return prepare_object_prompts(original_sizes, input_points, input_labels, input_boxes)

    def post_process_masks(
        self,
        outputs: Any,
        original_sizes: Sequence[Sequence[int]] | torch.Tensor,
        mask_threshold: float = 0.0,
        max_hole_area: float = 256.0,
        max_sprinkle_area: float = 0.0,
        binarize: bool = True,
    ) -> list[dict[str, torch.Tensor]]:
        """Per image, the ``predict_masks`` outputs at the original size, as the original ``predict_inst``:
        background holes of at most ``max_hole_area`` low-resolution pixels filled (and, with
        ``max_sprinkle_area``, foreground specks removed), masks resized bilinearly and thresholded at
        ``mask_threshold`` (a logit). Each result: ``masks`` ``[objects, masks, H, W]`` (bool, or logits without
        ``binarize``), ``scores`` ``[objects, masks]`` (predicted IoU), ``object_score_logits`` and
        ``low_res_masks`` (logits clamped to ±32, to pass back as ``input_masks``)."""
        from .interactive_sam3_lite_text import fill_holes, upsample_masks

        sizes = _sizes(original_sizes)
        logits = outputs["pred_masks"]
        if len(sizes) != logits.shape[0]:
            raise ValueError(
                f"original_sizes: one (height, width) per image ({logits.shape[0]}), got {len(sizes)}"
            )
        results = []
        for index, (height, width) in enumerate(sizes.tolist()):
            cleaned = fill_holes(logits[index].float(), mask_threshold, max_hole_area, max_sprinkle_area)
            masks = upsample_masks(cleaned, int(height), int(width))
            results.append({"masks": masks > mask_threshold if binarize else masks,
                            "scores": outputs["iou_scores"][index],
                            "object_score_logits": outputs["object_score_logits"][index],
                            "low_res_masks": logits[index].clamp(-32.0, 32.0)})  # fmt: skip
        return results

    def _options(
        self, given: Mapping[str, Any], unknown: Mapping[str, Any], return_tensors: str | TensorType | None
    ) -> dict[str, Any]:
        """A ``size`` mapping must be square; the settings' ``size`` is an ``int``."""
        size = given["size"]
        if isinstance(size, Mapping):
            if size.get("height") != size.get("width"):
                raise ValueError(f"size must be square (SAM3 reads size x size images), got {dict(size)}")
            given = {**given, "size": size["height"]}
        options = super()._options(given, unknown, return_tensors)
        options["size"] = int(options["size"])
        return options

    def _batch(
        self, prepared: list[tuple[torch.Tensor, tuple[int, int]]], data_format: str | ChannelDimension
    ) -> dict[str, torch.Tensor]:
        """``pixel_values`` [B, 3, size, size] and ``original_sizes`` [B, 2] (height, width)."""
        shapes = {tuple(p.shape) for p, _ in prepared}
        if len(shapes) > 1:
            raise ValueError(
                f"images of different sizes cannot be stacked without do_resize: {sorted(shapes)}"
            )
        pixels = to_layout(torch.stack([p for p, _ in prepared]), data_format)
        return {"pixel_values": pixels, "original_sizes": torch.tensor([s for _, s in prepared])}

    def _prepare(
        self, image: Any, name: str, options: Mapping[str, Any]
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        rgb = to_rgb(image, name=name)
        pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None]
        side = options["size"]
        if options["do_resize"] and pixels.shape[-2:] != (side, side):
            pixels = F.interpolate(
                pixels, size=(side, side), mode="bilinear", antialias=True, align_corners=False
            )
        x = pixels[0].float()
        if options["do_rescale"]:
            x = rescale(x, options["rescale_factor"])
        if options["do_normalize"]:
            x = normalize(x, options["image_mean"], options["image_std"])
        return x, (rgb.height, rgb.width)

    @torch.no_grad()
    def post_process_instance_segmentation(
        self,
        outputs: Any,
        threshold: float | Sequence[float] | None = None,
        mask_threshold: float | None = None,
        target_sizes: Sequence[Sequence[int]] | torch.Tensor | None = None,
        prompts: Sequence[str] | None = None,
        deferred_masks: bool = False,
    ) -> list[dict[str, Any]]:
        """One result per query (an image/prompt pair): ``scores`` [K], ``boxes`` [K, 4] (x0, y0, x1, y1 pixels),
        ``mask_probs`` and ``masks`` [K, H, W], ``image_index``, ``prompt_index`` and, with ``prompts``, ``prompt``.

        For ``supervision.Detections.from_transformers`` (class id = the prompt index, ``id2label`` =
        ``dict(enumerate(prompts))``) each result also holds ``labels`` [K] (the prompt index, as a detector's
        class ids), ``segmentation`` (the same ``masks`` tensor) and ``segments_info`` (``id``, ``label_id``,
        ``score`` per instance), the binary-map layout of transformers' instance segmentation.

        ``target_sizes`` holds the (height, width) of every image. Outputs without ``image_ids`` pair queries
        with images as the model does: one size is that image for every query, one size per query pairs them
        in order. ``prompts`` (the model's prompts, in order) also defaults missing ``text_ids``: one prompt
        is read by every query, otherwise query q reads prompt q. ``threshold`` is one value or one per query.
        ``deferred_masks``: ``masks`` is a list of :class:`DeferredMask` (no ``mask_probs``), each resized to
        its image only when read, so a large image with many instances never holds them all.
        """
        mask_threshold = self.mask_threshold if mask_threshold is None else float(mask_threshold)
        logits, presence = outputs["pred_logits"], outputs["presence_logits"]
        boxes, masks = outputs["pred_boxes"], outputs["pred_masks"]  # boxes: normalised (cx, cy, w, h)
        queries = logits.shape[0]
        thresholds = _per_query(self.threshold if threshold is None else threshold, queries)
        for name, value in [("threshold", t) for t in thresholds] + [("mask_threshold", mask_threshold)]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        sizes = _sizes(target_sizes)
        image_ids = _image_ids(outputs, sizes, queries)
        text_ids = _text_ids(outputs, prompts, queries)
        results = []
        for q in range(queries):
            image = int(image_ids[q])
            height, width = (int(v) for v in sizes[image])
            result = _select(logits[q], presence[q], boxes[q], masks[q], thresholds[q], mask_threshold, height,
                             width, deferred_masks)  # fmt: skip
            result.update(image_index=image, prompt_index=int(text_ids[q]))
            result.update(_supervision_keys(result, int(text_ids[q])))
            if prompts is not None:
                result["prompt"] = prompts[int(text_ids[q])]
            results.append(result)
        return results

    def post_process_per_image(
        self,
        outputs: Any,
        prompts: Sequence[str],
        threshold: float | Sequence[float] | None = None,
        mask_threshold: float | None = None,
        target_sizes: Sequence[Sequence[int]] | torch.Tensor | None = None,
        deferred_masks: bool = False,
    ) -> list[list[dict[str, Any]]]:
        """Per image of ``target_sizes``, the instances of every prompt, best score first (what the
        ``text-prompted-segmentation`` pipeline returns): ``score``, ``label`` (the prompt), ``box``
        (``xmin``, ``ymin``, ``xmax``, ``ymax`` pixels) and ``mask`` (bool ``[H, W]`` numpy array).

        Arguments as ``post_process_instance_segmentation``; an image no query reads gets an empty list. With
        ``deferred_masks`` each ``mask`` is a :class:`DeferredMask` (``np.asarray(mask)`` gives the array).
        """
        prompts = list(prompts)
        queries = self.post_process_instance_segmentation(
            outputs, threshold, mask_threshold, target_sizes, prompts, deferred_masks
        )
        per_image: list[list[dict[str, Any]]] = [[] for _ in range(len(_sizes(target_sizes)))]
        for query in queries:
            found = per_image[query["image_index"]]
            for score, box, mask in zip(query["scores"], query["boxes"], query["masks"], strict=True):
                x0, y0, x1, y1 = (float(v) for v in box)
                mask = mask if deferred_masks else np.asarray(mask.cpu())
                found.append({"score": float(score), "label": query["prompt"], "mask": mask,
                              "box": {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}})  # fmt: skip
        return [sorted(found, key=lambda d: -d["score"]) for found in per_image]


def prepare_geometry(
    original_sizes: Sequence[Sequence[int]] | torch.Tensor | None,
    input_boxes: Any = None,
    input_boxes_labels: Any = None,
    input_points: Any = None,
    input_points_labels: Any = None,
) -> dict[str, torch.Tensor]:
    """The model's geometric prompts from pixel coordinates of images of ``original_sizes`` ((height, width) each):
    ``input_boxes`` ``[B, N, 4]`` normalised ``(cx, cy, w, h)``, ``input_points`` ``[B, P, 2]`` normalised
    ``(x, y)``, labels ``[B, N]`` / ``[B, P]`` (1 positive, 0 negative, -10 padding).

    ``original_sizes=None`` checks the prompts of one image of unknown size (values kept in pixels): a command
    refuses a wrong prompt before it writes anything."""
    sizes = (
        [[None, None]] if original_sizes is None else torch.as_tensor(original_sizes).reshape(-1, 2).tolist()
    )
    result: dict[str, torch.Tensor] = {}
    for name, coords, labels, width in (("input_boxes", input_boxes, input_boxes_labels, 4),
                                        ("input_points", input_points, input_points_labels, 2)):  # fmt: skip
        if coords is None:
            if labels is not None:
                raise ValueError(f"{name}_labels given without {name}")
            continue
        per_image = _per_image(coords, len(sizes), 3, name)
        per_labels = None if labels is None else _per_image(labels, len(sizes), 2, f"{name}_labels")
        result[name], result[f"{name}_labels"] = _normalised(name, per_image, per_labels, sizes, width)
    return result


def prepare_object_prompts(
    original_sizes: Sequence[Sequence[int]] | torch.Tensor,
    input_points: Any = None,
    input_labels: Any = None,
    input_boxes: Any = None,
) -> dict[str, torch.Tensor]:
    """See :meth:`Sam3LiteTextImageProcessor.prepare_object_prompts`."""
    sizes = torch.as_tensor(original_sizes).reshape(-1, 2).tolist()
    result: dict[str, torch.Tensor] = {}
    objects = None
    if input_points is not None:
        points = _per_image(input_points, len(sizes), 4, "input_points")
        labels = None if input_labels is None else _per_image(input_labels, len(sizes), 3, "input_labels")
        objects = max(len(p) for p in points)
        counts = {len(o) for p in points for o in p}
        if len(counts) > 1:  # a padding token would still be attended to: no padding, as the original
            raise ValueError(
                f"input_points: every object needs the same number of points, got {sorted(counts)}"
            )
        count = counts.pop() if counts else 0
        coords = torch.zeros(len(sizes), objects, count, 2)
        kinds = torch.full((len(sizes), objects, count), -10, dtype=torch.long)
        for b, per_image in enumerate(points):
            if len(per_image) != objects:
                raise ValueError(
                    f"input_points[{b}]: every image needs the same number of objects ({objects})"
                )
            for o, per_object in enumerate(per_image):
                given = labels[b][o] if labels is not None and o < len(labels[b]) else None
                part, part_labels = _normalised(f"input_points[{b}][{o}]", [per_object],
                                                None if given is None else [given], [sizes[b]], 2)  # fmt: skip
                coords[b, o, : part.shape[1]], kinds[b, o, : part.shape[1]] = part[0], part_labels[0]
        result.update(input_points=coords, input_labels=kinds)
    elif input_labels is not None:
        raise ValueError("input_labels given without input_points")
    if input_boxes is not None:
        boxes = _per_image(input_boxes, len(sizes), 3, "input_boxes")
        normalised = []
        for b, per_image in enumerate(boxes):
            if objects is not None and len(per_image) != objects:
                raise ValueError(f"input_boxes[{b}]: one box per object ({objects}), got {len(per_image)}")
            height, width = sizes[b]
            normalised.append(torch.stack([_coordinates(f"input_boxes[{b}][{o}]", box, 4, width, height, True)
                                           for o, box in enumerate(per_image)]))  # fmt: skip
        if len({len(n) for n in normalised}) > 1:
            raise ValueError("input_boxes: every image needs the same number of objects")
        result["input_boxes"] = torch.stack(normalised)
    return result


def _per_image(value: Any, images: int, depth: int, name: str) -> list[list[Any]]:
    """``value`` as one list per image (an image's list alone is accepted for one image)."""
    value = value.tolist() if isinstance(value, torch.Tensor | np.ndarray) else value
    if not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list per image, got {type(value).__name__}")
    nested = _depth(value)
    if nested == depth - 1 and images == 1:
        value = [value]
    elif nested != depth and not (nested == 1 and not value):
        raise ValueError(f"{name}: expected {'a list per image of ' if images > 1 else ''}"
                         f"{'coordinate lists' if depth == 3 else 'labels'}, got nesting depth {nested}")  # fmt: skip
    if len(value) != images:
        raise ValueError(f"{name}: give one list per image ({images}), got {len(value)}")
    return [list(v) for v in value]


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, Sequence) and not isinstance(value, str):
        depth += 1
        if not value:
            break
        value = value[0]
    return depth


def _normalised(
    name: str,
    coords: list[list[Any]],
    labels: list[list[Any]] | None,
    sizes: list[list[int | None]],
    width: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ``[B, n, width]`` normalised coordinates and ``[B, n]`` labels for one prompt kind."""
    count = max((len(c) for c in coords), default=0)
    out = torch.zeros(len(coords), count, width)
    out_labels = torch.full((len(coords), count), -10, dtype=torch.long)
    for b, (items, (height, img_width)) in enumerate(zip(coords, sizes, strict=True)):
        given = [1] * len(items) if labels is None else labels[b]
        if len(given) != len(items):
            raise ValueError(f"{name}_labels[{b}]: one label per item ({len(items)}), got {len(given)}")
        for n, (item, label) in enumerate(zip(items, given, strict=True)):
            out[b, n] = _coordinates(f"{name}[{b}][{n}]", item, width, img_width, height)
            if label not in (0, 1) or isinstance(label, float) and not float(label).is_integer():
                raise ValueError(
                    f"{name}_labels[{b}][{n}] must be 1 (positive) or 0 (negative), got {label!r}"
                )
            out_labels[b, n] = int(label)
    return out, out_labels


def _coordinates(
    name: str, item: Any, width: int, img_width: int | None, height: int | None, corners: bool = False
) -> torch.Tensor:
    """One box (x1, y1, x2, y2 -> normalised cx, cy, w, h, or normalised corners with ``corners``) or point
    (x, y -> normalised), checked; without an image size only the values are checked (and returned as given)."""
    values = torch.as_tensor(item, dtype=torch.float64).reshape(-1)
    kind = "[x1, y1, x2, y2]" if width == 4 else "[x, y]"
    if values.numel() != width or not torch.isfinite(values).all():
        raise ValueError(f"{name} must be {width} finite pixel coordinates {kind}, got {item!r}")
    if width == 4 and (values[2] < values[0] or values[3] < values[1]):
        raise ValueError(f"{name} must have x2 >= x1 and y2 >= y1, got {item!r}")
    if img_width is None or height is None:
        return values.float()
    normalised = values / torch.tensor([img_width, height] * (width // 2), dtype=torch.float64)
    if (normalised < -1).any() or (normalised > 2).any():
        raise ValueError(f"{name}: {kind} {item!r} lies far outside the {img_width}x{height} image")
    if width == 4 and not corners:
        x1, y1, x2, y2 = normalised.tolist()
        normalised = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dtype=torch.float64)
    return normalised.float()


def _select(
    logits: torch.Tensor,
    presence: torch.Tensor,
    boxes: torch.Tensor,
    masks: torch.Tensor,
    threshold: float,
    mask_threshold: float,
    height: int,
    width: int,
    deferred: bool = False,
) -> dict[str, Any]:
    """The original ``Sam3Processor`` selection for one query: score, pixel boxes, resized masks."""
    scores = torch.sigmoid(logits[:, 0]) * torch.sigmoid(presence.reshape(()))
    keep = scores > threshold
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    chosen = {"scores": scores[keep], "boxes": center_to_corners(boxes[keep]) * scale}
    if deferred:
        return {**chosen, "masks": [DeferredMask(m, (height, width), mask_threshold) for m in masks[keep]]}
    probs = _resize(masks[keep], height, width)
    return {**chosen, "mask_probs": probs, "masks": probs > mask_threshold}


def _resize(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Mask probabilities [K, height, width] of low-resolution mask logits [K, h, w] (bilinear, sigmoid)."""
    return F.interpolate(
        masks[:, None], size=(height, width), mode="bilinear", align_corners=False
    ).sigmoid()[:, 0]


class DeferredMask:
    """An instance mask kept at the model's resolution until read: ``np.asarray(mask)`` resizes it to its image
    exactly as post-processing does (the same bilinear resize and threshold), one image-sized array at a time."""

    def __init__(self, logits: torch.Tensor, size: tuple[int, int], mask_threshold: float) -> None:
        self.logits, self.shape, self.mask_threshold = logits, size, mask_threshold

    def numpy(self) -> np.ndarray:
        return (_resize(self.logits[None], *self.shape)[0] > self.mask_threshold).cpu().numpy()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)


def _supervision_keys(result: dict[str, Any], prompt_index: int) -> dict[str, Any]:
    """``labels``, ``segmentation`` (the ``masks`` tensor itself, no copy) and ``segments_info``."""
    scores = result["scores"]
    labels = torch.full(scores.shape, prompt_index, dtype=torch.long, device=scores.device)
    info = [{"id": k, "label_id": prompt_index, "score": float(s)} for k, s in enumerate(scores.tolist())]
    return {"labels": labels, "segmentation": result["masks"], "segments_info": info}


def _per_query(threshold: float | Sequence[float] | torch.Tensor, queries: int) -> list[float]:
    if isinstance(threshold, int | float):
        return [float(threshold)] * queries
    values = [float(t) for t in threshold]
    if len(values) != queries:
        raise ValueError(f"threshold: give one value or one per query ({queries}), got {len(values)}")
    return values


def _get(outputs: Any, name: str) -> Any:
    return outputs.get(name) if hasattr(outputs, "get") else getattr(outputs, name, None)


def _sizes(target_sizes: Any) -> torch.Tensor:
    """[images, 2] (height, width)."""
    if target_sizes is None:
        raise ValueError("target_sizes: give the (height, width) of every original image")
    sizes = torch.as_tensor(target_sizes)
    if sizes.ndim != 2 or sizes.shape[1] != 2 or not len(sizes):
        raise ValueError(f"target_sizes must hold (height, width) pairs, got shape {list(sizes.shape)}")
    return sizes


def _image_ids(outputs: Any, sizes: torch.Tensor, queries: int) -> torch.Tensor:
    """The outputs' ``image_ids``; without them image 0 for every query (one size) or image q (one per query)."""
    ids = _get(outputs, "image_ids")
    if ids is not None:
        ids = torch.as_tensor(ids).reshape(-1).cpu()
        if len(sizes) <= int(ids.max()):
            raise ValueError(f"target_sizes must hold {int(ids.max()) + 1} (height, width) pairs (one per image "
                             f"the outputs' image_ids name), got {len(sizes)}")  # fmt: skip
        return ids
    if len(sizes) == 1:
        return torch.zeros(queries, dtype=torch.long)
    if len(sizes) == queries:
        return torch.arange(queries)
    raise ValueError(f"target_sizes must hold {' or '.join(map(str, sorted({1, queries})))} (height, width) "
                     f"pairs (one image for every query, or one per query), got {len(sizes)}; outputs without "
                     "image_ids cannot say which image each query read")  # fmt: skip


def _text_ids(outputs: Any, prompts: Sequence[str] | None, queries: int) -> torch.Tensor:
    """The outputs' ``text_ids``; without them prompt 0 for every query (one prompt given) or prompt q."""
    ids = _get(outputs, "text_ids")
    if ids is not None:
        ids = torch.as_tensor(ids).reshape(-1).cpu()
    elif prompts is not None and len(prompts) == 1:
        ids = torch.zeros(queries, dtype=torch.long)
    elif prompts is not None and len(prompts) != queries:
        raise ValueError(f"prompts: outputs without text_ids need one prompt or one per query ({queries}), "
                         f"got {len(prompts)}")  # fmt: skip
    else:
        ids = torch.arange(queries)
    if prompts is not None and len(prompts) <= int(ids.max()):
        raise ValueError(f"prompts: the outputs read {int(ids.max()) + 1} prompts, got {len(prompts)}")
    return ids
