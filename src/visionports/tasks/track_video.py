"""``visionports segment-video`` with a SAM3-LiteText folder: every instance a text prompt names, tracked.

Frames are decoded, tracked and written one at a time (:class:`Sam3LiteTextVideoSession`); a frame's result is
final ``hotstart_delay`` frames later (the original's hotstart may still remove an object shown before), so only
that many decoded frames are held, and each track's masks are spooled to disk as RLE: memory stays bounded
whatever the video's length.
"""

from __future__ import annotations

import tempfile
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core.devices import place, resolve_device, resolve_dtype, run_settings
from ..core.files import require_family_folder
from ..utils.video import check_encodable, live_source, require_av
from .runner import load_model_folder, lock_output, progress_bar
from .segment_video import (
    FrameChunks,
    RleSpool,
    SegmentationRun,
    add_shown,
    open_writer,
    render,
    write_results,
)


def frame_pixels(frame: Image.Image, size: int) -> torch.Tensor:
    """One frame as the original video loader prepares a list of images: PIL's ``resize`` to ``size`` x
    ``size`` (its default filter), scaled to [0, 1], stored in float16 and normalised with mean / std 0.5 in
    float16: ``[1, 3, size, size]``."""
    array = np.asarray(frame.convert("RGB").resize((size, size))) / 255.0
    pixels = torch.from_numpy(array).permute(2, 0, 1).to(torch.float16)
    return ((pixels - 0.5) / 0.5)[None]


def _load(device: str | None, dtype: str | None, prompt: str) -> Any:
    def load(model_dir: Path) -> tuple:
        from ..models.sam3_lite_text import Sam3LiteTextModel, Sam3LiteTextTokenizer

        model = Sam3LiteTextModel.from_pretrained(model_dir).eval()
        if model.tracker is None:
            raise ValueError(
                f"--model {model_dir}: no tracker weights (convert a file that carries tracker.*)"
            )
        model = place(model, resolve_device(device), resolve_dtype(dtype))
        ids = Sam3LiteTextTokenizer(model.config.text.context_length)([prompt])["input_ids"]
        return model, ids

    return load


def track_video(
    source: str | Path,
    model_dir: str | Path,
    output: str | Path,
    prompt: str,
    json_path: str | Path | None = None,
    progress: bool = True,
    device: str | None = "auto",
    dtype: str | None = "float32",
    fps: float = 10,
    input_format: str | None = None,
    settings: Any = None,
) -> SegmentationRun:
    """Track every instance of ``prompt`` through a video file, a folder of frames (at ``fps``) or a live
    source; write the video with each track's mask, id and score, and (``json_path``) per track its frames and
    COCO RLE masks. ``settings``: a :class:`Sam3LiteTextVideoSettings` (default: the released thresholds)."""
    from ..models.sam3_lite_text.video_sam3_lite_text import Sam3LiteTextVideoSession

    require_av()
    if not prompt or not prompt.strip():
        raise ValueError("--prompt: give the text of what to track, e.g. --prompt 'a person'")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    live = live_source(source, input_format)
    frames = FrameChunks(live or Path(source), fps, chunk=1)
    output, json_file = Path(output), None if json_path is None else Path(json_path)
    model_dir, _ = require_family_folder(model_dir, "segment-video")
    width, height = frames.size()
    check_encodable(width, height, str(frames.source))
    with lock_output(output.parent, output.parent / f".{output.name}.lock"):
        model, ids = load_model_folder(model_dir, _load(device, dtype, prompt))
        session = Sam3LiteTextVideoSession(model, ids, settings, video_size=(height, width))
        with tempfile.TemporaryDirectory(prefix="visionports-masks-") as spool:
            tracks: dict[int, dict] = {}
            held: deque[tuple[Image.Image, Fraction]] = deque()
            spool_dir = None if json_file is None else Path(spool)
            if json_file is not None:
                json_file.unlink(missing_ok=True)
            with open_writer(frames, output, (width, height), None) as writer, \
                    progress_bar(None, "track", "frame", progress) as bar:  # fmt: skip
                for chunk, times in frames.chunks():
                    held.append((chunk[0], times[0]))
                    pixels = frame_pixels(chunk[0], model.config.image_size).to(model.device)
                    for out in session.step(pixels):
                        _emit(writer, held.popleft(), out, prompt, tracks, spool_dir)
                    bar.update(1)
                for out in session.flush():
                    _emit(writer, held.popleft(), out, prompt, tracks, spool_dir)
            found = [tracks[k] for k in sorted(tracks)]
            if json_file is not None:
                header = {"source": str(frames.source), "output": str(output), "task": "track", "prompt": prompt,
                          **run_settings(device, dtype), "frames": writer.count}  # fmt: skip
                write_results(json_file, header, found)
    notes = writer.notes + ([f"{frames.dropped} frame(s) dropped"] if frames.dropped else [])
    summary = f"{len(found)} track(s) of {prompt!r}" + "".join(f"; {note}" for note in notes)
    return SegmentationRun(writer.count, output, json_file, summary)


def _emit(writer: Any, frame: tuple[Image.Image, Fraction], out: Any, prompt: str, tracks: dict[int, dict],
          spool: Path | None) -> None:  # fmt: skip
    """Draw one final frame (masks in their track's colour, ``#id prompt score``) and record its tracks."""
    image, time = frame
    masks = [m.cpu().numpy() for m in out.masks]
    keys = [int(i) for i in out.obj_ids]
    captions = [f"#{k} {prompt} {float(s):.2f}" for k, s in zip(keys, out.scores, strict=True)]
    writer.write(
        render([image], [(m[None], k, c) for m, k, c in zip(masks, keys, captions, strict=True)])[0], time
    )
    for key, score, mask in zip(keys, out.scores.tolist(), masks, strict=True):
        track = tracks.setdefault(key, {"key": key, "caption": f"#{key} {prompt}", "frames": [], "track_id": key,
                                        "label": prompt, "label_id": 0, "score": round(score, 6),
                                        "masks": None if spool is None else RleSpool(spool)})  # fmt: skip
        add_shown(track, mask[None], out.frame_index)
