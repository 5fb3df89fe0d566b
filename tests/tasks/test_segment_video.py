"""`visionports segment-video` on a model converted from the VidEoMT golden case (random weights)."""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from golden import FIXTURES
from visionports.cli import main
from visionports.tasks import segment_video as sv
from visionports.utils.video import VideoWriter, read_frames_with_times, write_video

CASE = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3"


@pytest.fixture(scope="module")
def model_dir(convert: Callable[..., Path]) -> Path:
    return convert("videomt", CASE / "checkpoint.pth", "--set", "num_attention_heads=4",
                   "--set", "num_thing_classes=2", "--set", "min_size_test=64")  # fmt: skip


def _clip(path: Path, frames: int = 5) -> Path:
    rng = np.random.default_rng(0)
    write_video([rng.integers(0, 256, (72, 100, 3), dtype=np.uint8) for _ in range(frames)], path, fps=5)
    return path


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize("task", ["instance", "semantic", "panoptic"])
def test_segment_video_writes_a_decodable_video(model_dir: Path, tmp_path: Path, task: str) -> None:
    clip = _clip(tmp_path / "clip.mp4")
    out, js = tmp_path / f"{task}.mp4", tmp_path / f"{task}.json"
    result = CliRunner().invoke(main, ["segment-video", str(clip), "--model", str(model_dir), "--task", task,
                                       "--output", str(out), "--json", str(js), "--chunk", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    frames, source = _decode(out), _decode(clip)
    assert len(frames) == 5 and frames[0].shape == (72, 100, 3)
    payload = json.loads(js.read_text())
    assert payload["task"] == task and payload["frames"] == 5
    if task != "panoptic":  # random weights: panoptic keeps no query above the 0.8 score threshold
        assert payload["segments"]
        assert np.abs(frames[0].astype(int) - source[0].astype(int)).mean() > 5  # masks were blended in


def test_frames_dir_and_bad_inputs(model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(folder / f"{i:03d}.png")
    runner = CliRunner()
    ok = runner.invoke(main, ["segment-video", "--frames-dir", str(folder), "--model", str(model_dir),
                              "--output", str(tmp_path / "dir.mp4")])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert len(_decode(tmp_path / "dir.mp4")) == 3
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(folder / "999.png")
    mixed = runner.invoke(main, ["segment-video", "--frames-dir", str(folder), "--model", str(model_dir),
                                 "--output", str(tmp_path / "mixed.mp4")])  # fmt: skip
    assert (
        mixed.exit_code != 0 and "different sizes" in mixed.output and not (tmp_path / "mixed.mp4").exists()
    )
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    bad = runner.invoke(main, ["segment-video", str(tmp_path / "bad.mp4"), "--model", str(model_dir),
                               "--output", str(tmp_path / "bad_out.mp4")])  # fmt: skip
    assert bad.exit_code != 0 and "bad.mp4" in bad.output and not (tmp_path / "bad_out.mp4").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    none = runner.invoke(main, ["segment-video", "--frames-dir", str(empty), "--model", str(model_dir),
                                "--output", str(tmp_path / "none.mp4")])  # fmt: skip
    assert none.exit_code != 0 and "no image files" in none.output
    both = runner.invoke(main, ["segment-video", str(tmp_path / "bad.mp4"), "--frames-dir", str(folder),
                                "--model", str(model_dir), "--output", str(tmp_path / "x.mp4")])  # fmt: skip
    assert both.exit_code != 0 and "either VIDEO or --frames-dir" in both.output


def _tweak(processor) -> None:
    """Random weights keep no panoptic query at 0.8; lower thresholds so every task draws something."""
    processor.object_threshold, processor.overlap_threshold = 0.0, 0.1


def _whole_clip(model_dir: Path, clip: Path, task: str, chunk: int) -> tuple[list[np.ndarray], list[dict]]:
    """The former (whole-clip) command: all frames preprocessed, every mask logit kept, post_process once."""
    frames, _ = read_frames_with_times(clip)
    model, processor = sv._load(model_dir)
    _tweak(processor)
    inputs = processor([frames], return_tensors="pt")
    state, classes, masks = None, [], []
    with torch.inference_mode():
        for start in range(0, len(frames), chunk):
            out = model(inputs["pixel_values"][:, start : start + chunk], state=state)
            state = out.state
            classes.append(out.class_queries_logits.float())
            masks.append(out.masks_queries_logits.half())
    outputs = {
        "class_queries_logits": torch.cat(classes, 1),
        "masks_queries_logits": torch.cat(masks, 1).float(),
    }
    result = processor.post_process(outputs, inputs["original_sizes"], inputs["resized_sizes"], task=task)[0]
    names = model.config.id2label
    if task == "instance":
        found = zip(result["scores"], result["labels"], result["track_ids"], result["masks"], strict=True)
        segments = [(m.numpy(), int(t), f"#{int(t)} {names.get(int(lab), int(lab))} {float(s):.2f}")
                    for s, lab, t, m in found]  # fmt: skip
    elif task == "semantic":
        segments = [
            ((result == c).numpy(), int(c), str(names.get(int(c), int(c)))) for c in torch.unique(result)
        ]
    else:
        seg = result["segmentation"]
        segments = [((seg == s["id"]).numpy(), s["track_id"], f"#{s['track_id']} {names.get(s['label'], s['label'])}")
                    for s in result["segments"]]  # fmt: skip
    listed = [{"key": key, "caption": caption, "frames": [int(t) for t in np.nonzero(m.any((1, 2)))[0]]}
              for m, key, caption in segments]  # fmt: skip
    return sv.render(frames, segments), listed


@pytest.mark.parametrize("task", ["instance", "semantic", "panoptic"])
def test_streamed_run_equals_the_whole_clip_run(
    model_dir: Path, tmp_path: Path, task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = _clip(tmp_path / "clip.mp4", frames=7)
    expected_frames, expected_segments = _whole_clip(model_dir, clip, task, chunk=3)
    assert expected_segments  # the comparison is not vacuous
    load, written = sv._load, []
    monkeypatch.setattr(sv, "_load", lambda path: (lambda pair: (_tweak(pair[1]), pair)[1])(load(path)))
    write = VideoWriter.write
    monkeypatch.setattr(
        VideoWriter, "write", lambda self, f, t=None: (written.append(np.array(f)), write(self, f, t))
    )
    js = tmp_path / "out.json"
    run = sv.segment_video(clip, model_dir, tmp_path / "out.mp4", task=task, json_path=js, chunk=3,
                           progress=False, device="cpu")  # fmt: skip
    assert run.frames == 7 and len(written) == 7 and len(_decode(tmp_path / "out.mp4")) == 7
    for got, want in zip(written, expected_frames, strict=True):
        np.testing.assert_array_equal(got, want)
    segments = json.loads(js.read_text())["segments"]
    assert [{k: s[k] for k in ("key", "caption", "frames")} for s in segments] == expected_segments


def test_frames_stream_through_in_chunks(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory is bounded: a few chunks of frames are alive at once, and writing starts before the last
    frame is decoded (no timings or peaks are measured here; see benchmarks/segment_video_memory.py)."""
    clip, chunk = _clip(tmp_path / "clip.mp4", frames=12), 2
    decoded, live, most, seen_at_write = [0], [0], [0], []
    frames = sv.iter_frames_with_times

    def counted(source, fps):
        for frame, time in frames(source, fps):
            decoded[0] += 1
            live[0] += 1
            most[0] = max(most[0], live[0])
            weakref.finalize(frame, lambda: live.__setitem__(0, live[0] - 1))
            yield frame, time

    monkeypatch.setattr(sv, "iter_frames_with_times", counted)
    write = VideoWriter.write
    monkeypatch.setattr(
        VideoWriter, "write", lambda self, f, t=None: (seen_at_write.append(decoded[0]), write(self, f, t))
    )
    sv.segment_video(clip, model_dir, tmp_path / "out.mp4", chunk=chunk, progress=False, device="cpu")
    # decoded ahead: 2 chunks queued and 1 frame being made; the chunk in use and the next one being gathered
    assert most[0] <= 4 * chunk + 1, most[0]
    passes = decoded[0] // 12  # the size check, segmenting, rendering
    assert len(seen_at_write) == 12 and seen_at_write[0] <= (passes - 1) * 12 + 4 * chunk + 1
