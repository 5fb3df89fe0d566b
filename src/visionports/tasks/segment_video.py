"""``visionports segment-video``: run an online video segmenter over a video and render its masks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.devices import place, resolve_device, resolve_dtype, to_model
from ..core.files import require_family_folder
from ..utils.drawing import blend_masks, caption_masks
from ..utils.video import check_encodable, read_frames_with_times, require_av, video_fps, write_video
from .runner import load_model_folder, lock_output, progress_bar, write_json


@dataclass
class SegmentationRun:
    frames: int
    output: Path
    json_path: Path | None
    summary: str


def _segments(result, task: str, id2label: dict) -> list[tuple[np.ndarray, int, str]]:
    """(boolean [T, H, W] mask, colour key, caption) for each thing to draw."""
    if task == "instance":
        return [
            (m.numpy(), int(t), f"#{int(t)} {id2label.get(int(lab), int(lab))} {float(s):.2f}")
            for s, lab, t, m in zip(
                result["scores"], result["labels"], result["track_ids"], result["masks"], strict=True
            )
        ]
    if task == "semantic":
        return [
            ((result == c).numpy(), int(c), str(id2label.get(int(c), int(c)))) for c in torch.unique(result)
        ]
    seg = result["segmentation"]
    return [((seg == s["id"]).numpy(), s["track_id"], f"#{s['track_id']} {id2label.get(s['label'], s['label'])}")
            for s in result["segments"]]  # fmt: skip


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


def _stream(model, pixels: torch.Tensor, chunk: int, progress: bool) -> dict[str, torch.Tensor]:
    """The model over ``pixels`` [1, T, ...], ``chunk`` frames at a time; the state stays one set of queries."""
    frames, state, classes, masks = pixels.shape[1], None, [], []
    with torch.inference_mode(), progress_bar(frames, "segment", "frame", progress) as bar:
        for start in range(0, frames, chunk):
            clip = to_model({"pixel_values": pixels[:, start : start + chunk]}, model)["pixel_values"]
            out = model(clip, state=state)
            state = out.state
            classes.append(out.class_queries_logits.float().cpu())
            masks.append(out.masks_queries_logits.half().cpu())
            bar.update(min(chunk, frames - start))
    return {
        "class_queries_logits": torch.cat(classes, 1),
        "masks_queries_logits": torch.cat(masks, 1).float(),
    }


def _payload(
    source: Path, output: Path, task: str, frames: int, segments: list[tuple[np.ndarray, int, str]]
) -> dict:
    return {"source": str(source), "output": str(output), "task": task, "frames": frames,
            "segments": [{"key": key, "caption": caption, "frames": [int(t) for t in np.nonzero(m.any((1, 2)))[0]]}
                         for m, key, caption in segments]}  # fmt: skip


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
    frames, times = read_frames_with_times(source)  # upright (rotation applied), with their timestamps
    check_encodable(*frames[0].size, str(source))
    model_dir, _ = require_family_folder(model_dir, "segment-video")  # before the output folder is created
    with lock_output(output.parent, output.parent / f".{output.name}.lock"):
        model, processor = load_model_folder(model_dir, _load)
        model = place(model, where, precision)
        task = task or processor.task
        inputs = processor([frames], return_tensors="pt")
        pixels = inputs["pixel_values"]  # moved to the model chunk by chunk
        outputs = _stream(model, pixels, chunk, progress)
        result = processor.post_process(
            outputs, inputs["original_sizes"], inputs["resized_sizes"], task=task
        )[0]
        segments = _segments(result, task, model.config.id2label)
        fps = video_fps(source) if source.is_file() else 10
        if json_file is not None:
            json_file.unlink(missing_ok=True)
        audio = source if source.is_file() else None
        notes = write_video(render(frames, segments), output, fps=fps, times=times, audio_from=audio)
        if json_file is not None:
            write_json(json_file, _payload(source, output, task, len(frames), segments))
    summary = f"{len(segments)} segment(s)" + "".join(f"; {note}" for note in notes)
    return SegmentationRun(len(frames), output, json_file, summary)
