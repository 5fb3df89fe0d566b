"""``visionports segment-video``: run an online video segmenter over a video and render its masks."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain, islice
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..backends import speed_settings
from ..core.devices import place, resolve_device, resolve_dtype, run_settings, to_model
from ..core.files import atomic_write, require_family_folder
from ..models.videomt.postprocessing_videomt import (
    instance_choice,
    instance_chunk_masks,
    panoptic_choice,
    panoptic_chunk_counts,
    panoptic_chunk_map,
    panoptic_chunk_regions,
    panoptic_ids,
    semantic_chunk_map,
    video_class_probs,
)
from ..models.videomt.video_processing_videomt import per_video_outputs
from ..utils.drawing import blend_masks, caption_masks
from ..utils.masks import encode_rle
from ..utils.prefetch import Prefetch
from ..utils.video import (
    LiveSource,
    VideoWriter,
    check_encodable,
    iter_frames_with_times,
    live_source,
    require_av,
    video_fps,
)
from .runner import load_model_folder, lock_output, progress_bar


@dataclass
class SegmentationRun:
    frames: int
    output: Path
    json_path: Path | None
    summary: str


def render(frames: list[Image.Image], segments: list[tuple[np.ndarray, int, str]]) -> list[np.ndarray]:
    """Frames with each segment filled and outlined in its track's colour and captioned (utils.drawing)."""
    keys = [key for _, key, _ in segments]
    captions = [caption for _, _, caption in segments]
    out = []
    for t, frame in enumerate(frames):
        masks = [mask[t] for mask, _, _ in segments]  # empty ones are neither blended nor captioned
        out.append(np.asarray(caption_masks(blend_masks(frame, masks, keys), masks, keys, captions)))
    return out


def _load(model_dir: Path) -> tuple:
    """The model (eval mode) and its processor."""
    from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation

    model = AutoModelForUniversalSegmentation.from_pretrained(model_dir).eval()
    return model, AutoImageProcessor.from_pretrained(model_dir)


def segmenter_loader(
    device: str | None, dtype: str | None, backend: str, deploy: bool, compile_model: bool
) -> Callable[[Path], tuple]:
    """The loader of ``segment_video``'s model (called like the eager one) and processor, per speed option."""

    def load(model_dir: Path) -> tuple:
        from transformers import AutoImageProcessor

        if backend != "torch":
            from ..backends.videomt import load_segmenter

            segmenter = load_segmenter(model_dir, backend, device, dtype)
            return segmenter, AutoImageProcessor.from_pretrained(model_dir)
        model, processor = _load(model_dir)
        model = place(model, resolve_device(device), resolve_dtype(dtype))
        if deploy:
            model.deploy()
        if compile_model:
            model.forward = torch.compile(model.forward, dynamic=False)  # one graph per chunk shape
        return model, processor

    return load


Segment = tuple[np.ndarray, int, str]  # boolean [t, H, W] mask, colour key, caption


class FrameChunks:
    """The source's frames ``chunk`` at a time, decoded ahead by at most two chunks (``utils.prefetch``).

    A file or folder can be read again for every pass; a live source (stdin, a URL, a device) is read once,
    and a realtime one drops the oldest decoded frames when the model falls behind (counted in ``dropped``).
    """

    def __init__(self, source: Path | LiveSource, fps: float, chunk: int) -> None:
        self.source, self.fps, self.chunk, self.dropped = source, fps, chunk, 0
        self._opened: tuple[Prefetch, tuple] | None = None  # a live source's stream and its first frame

    def size(self) -> tuple[int, int]:
        """(width, height) of the first frame: read alone from a file, kept for the first pass of a live one."""
        if not isinstance(self.source, LiveSource):
            first = iter_frames_with_times(self.source, self.fps)
            try:
                return next(first)[0].size
            finally:
                first.close()
        stream = self._stream()
        self._opened = stream, next(stream)
        return self._opened[1][0].size

    def _stream(self) -> Prefetch:
        realtime = isinstance(self.source, LiveSource) and self.source.realtime
        return Prefetch(iter_frames_with_times(self.source, self.fps), 2 * self.chunk, drop_oldest=realtime)

    def chunks(self) -> Iterator[tuple[list[Image.Image], list[Fraction]]]:
        """One pass: lists of at most ``chunk`` frames and their timestamps."""
        stream, first = self._opened or (self._stream(), None)
        self._opened = None
        with stream:
            pairs = chain([first] if first else [], stream)
            while batch := list(islice(pairs, self.chunk)):
                yield [frame for frame, _ in batch], [time for _, time in batch]
            self.dropped = stream.dropped


def run_chunks(
    model, processor, frames: FrameChunks, bar
) -> Iterator[tuple[list[Image.Image], list[Fraction], tuple]]:
    """One pass over the video: per chunk its frames, times and post-processing inputs (``per_video_outputs``).

    Each chunk is preprocessed alone (every frame of a video has the same resized and padded size) and the
    model's state carries from chunk to chunk, so a second pass repeats the first exactly."""
    state = None
    for chunk_frames, times in frames.chunks():
        inputs = processor([chunk_frames], return_tensors="pt")
        pixels = inputs["pixel_values"]
        if isinstance(model, torch.nn.Module):  # a graph backend takes float32 CPU frames as they are
            pixels = to_model({"pixel_values": pixels}, model)["pixel_values"]
        with torch.inference_mode():
            out = model(pixels, state=state)
        state = out.state
        outputs = {"class_queries_logits": out.class_queries_logits.float().cpu(),
                   "masks_queries_logits": out.masks_queries_logits.half().cpu().float()}  # fmt: skip
        yield (
            chunk_frames,
            times,
            per_video_outputs(outputs, inputs["original_sizes"], inputs["resized_sizes"])[0],
        )
        bar.update(len(chunk_frames))


class _Plan:
    """The video-level choices of one task and, per chunk, the segments to draw.

    Built from the class logits of all frames ([T, Q, K+1], small); ``segments(args)`` takes a chunk's
    ``per_video_outputs`` and returns (order, segment) pairs; ``order`` sorts the JSON's segment list."""

    def __init__(self, task: str, processor, class_logits: torch.Tensor, id2label: dict) -> None:
        self.task, self.names, self.listed = task, id2label, {}
        if task == "instance":
            self.scores, self.labels, self.queries = instance_choice(class_logits, processor.max_instances)
            chosen = zip(self.scores, self.labels, self.queries, strict=True)
            self.listed = {
                n: (int(t), f"#{int(t)} {self._name(lab)} {float(s):.2f}")
                for n, (s, lab, t) in enumerate(chosen)
            }
        elif task == "semantic":
            self.probs = video_class_probs(class_logits)[:, :-1]
        elif task == "panoptic":
            if processor.num_thing_classes is None:
                raise ValueError("panoptic post-processing needs num_thing_classes (things-first labels)")
            self.choice = panoptic_choice(class_logits, processor.object_threshold)
        else:
            raise ValueError(f"task must be instance, semantic or panoptic, got {task!r}")

    def _name(self, label) -> str:
        return str(self.names.get(int(label), int(label)))

    def describe(self, n: int) -> dict:
        """The JSON's ``track_id``, ``label``, ``label_id`` and ``score`` of segment ``n`` (``segments``' order):
        semantic segments (``n`` = the class) have no track or score, panoptic ones no score (``None``)."""
        if self.task == "instance":
            track, label, score = int(self.queries[n]), int(self.labels[n]), float(self.scores[n])
        elif self.task == "semantic":
            track, label, score = None, int(n), None
        else:
            track, label, score = self.idents[n][0], self.idents[n][1], None
        return {"track_id": track, "label": self._name(label), "label_id": label,
                "score": None if score is None else round(score, 6)}  # fmt: skip

    @property
    def needs_counts(self) -> bool:
        """Panoptic segments are kept by their areas over the whole video: one more pass counts them."""
        return self.task == "panoptic"

    def count(self, args: tuple) -> torch.Tensor:
        owner, masks = panoptic_chunk_regions(self.choice, args[1], *args[2:])
        return panoptic_chunk_counts(owner, masks)

    def settle(self, counts: torch.Tensor, processor) -> None:
        """Panoptic: the segment ids from the whole video's counts."""
        self.ids, found = panoptic_ids(
            self.choice, counts, int(processor.num_thing_classes), processor.overlap_threshold
        )
        self.listed = {
            n: (s["track_id"], f"#{s['track_id']} {self._name(s['label'])}") for n, s in enumerate(found)
        }
        self.segment_ids = [s["id"] for s in found]
        self.idents = [(int(s["track_id"]), int(s["label"])) for s in found]

    def segments(self, args: tuple) -> list[tuple[int, tuple, Segment]]:
        """(order, identity, segment) per segment of a chunk; identity: (track, label) or (class,), which
        stays the same while the one-pass choice changes from chunk to chunk."""
        masks = args[1]
        if self.task == "instance":
            chosen = instance_chunk_masks(masks, self.queries, *args[2:])
            return [(n, (int(self.queries[n]), int(self.labels[n])), (chosen[n].numpy(), *self.listed[n]))
                    for n in self.listed]  # fmt: skip
        if self.task == "semantic":
            classes = semantic_chunk_map(self.probs, masks, *args[2:])
            return [(int(c), (int(c),), ((classes == c).numpy(), int(c), self._name(c)))
                    for c in torch.unique(classes)]  # fmt: skip
        owner, regions = panoptic_chunk_regions(self.choice, masks, *args[2:])
        seg = panoptic_chunk_map(owner, regions, self.ids)
        return [
            (n, self.idents[n], ((seg == i).numpy(), *self.listed[n])) for n, i in enumerate(self.segment_ids)
        ]


def _header(source: str, output: Path, task: str, frames: int, **extra) -> dict:
    return {"source": source, "output": str(output), "task": task, **extra, "frames": frames}


SEGMENT_KEYS = ("key", "caption", "frames", "track_id", "label", "label_id", "score")


def write_results(path: Path, header: dict, found: list[dict]) -> None:
    """The JSON results, written atomically and streamed: each segment's ``masks`` (COCO RLE per frame of its
    ``frames``) come from its spool file, so they are never all in memory."""

    def write(tmp: Path) -> None:
        with tmp.open("w") as out:
            out.write(json.dumps(header)[:-1] + ', "segments": [')
            for n, segment in enumerate(found):
                fields = json.dumps({k: segment[k] for k in SEGMENT_KEYS})[:-1]
                out.write(("," if n else "") + "\n" + fields + ', "masks": [')
                for m, line in enumerate(segment["masks"].lines()):
                    out.write(("," if m else "") + line)
                out.write("]}")
            out.write("\n]}\n")

    atomic_write(path, write)


class RleSpool:
    """A segment's per-frame COCO RLE masks, appended to a file as chunks are rendered (bounded memory)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.path = folder, None  # the file is made with the first mask

    def extend(self, masks: Iterable[dict]) -> None:
        lines = [json.dumps(mask) + "\n" for mask in masks]
        if lines and self.path is None:
            handle, name = tempfile.mkstemp(dir=self.folder, suffix=".jsonl")
            os.close(handle)
            self.path = Path(name)
        if lines:
            with self.path.open("a") as out:
                out.writelines(lines)

    def lines(self) -> Iterator[str]:
        if self.path is None:
            return
        with self.path.open() as handle:
            for line in handle:
                yield line.rstrip("\n")


def add_shown(segment: dict, mask: np.ndarray, start: int) -> bool:
    """Append the frames (from ``start``) of a chunk's [t, H, W] mask where it shows, with their RLE (when the
    results are written)."""
    shown = np.nonzero(mask.any((1, 2)))[0]
    segment["frames"] += [start + int(t) for t in shown]
    if segment["masks"] is not None:
        segment["masks"].extend(encode_rle(mask[t]) for t in shown)
    return bool(len(shown))


def segment_video(
    source: str | Path,
    model_dir: str | Path,
    output: str | Path,
    task: str | None = None,
    json_path: str | Path | None = None,
    chunk: int = 8,
    progress: bool = True,
    device: str | None = "auto",
    dtype: str | None = "float32",
    fps: float = 10,
    online: bool = False,
    input_format: str | None = None,
    backend: str = "torch",
    deploy: bool = False,
    compile_model: bool = False,
) -> SegmentationRun:
    """Segment a video file, a folder of frames (at ``fps``) or a live source and write the annotated video.

    By default the video-level choices (which tracks, which classes) are made over the whole video, exactly as
    the whole-clip post-processing makes them, at the price of reading the video two (panoptic: three) times.
    ``online`` decides from the frames seen so far and reads once; a live source (``-`` for stdin, a URL,
    or a device with ``input_format``, see ``utils.video.LiveSource``) is always read online. PyAV, the
    frames and the output are checked before the model loads; the output is locked against a second run. An
    earlier JSON is removed before the video is replaced, so a killed run never leaves a new video beside an
    old JSON (the JSON names its ``source`` and ``output``).

    ``backend`` ``onnxruntime`` / ``openvino`` steps the frames through a validated, cached graph
    (:mod:`visionports.backends.videomt`); ``deploy`` runs the torch model in deploy mode, ``compile_model``
    wraps its forward in ``torch.compile``. The JSON header records these choices.
    """
    require_av()
    speed = speed_settings(backend, deploy, compile_model, device, dtype)  # refused before any work
    settings = {**run_settings(device, dtype), **speed}
    live = live_source(source, input_format)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frames = FrameChunks(live or Path(source), fps, chunk)
    output, json_file = Path(output), None if json_path is None else Path(json_path)
    model_dir, _ = require_family_folder(model_dir, "segment-video")  # before a live source is opened
    size = frames.size()  # upright (rotation applied)
    check_encodable(*size, str(frames.source))
    with lock_output(output.parent, output.parent / f".{output.name}.lock"):
        model, processor = load_model_folder(
            model_dir, segmenter_loader(device, dtype, backend, deploy, compile_model)
        )
        task = task or processor.task
        with tempfile.TemporaryDirectory(prefix="visionports-masks-") as spool:
            run = _Run(model, processor, frames, task, progress, None if json_file is None else Path(spool))
            plan = None if live or online else run.plan()  # the exact choices need the whole video first
            if json_file is not None:
                json_file.unlink(missing_ok=True)
            with open_writer(frames, output, size, run.times) as writer:
                found = run.render_online(writer) if plan is None else run.render(writer, plan)
            extra = {**settings, "online": bool(live or online)}
            if frames.dropped:
                extra["dropped_frames"] = frames.dropped
            if json_file is not None:
                write_results(
                    json_file, _header(str(frames.source), output, task, writer.count, **extra), found
                )
    notes = writer.notes + (
        [f"{frames.dropped} frame(s) dropped to keep up with the source"] if frames.dropped else []
    )
    summary = f"{len(found)} segment(s)" + "".join(f"; {note}" for note in notes)
    return SegmentationRun(writer.count, output, json_file, summary)


def open_writer(
    frames: FrameChunks, output: Path, size: tuple[int, int], times: list[Fraction] | None
) -> VideoWriter:
    """The output video: the source's frame rate (a folder's ``fps``), a file's audio copied through."""
    source = frames.source
    if isinstance(source, LiveSource):
        return VideoWriter(output, size, times, fps=source.rate or 25)
    fps = video_fps(source) if source.is_file() else frames.fps
    return VideoWriter(output, size, times, fps=fps, audio_from=source if source.is_file() else None)


class _Run:
    """The passes of one run over ``frames``: a first one for the whole-video choices unless online."""

    def __init__(
        self, model, processor, frames: FrameChunks, task: str, progress: bool, spool: Path | None
    ) -> None:
        self.model, self.processor, self.frames, self.task = model, processor, frames, task
        self.progress, self.names, self.times, self.spool = progress, model.config.id2label, None, spool

    def _segment(self, key: int, caption: str, info: dict) -> dict:
        masks = None if self.spool is None else RleSpool(self.spool)
        return {"key": key, "caption": caption, "frames": [], "masks": masks, **info}

    def _pass(self, desc: str, total: int | None = None) -> Iterator[tuple]:
        with progress_bar(total, desc, "frame", self.progress) as bar:
            yield from run_chunks(self.model, self.processor, self.frames, bar)

    def plan(self) -> _Plan:
        """The whole video's choices: class logits of every frame (a first pass), areas for panoptic."""
        total, self.times = None, []  # the choices need only the mean class logits over all frames
        for _, times, args in self._pass("segment"):
            chunk_sum = args[0].double().sum(0)
            total = chunk_sum if total is None else total + chunk_sum
            self.times += times
        plan = _Plan(self.task, self.processor, (total / len(self.times)).float()[None], self.names)
        if plan.needs_counts:
            counts = sum(plan.count(args) for _, _, args in self._pass("count", len(self.times)))
            plan.settle(counts, self.processor)
        return plan

    def render(self, writer: VideoWriter, plan: _Plan) -> list[dict]:
        """Exact: with the whole video's ``plan``, a pass that draws and writes every frame (each segment's
        masks RLE-encoded chunk by chunk)."""
        found = {
            n: self._segment(key, caption, plan.describe(n)) for n, (key, caption) in plan.listed.items()
        }
        start = 0
        for chunk_frames, _, args in self._pass("render", len(self.times)):
            drawn = plan.segments(args)
            self._write(writer, chunk_frames, None, drawn)
            for n, _, (mask, key, caption) in drawn:
                add_shown(found.setdefault(n, self._segment(key, caption, plan.describe(n))), mask, start)
            start += len(chunk_frames)
        return [found[n] for n in sorted(found)]

    def render_online(self, writer: VideoWriter) -> list[dict]:
        """One pass: each chunk drawn with the choices of the frames so far (mean class logits up to it;
        panoptic areas of the chunk itself), written as soon as it is decided."""
        total, seen, found, start = None, 0, {}, 0
        for chunk_frames, times, args in self._pass("segment"):
            total = args[0].sum(0) if total is None else total + args[0].sum(0)
            seen += len(chunk_frames)
            plan = _Plan(self.task, self.processor, (total / seen)[None], self.names)
            if plan.needs_counts:
                plan.settle(plan.count(args), self.processor)
            drawn = plan.segments(args)
            self._write(writer, chunk_frames, times, drawn)
            for n, ident, (mask, key, caption) in drawn:
                entry = found.get(ident) or self._segment(key, caption, plan.describe(n))
                if add_shown(entry, mask, start):  # caption and score of the latest chunk where it shows
                    found[ident] = {**entry, "caption": caption, "score": plan.describe(n)["score"]}
            start += len(chunk_frames)
        return list(found.values())

    @staticmethod
    def _write(writer: VideoWriter, chunk_frames: list, times: list | None, drawn: list) -> None:
        pictures = render(chunk_frames, [segment for _, _, segment in drawn])
        for t, picture in enumerate(pictures):
            writer.write(picture, None if times is None else times[t])
