"""``visionports segment-video``: run an online video segmenter over a video and render its masks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.devices import place, resolve_device, resolve_dtype, to_model
from ..core.files import require_family_folder
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
from ..utils.video import VideoWriter, check_encodable, iter_frames_with_times, require_av, video_fps
from .runner import load_model_folder, lock_output, progress_bar, write_json


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


Segment = tuple[np.ndarray, int, str]  # boolean [t, H, W] mask, colour key, caption


def _chunks(source: Path, chunk: int) -> Iterator[tuple[list[Image.Image], list[Fraction]]]:
    """The frames of ``source`` and their timestamps, ``chunk`` at a time (decoded lazily)."""
    frames, times = [], []
    for frame, time in iter_frames_with_times(source):
        frames.append(frame)
        times.append(time)
        if len(frames) == chunk:
            yield frames, times
            frames, times = [], []
    if frames:
        yield frames, times


def _run(
    model, processor, source: Path, chunk: int, bar
) -> Iterator[tuple[list[Image.Image], list[Fraction], tuple]]:
    """One pass over the video: per chunk its frames, times and post-processing inputs (``per_video_outputs``).

    Each chunk is preprocessed alone (every frame of a video has the same resized and padded size) and the
    model's state carries from chunk to chunk, so a second pass repeats the first exactly."""
    state = None
    for frames, times in _chunks(source, chunk):
        inputs = processor([frames], return_tensors="pt")
        with torch.inference_mode():
            out = model(
                to_model({"pixel_values": inputs["pixel_values"]}, model)["pixel_values"], state=state
            )
        state = out.state
        outputs = {"class_queries_logits": out.class_queries_logits.float().cpu(),
                   "masks_queries_logits": out.masks_queries_logits.half().cpu().float()}  # fmt: skip
        yield frames, times, per_video_outputs(outputs, inputs["original_sizes"], inputs["resized_sizes"])[0]
        bar.update(len(frames))


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

    def segments(self, args: tuple) -> list[tuple[int, Segment]]:
        masks = args[1]
        if self.task == "instance":
            chosen = instance_chunk_masks(masks, self.queries, *args[2:])
            return [(n, (chosen[n].numpy(), *self.listed[n])) for n in self.listed]
        if self.task == "semantic":
            classes = semantic_chunk_map(self.probs, masks, *args[2:])
            return [(int(c), ((classes == c).numpy(), int(c), self._name(c))) for c in torch.unique(classes)]
        owner, regions = panoptic_chunk_regions(self.choice, masks, *args[2:])
        seg = panoptic_chunk_map(owner, regions, self.ids)
        return [(n, ((seg == i).numpy(), *self.listed[n])) for n, i in enumerate(self.segment_ids)]


def _payload(source: Path, output: Path, task: str, frames: int, found: dict[int, list]) -> dict:
    """``found``: order -> (key, caption, frames where the segment shows)."""
    return {"source": str(source), "output": str(output), "task": task, "frames": frames,
            "segments": [{"key": key, "caption": caption, "frames": shown}
                         for key, caption, shown in (found[n] for n in sorted(found))]}  # fmt: skip


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
) -> SegmentationRun:
    """Segment a video file (or a folder of frames) and write the annotated video (and JSON).

    PyAV, the frames and the output are checked before the model loads; the output is locked against a
    second run. An earlier JSON is removed before the video is replaced, so a killed run never leaves a new
    video beside an old JSON (the JSON names its ``source`` and ``output``).
    """
    require_av()
    where, precision = resolve_device(device), resolve_dtype(dtype)
    source, output = Path(source), Path(output)
    json_file = None if json_path is None else Path(json_path)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    first = iter_frames_with_times(source)  # upright (rotation applied); decoded lazily, twice or thrice
    size = next(first)[0].size
    first.close()
    check_encodable(*size, str(source))
    model_dir, _ = require_family_folder(model_dir, "segment-video")  # before the output folder is created
    with lock_output(output.parent, output.parent / f".{output.name}.lock"):
        model, processor = load_model_folder(model_dir, _load)
        model = place(model, where, precision)
        task = task or processor.task
        classes, times = [], []
        with progress_bar(None, "segment", "frame", progress) as bar:
            for _, chunk_times, args in _run(model, processor, source, chunk, bar):
                classes.append(args[0])
                times += chunk_times
        plan = _Plan(task, processor, torch.cat(classes), model.config.id2label)
        if plan.needs_counts:
            with progress_bar(len(times), "count", "frame", progress) as bar:
                plan.settle(sum(plan.count(args) for _, _, args in _run(model, processor, source, chunk, bar)),
                            processor)  # fmt: skip
        found = {n: [key, caption, []] for n, (key, caption) in plan.listed.items()}
        fps = video_fps(source) if source.is_file() else 10
        if json_file is not None:
            json_file.unlink(missing_ok=True)
        audio = source if source.is_file() else None
        start = 0
        with (
            VideoWriter(output, size, times, fps=fps, audio_from=audio) as writer,
            progress_bar(len(times), "render", "frame", progress) as bar,
        ):
            for frames, _, args in _run(model, processor, source, chunk, bar):
                drawn = plan.segments(args)
                for frame in render(frames, [segment for _, segment in drawn]):
                    writer.write(frame)
                for n, (mask, key, caption) in drawn:
                    entry = found.setdefault(n, [key, caption, []])
                    entry[2] += [start + int(t) for t in np.nonzero(mask.any((1, 2)))[0]]
                start += len(frames)
        if json_file is not None:
            write_json(json_file, _payload(source, output, task, len(times), found))
    summary = f"{len(found)} segment(s)" + "".join(f"; {note}" for note in writer.notes)
    return SegmentationRun(len(times), output, json_file, summary)
