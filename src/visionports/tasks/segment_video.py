"""``visionports segment-video``: run an online video segmenter over a video and render its masks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from ..core.files import atomic_write, require_model_folder
from ..utils.drawing import PALETTE
from ..utils.video import read_frames, video_fps, write_video


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
    """Frames with each segment blended in its colour and captioned at its centre."""
    out = []
    size = max(frames[0].size)
    font = ImageFont.load_default(size=max(10, round(13 * size / 640)))
    for t, frame in enumerate(frames):
        canvas = np.asarray(frame.convert("RGB")).astype(np.float32)
        captions = []
        for mask, key, caption in segments:
            region = mask[t]
            if region.any():
                colour = np.array(PALETTE[key % len(PALETTE)], dtype=np.float32)
                canvas[region] = 0.5 * canvas[region] + 0.5 * colour
                ys, xs = np.nonzero(region)
                captions.append((float(xs.mean()), float(ys.mean()), caption, PALETTE[key % len(PALETTE)]))
        image = Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for x, y, caption, colour in captions:
            draw.text(
                (x, y),
                caption,
                fill=(255, 255, 255),
                font=font,
                anchor="mm",
                stroke_width=2,
                stroke_fill=colour,
            )
        out.append(np.asarray(image))
    return out


def segment_video(
    source: str | Path,
    model_dir: str | Path,
    output: str | Path,
    task: str | None = None,
    json_path: str | Path | None = None,
    chunk: int = 8,
    progress: bool = True,
) -> SegmentationRun:
    """Segment a video file (or a folder of frames) and write the annotated video (and JSON)."""
    from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation

    source, output = Path(source), Path(output)
    frames = read_frames(source)
    model_dir = require_model_folder(model_dir)
    model = AutoModelForUniversalSegmentation.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    task = task or processor.task
    inputs = processor([frames], return_tensors="pt")
    pixels = inputs["pixel_values"].to(next(model.parameters()).dtype)
    state, classes, masks = None, [], []
    bar = tqdm(total=len(frames), desc="segment", unit="frame", disable=not progress)
    with torch.inference_mode():
        for start in range(0, len(frames), chunk):  # streaming: the model state stays one set of queries
            out = model(pixels[:, start : start + chunk], state=state)
            state = out.state
            classes.append(out.class_queries_logits)
            masks.append(out.masks_queries_logits.half())
            bar.update(min(chunk, len(frames) - start))
    bar.close()
    outputs = {
        "class_queries_logits": torch.cat(classes, 1),
        "masks_queries_logits": torch.cat(masks, 1).float(),
    }
    result = processor.post_process(outputs, inputs["original_sizes"], inputs["resized_sizes"], task=task)[0]
    segments = _segments(result, task, model.config.id2label)
    fps = video_fps(source) if source.is_file() else 10.0
    write_video(render(frames, segments), output, fps=fps)
    written_json = None
    if json_path is not None:
        written_json = Path(json_path)
        payload = {"source": str(source), "task": task, "frames": len(frames),
                   "segments": [{"key": key, "caption": caption, "frames": [int(t) for t in np.nonzero(m.any((1, 2)))[0]]}
                                for m, key, caption in segments]}  # fmt: skip
        atomic_write(written_json, lambda tmp: tmp.write_text(json.dumps(payload, indent=2)))
    return SegmentationRun(len(frames), output, written_json, f"{len(segments)} segment(s)")
