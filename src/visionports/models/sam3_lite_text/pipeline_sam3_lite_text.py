"""The ``text-prompted-segmentation`` pipeline: image + prompt(s) -> ``[{score, label, box, mask}]``."""

from __future__ import annotations

import os
from typing import Any

from transformers import Pipeline
from transformers.image_utils import load_image

from ...utils.images import open_image, to_rgb
from ...utils.masks import mask_box
from .tokenization_sam3_lite_text import Sam3LiteTextTokenizer

TASK = "text-prompted-segmentation"
INTERACTIVE_TASK = "interactive-segmentation"
VIDEO_TASK = "text-prompted-video-segmentation"
GEOMETRY = ("input_boxes", "input_boxes_labels", "input_points", "input_points_labels")
VISUAL_PROMPT = "visual"
"""What the original ``Sam3Processor`` reads when a query has box exemplars and no text."""


class TextPromptedSegmentationPipeline(Pipeline):
    """``pipeline("text-prompted-segmentation", model=folder)(image, prompts=["a cat", "a dog"], threshold=0.5)``.

    Every prompt queries the image (its features are computed once); a list of images gives one list of results
    per image, equal to calling the pipeline on each image. Each result is a dict with ``score``,
    ``label`` (the prompt), ``box`` (``xmin``, ``ymin``, ``xmax``, ``ymax`` in pixels) and ``mask`` (bool
    ``[H, W]`` numpy array at the image size).

    Box exemplars and points ("more like this"): ``input_boxes=[[x1, y1, x2, y2], ...]`` and
    ``input_points=[[x, y], ...]`` in the image's pixels, with ``input_boxes_labels`` / ``input_points_labels``
    (1 positive, the default; 0 negative). They join every prompt's query; without ``prompts`` the query reads
    ``"visual"`` (the original's prompt for exemplars alone), which is then the results' label. With a list of
    images they apply to each image.
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prompt_tokenizer = Sam3LiteTextTokenizer(self.model.config.text.context_length)

    def _sanitize_parameters(
        self, prompts=None, threshold=None, mask_threshold=None, deferred_masks=None, **kwargs
    ):
        preprocess = {"prompts": prompts} if prompts is not None else {}
        preprocess.update({k: kwargs.pop(k) for k in GEOMETRY if k in kwargs})
        options = (
            ("threshold", threshold),
            ("mask_threshold", mask_threshold),
            ("deferred_masks", deferred_masks),
        )
        post = {k: v for k, v in options if v is not None}
        return preprocess, {}, post

    def preprocess(self, image: Any, prompts: str | list[str] | None = None, **geometry: Any) -> dict:
        prompts = query_prompts(prompts, geometry)
        rgb = _as_rgb(image)
        batch = self.image_processor(rgb, return_tensors="pt", **geometry)
        return {"pixel_values": batch["pixel_values"].to(self.dtype), "size": (rgb.height, rgb.width),
                "input_ids": self.prompt_tokenizer(prompts)["input_ids"], "prompts": prompts,
                "geometry": {k: v for k, v in batch.items() if k in GEOMETRY}}  # fmt: skip

    def _forward(self, inputs: dict) -> dict:
        if inputs["pixel_values"].shape[0] != 1:
            raise ValueError(
                "batch_size > 1 is not supported: pass a list of images (each image's features are computed once "
                "and every prompt queries it)"
            )
        vision = self.model.get_image_features(inputs["pixel_values"])
        text = self.model.get_text_features(inputs["input_ids"], return_dict=True)
        out = self.model(text_outputs=text, vision_outputs=vision, **inputs["geometry"])
        return {"outputs": out, "size": inputs["size"], "prompts": inputs["prompts"]}

    def postprocess(
        self,
        model_outputs: dict,
        threshold: float | None = None,
        mask_threshold: float | None = None,
        deferred_masks: bool = False,
    ):
        """The image's instances of every prompt (``post_process_per_image``), best score first;
        ``deferred_masks=True``: each ``mask`` a ``DeferredMask`` (resized when read: bounded memory)."""
        return self.image_processor.post_process_per_image(
            model_outputs["outputs"], model_outputs["prompts"], threshold=threshold,
            mask_threshold=mask_threshold, target_sizes=[model_outputs["size"]], deferred_masks=deferred_masks,
        )[0]  # fmt: skip


class InteractiveSegmentationPipeline(Pipeline):
    """``pipeline("interactive-segmentation", model=folder)(image, input_points=[[x, y]], input_labels=[1])``.

    One object's mask from clicks and/or a box, as the original ``predict_inst`` (SAM 1 task): ``input_points``
    ``[[x, y], ...]`` in pixels with ``input_labels`` (1 on the object, the default; 0 off it), and/or
    ``input_boxes=[x1, y1, x2, y2]``. ``multimask_output=True`` (the default) returns three candidates for an
    ambiguous prompt, else the best one. Each result: ``score`` (the predicted IoU) and ``mask`` (bool ``[H, W]``
    numpy array at the image size), best first. Needs a folder converted with the tracker weights.
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, input_points=None, input_labels=None, input_boxes=None, multimask_output=None,
                             max_hole_area=None, **kwargs):  # fmt: skip
        prompts = {"input_points": input_points, "input_labels": input_labels, "input_boxes": input_boxes}
        preprocess = {k: v for k, v in prompts.items() if v is not None}
        forward = {} if multimask_output is None else {"multimask_output": bool(multimask_output)}
        post = {} if max_hole_area is None else {"max_hole_area": float(max_hole_area)}
        return preprocess, forward, post

    def preprocess(self, image: Any, input_points=None, input_labels=None, input_boxes=None) -> dict:
        if input_points is None and input_boxes is None:
            raise ValueError("give input_points=[[x, y], ...] and/or input_boxes=[x1, y1, x2, y2] (pixels)")
        rgb = _as_rgb(image)
        pixels = self.image_processor(rgb, return_tensors="pt")["pixel_values"].to(self.dtype)
        prompts = self.image_processor.prepare_object_prompts(
            [(rgb.height, rgb.width)],
            input_points=None if input_points is None else [input_points],
            input_labels=None if input_labels is None else [input_labels],
            input_boxes=None if input_boxes is None else [input_boxes],
        )
        return {"pixel_values": pixels, "prompts": prompts, "size": (rgb.height, rgb.width)}

    def _forward(self, inputs: dict, multimask_output: bool = True) -> dict:
        out = self.model.predict_masks(inputs["pixel_values"], multimask_output=multimask_output,
                                       **inputs["prompts"])  # fmt: skip
        return {"outputs": out, "size": inputs["size"]}

    def postprocess(self, model_outputs: dict, max_hole_area: float = 256.0) -> list[dict]:
        result = self.image_processor.post_process_masks(
            model_outputs["outputs"], [model_outputs["size"]], max_hole_area=max_hole_area
        )[0]
        masks, scores = result["masks"][0], result["scores"][0]
        order = scores.argsort(descending=True).tolist()
        return [{"score": float(scores[k]), "mask": masks[k].cpu().numpy()} for k in order]


class TextPromptedVideoSegmentationPipeline(Pipeline):
    """``pipeline("text-prompted-video-segmentation", model=folder)(video, prompt="a person")``.

    Every instance the prompt names, tracked through ``video`` (a video file, a folder of frames, or a list of
    images) as the original SAM3 video model tracks it (:class:`Sam3LiteTextVideoSession`, streamed frame by frame;
    needs a folder with the tracker weights). Returns one entry per frame: ``frame`` (its index) and ``objects``,
    each with ``id`` (the track), ``score`` (its detection score when the track started), ``box`` (``xmin``,
    ``ymin``, ``xmax``, ``ymax`` pixels) and ``mask`` (bool ``[H, W]``). ``threshold`` / ``new_object_threshold``
    override the original's 0.5 / 0.7. Every frame's masks are returned: for long videos use
    ``visionports segment-video``, which writes them as they come.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __call__(self, video: Any, **kwargs: Any) -> Any:
        """``video``: a file or folder (or a list of them, one result each), or a list of frames (one video)."""
        if isinstance(video, list | tuple) and video and not isinstance(video[0], str | os.PathLike):
            video = _Frames(video)  # frames of one video, not a batch of inputs
        return super().__call__(video, **kwargs)

    def _sanitize_parameters(
        self, prompt=None, threshold=None, new_object_threshold=None, fps=None, **kwargs
    ):
        preprocess = {"prompt": prompt} if prompt is not None else {}
        if fps is not None:
            preprocess["fps"] = fps
        forward = {k: v for k, v in (("score_threshold_detection", threshold),
                                     ("new_det_thresh", new_object_threshold)) if v is not None}  # fmt: skip
        return preprocess, forward, {}

    def preprocess(self, video: Any, prompt: str | None = None, fps: float = 10) -> dict:
        from .tokenization_sam3_lite_text import Sam3LiteTextTokenizer

        if not prompt or not prompt.strip():
            raise ValueError("prompt: give the text of what to track, e.g. prompt='a person'")
        ids = Sam3LiteTextTokenizer(self.model.config.text.context_length)([prompt])["input_ids"]
        return {"frames": _video_frames(video, fps), "input_ids": ids}

    def _forward(self, inputs: dict, **settings: float) -> dict:
        from ...tasks.track_video import frame_pixels
        from .video_sam3_lite_text import Sam3LiteTextVideoSession, Sam3LiteTextVideoSettings

        session, outputs = None, []
        for frame in inputs["frames"]:
            if session is None:
                session = Sam3LiteTextVideoSession(self.model, inputs["input_ids"].to(self.model.device),
                                                   Sam3LiteTextVideoSettings(**settings),
                                                   video_size=(frame.height, frame.width))  # fmt: skip
            outputs += session.step(frame_pixels(frame, self.model.config.image_size).to(self.model.device))
        if session is None:
            raise ValueError("the video has no frames")
        return {"outputs": outputs + session.flush()}

    def postprocess(self, model_outputs: dict) -> list[dict]:
        return [{"frame": out.frame_index, "objects": [_track_object(i, s, m.cpu().numpy())
                                                        for i, s, m in zip(out.obj_ids, out.scores, out.masks, strict=True)]}
                for out in model_outputs["outputs"]]  # fmt: skip


class _Frames:
    """The frames of one video given as images (a plain list would be a batch of separate inputs)."""

    def __init__(self, frames: Any) -> None:
        self.frames = list(frames)


def _video_frames(video: Any, fps: float) -> Any:
    """RGB PIL frames of a video file or frame folder (decoded one at a time) or of a list of images."""
    from ...utils.video import iter_frames_with_times

    if isinstance(video, str | os.PathLike):
        return (frame for frame, _ in iter_frames_with_times(os.fspath(video), fps))
    return (_as_rgb(frame) for frame in (video.frames if isinstance(video, _Frames) else video))


def _track_object(obj_id: Any, score: Any, mask: Any) -> dict[str, Any]:
    box = dict(zip(("xmin", "ymin", "xmax", "ymax"), mask_box(mask), strict=True))
    return {"id": int(obj_id), "score": float(score), "mask": mask, "box": box}


def query_prompts(prompts: str | list[str] | None, geometry: dict[str, Any]) -> list[str]:
    """The text of every query: the prompts, or ``"visual"`` for box/point exemplars given alone."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts or [])
    if not prompts and any(geometry.get(k) is not None for k in ("input_boxes", "input_points")):
        return [VISUAL_PROMPT]
    if not prompts or any(not p.strip() for p in prompts):
        raise ValueError("prompts: give at least one non-empty text prompt, e.g. prompts='a cat' (or input_boxes / "
                         "input_points alone)")  # fmt: skip
    return prompts


def _as_rgb(image: Any) -> Any:
    """An RGB PIL image of a path, URL, PIL image, array or tensor (``ImageInputError`` when it is none)."""
    if isinstance(image, os.PathLike):
        image = os.fspath(image)
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        return to_rgb(load_image(image), name=image)
    if isinstance(image, str):
        return open_image(image)
    return to_rgb(image)


def register_pipeline() -> None:
    from transformers.pipelines import PIPELINE_REGISTRY

    from .modeling_sam3_lite_text import Sam3LiteTextModel

    for task, pipeline_class, kind in ((TASK, TextPromptedSegmentationPipeline, "multimodal"),
                                       (INTERACTIVE_TASK, InteractiveSegmentationPipeline, "image"),
                                       (VIDEO_TASK, TextPromptedVideoSegmentationPipeline, "multimodal")):  # fmt: skip
        if task not in PIPELINE_REGISTRY.get_supported_tasks():
            PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class, pt_model=Sam3LiteTextModel,
                                                type=kind)  # fmt: skip
