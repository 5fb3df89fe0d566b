"""VidEoMT video processor and video-level post-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from golden import FIXTURES
from visionports.models.videomt import VideomtConfig, VideomtVideoProcessor
from visionports.models.videomt.family import make_processor
from visionports.models.videomt.postprocessing_videomt import (
    instance_segmentation,
    panoptic_segmentation,
    restore_mask_size,
    semantic_segmentation,
)
from visionports.models.videomt.video_processing_videomt import shortest_edge_size
from visionports.utils.images import ImageInputError

CASE = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3"


def test_shortest_edge_rule() -> None:
    assert shortest_edge_size(720, 1280, 448, 1333) == (448, 796)
    assert shortest_edge_size(1280, 720, 448, 1333) == (796, 448)
    assert shortest_edge_size(100, 1000, 448, 1333) == (133, 1333)  # long side capped
    assert shortest_edge_size(64, 128, 64, 1333) == (64, 128)


def test_normalisation_matches_the_golden_inputs() -> None:
    inputs = load_file(str(CASE / "inputs.safetensors"))
    frames = inputs["frames_uint8"][0].permute(0, 2, 3, 1).numpy()  # [T, H, W, 3]
    processor = VideomtVideoProcessor(min_size=64)
    out = processor(frames)
    assert out["pixel_values"].shape == (1, 3, 3, 64, 128)
    assert torch.equal(out["pixel_values"], inputs["pixel_values"])  # bit-exact (x - mean) / std
    assert out["original_sizes"].tolist() == [[64, 128]] and out["resized_sizes"].tolist() == [[64, 128]]


def test_resize_and_pad() -> None:
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)) for _ in range(2)]
    processor = make_processor(VideomtConfig.from_preset("dinov2_s_ytvis2019"))
    out = processor(frames)
    assert out["resized_sizes"].tolist() == [[448, 796]]
    assert out["pixel_values"].shape == (1, 2, 3, 448, 800)  # padded to a multiple of 32
    assert torch.equal(out["pixel_values"][..., 796:], torch.zeros(1, 2, 3, 448, 4))
    expected = (
        torch.from_numpy(np.array(frames[0].resize((796, 448), Image.BILINEAR))).permute(2, 0, 1).float()
    )
    mean, std = (
        torch.tensor(processor.image_mean).view(3, 1, 1),
        torch.tensor(processor.image_std).view(3, 1, 1),
    )
    assert torch.equal(out["pixel_values"][0, 0, :, :, :796], (expected - mean) / std)


def test_bad_videos() -> None:
    processor = VideomtVideoProcessor()
    with pytest.raises(ImageInputError, match="different sizes"):
        processor([np.zeros((32, 32, 3), np.uint8), np.zeros((32, 48, 3), np.uint8)])
    with pytest.raises(ImageInputError, match="non-empty list of frames"):
        processor([[]])
    with pytest.raises(ImageInputError, match="the image is empty"):
        processor([np.zeros((0, 32, 3), np.uint8)])


def _outputs(seed: int = 0, frames: int = 3, queries: int = 6, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(frames, queries, classes + 1, generator=g) * 3, torch.randn(
        queries, frames, 8, 12, generator=g
    ) * 4


def test_instance_post_processing() -> None:
    class_logits, mask_logits = _outputs()
    result = instance_segmentation(class_logits, mask_logits, (32, 48), (30, 40), (60, 80), max_instances=5)
    probs = F.softmax(class_logits.mean(0), -1)[:, :-1]
    top = probs.flatten().topk(5)
    assert torch.equal(result["scores"], top.values)
    assert torch.equal(result["labels"], top.indices % 4) and torch.equal(
        result["track_ids"], top.indices // 4
    )
    expected = restore_mask_size(mask_logits[top.indices // 4], (32, 48), (30, 40), (60, 80)) > 0
    assert result["masks"].shape == (5, 3, 60, 80) and torch.equal(result["masks"], expected)


def test_semantic_post_processing() -> None:
    class_logits, mask_logits = _outputs(1)
    seg = semantic_segmentation(class_logits, mask_logits, (32, 48), (32, 48), (16, 24))
    probs = F.softmax(class_logits.mean(0), -1)[:, :-1]
    masks = F.interpolate(F.interpolate(mask_logits, size=(32, 48), mode="bilinear").sigmoid(), size=(16, 24),
                          mode="bilinear")  # fmt: skip
    assert seg.shape == (3, 16, 24)
    assert torch.equal(seg, torch.einsum("qc,qthw->cthw", probs, masks).argmax(0))


def test_panoptic_post_processing_merges_stuff() -> None:
    class_logits = torch.full((2, 4, 4), -10.0)
    class_logits[:, 0, 0] = 10  # thing (class 0), query 0
    class_logits[:, 1, 2] = 10  # stuff (class 2), query 1
    class_logits[:, 2, 2] = 10  # stuff (class 2) again, query 2 -> merged into one segment
    class_logits[:, 3, 3] = 10  # no object
    mask_logits = torch.full((4, 2, 8, 8), -20.0)
    mask_logits[0, :, :4, :4] = 20
    mask_logits[1, :, 4:, :] = 20
    mask_logits[2, :, :4, 4:] = 20
    result = panoptic_segmentation(
        class_logits, mask_logits, (32, 32), (32, 32), (32, 32), num_thing_classes=2
    )
    segs = result["segments"]
    assert [(s["id"], s["label"], s["is_thing"], s["track_id"]) for s in segs] == [
        (1, 0, True, 0),
        (2, 2, False, 1),
    ]
    seg = result["segmentation"]
    assert seg.shape == (2, 32, 32) and set(seg.unique().tolist()) <= {0, 1, 2}  # 0: void at region borders
    assert (seg[:, :14, :14] == 1).all() and (seg[:, 18:, :] == 2).all()
    assert (seg[:, :14, 18:] == 2).all()  # query 2's region merged into the stuff segment of query 1


def test_processor_post_process_arguments() -> None:
    processor = VideomtVideoProcessor(task="panoptic")
    class_logits, mask_logits = _outputs()
    outputs = {
        "class_queries_logits": class_logits[None],
        "masks_queries_logits": mask_logits.transpose(0, 1)[None],
    }
    with pytest.raises(ValueError, match="num_thing_classes"):
        processor.post_process(outputs, [(60, 80)], [(30, 40)])
    with pytest.raises(ValueError, match="one \\(height, width\\) per video"):
        processor.post_process(outputs, [(60, 80), (1, 1)], [(30, 40)], task="semantic")
    with pytest.raises(ValueError, match="task must be"):
        processor.post_process(outputs, [(60, 80)], [(30, 40)], task="depth")
    result = processor.post_process(outputs, [(60, 80)], [(30, 40)], task="instance")[0]
    assert result["masks"].shape[1:] == (3, 60, 80)


def _video(seed: int = 0, frames: int = 2, hw: tuple[int, int] = (40, 52)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, *hw, 3), dtype=np.uint8)


def test_standard_switches_are_honoured(tmp_path) -> None:
    video = _video()
    processor = VideomtVideoProcessor(min_size=64)
    mean, std = (
        torch.tensor(processor.image_mean).view(3, 1, 1),
        torch.tensor(processor.image_std).view(3, 1, 1),
    )
    raw = torch.from_numpy(video).permute(0, 3, 1, 2).float()
    kept = processor(video, do_resize=False)
    assert kept["pixel_values"].shape == (1, 2, 3, 64, 64) and kept["resized_sizes"].tolist() == [[40, 52]]
    assert torch.equal(kept["pixel_values"][0, :, :, :40, :52], (raw - mean) / std)
    assert (kept["pixel_values"][..., 40:, :] == 0).all() and (kept["pixel_values"][..., 52:] == 0).all()
    plain = processor(video, do_resize=False, do_normalize=False, do_pad=False)["pixel_values"]
    assert torch.equal(plain[0], raw)
    custom = processor(video, do_resize=False, do_pad=False, image_mean=[0, 0, 0], image_std=[2, 2, 2])
    assert torch.equal(custom["pixel_values"][0], raw / 2)
    last = processor(video, do_resize=False, data_format="channels_last")["pixel_values"]
    assert torch.equal(last, kept["pixel_values"].permute(0, 1, 3, 4, 2))
    first = np.ascontiguousarray(video.transpose(0, 3, 1, 2))  # [T, 3, H, W]
    assert torch.equal(processor(first, do_resize=False, input_data_format="channels_first")["pixel_values"],
                       kept["pixel_values"])  # fmt: skip
    assert isinstance(processor(video, do_resize=False, return_tensors="np")["pixel_values"], np.ndarray)
    as_given = processor(torch.from_numpy(first), do_resize=False, do_convert_rgb=False)["pixel_values"]
    assert torch.equal(as_given, kept["pixel_values"])
    with pytest.raises(ImageInputError, match="3 channels"):
        processor(np.zeros((1, 8, 8, 4), np.uint8), do_convert_rgb=False)
    with pytest.raises(ValueError, match="return_tensors"):
        processor(video, return_tensors="tf")
    with pytest.raises(TypeError, match="unexpected arguments"):
        processor(video, size=3)
    resized = processor(video)  # default: ResizeShortestEdge to 64
    assert resized["resized_sizes"].tolist() == [[64, 83]] and resized["original_sizes"].tolist() == [
        [40, 52]
    ]
    VideomtVideoProcessor(do_resize=False, size_divisibility=16).save_pretrained(tmp_path)
    reloaded = VideomtVideoProcessor.from_pretrained(tmp_path)
    assert reloaded.do_resize is False and reloaded(video)["pixel_values"].shape == (1, 2, 3, 48, 64)


def test_do_pad_false_needs_one_size() -> None:
    processor = VideomtVideoProcessor(do_resize=False, do_pad=False)
    with pytest.raises(ImageInputError, match="do_pad=False"):
        processor([_video(0, hw=(32, 32)), _video(1, hw=(32, 48))])
    both = processor([_video(0, hw=(32, 32)), _video(1, hw=(32, 32))])
    assert both["pixel_values"].shape == (2, 2, 3, 32, 32)


def test_panoptic_things_are_not_merged_and_unstable_segments_are_dropped() -> None:
    class_logits = torch.full((2, 4, 4), -10.0)
    class_logits[:, 0, 1] = 10  # thing (class 1), query 0
    class_logits[:, 1, 1] = 10  # the same thing class, query 1 -> its own segment
    class_logits[:, 2, 2] = 10  # stuff, query 2: covered by query 0's region -> dropped (overlap < 0.8)
    class_logits[:, 3, :] = 0  # best probability 0.25: below the object threshold
    mask_logits = torch.full((4, 2, 8, 8), -20.0)
    mask_logits[0, :, :, :4] = 20
    mask_logits[1, :, :, 4:] = 20
    mask_logits[2, :, :, :] = 20
    args = (class_logits, mask_logits, (32, 32), (32, 32), (32, 32))
    result = panoptic_segmentation(*args, num_thing_classes=2)
    assert [(s["id"], s["label"], s["is_thing"], s["track_id"]) for s in result["segments"]] == [
        (1, 1, True, 0),
        (2, 1, True, 1),
    ]
    relaxed = panoptic_segmentation(*args, num_thing_classes=2, object_threshold=0.2, overlap_threshold=0.0)
    # query 2 owns only the blended border between the two things; query 3 (kept now) owns no pixel
    assert [(s["track_id"], s["is_thing"]) for s in relaxed["segments"]] == [(0, True), (1, True), (2, False)]
    border = relaxed["segmentation"] == 3
    assert 0 < int(border.sum()) < int((relaxed["segmentation"] == 1).sum())


def test_post_process_settings_per_call() -> None:
    processor = VideomtVideoProcessor(max_instances=2, num_thing_classes=1)
    class_logits, mask_logits = _outputs()
    outputs = {
        "class_queries_logits": class_logits[None],
        "masks_queries_logits": mask_logits.transpose(0, 1)[None],
    }
    assert len(processor.post_process(outputs, [(60, 80)], [(30, 40)])[0]["scores"]) == 2
    assert len(processor.post_process(outputs, [(60, 80)], [(30, 40)], max_instances=7)[0]["scores"]) == 7
    strict = processor.post_process(outputs, [(60, 80)], [(30, 40)], task="panoptic", object_threshold=0.999)
    assert strict[0]["segments"] == [] and not strict[0]["segmentation"].any()
    loose = processor.post_process(outputs, [(60, 80)], [(30, 40)], task="panoptic", object_threshold=0.0,
                                   overlap_threshold=0.0)  # fmt: skip
    assert len(loose[0]["segments"]) > 0


def test_named_post_processing_methods_match_the_dispatcher() -> None:
    """``post_process(task=...)`` is a thin dispatcher to the transformers-style named methods."""
    processor = VideomtVideoProcessor(num_thing_classes=2)
    runs = [_outputs(seed) for seed in (0, 1)]
    outputs = {
        "class_queries_logits": torch.stack([c for c, _ in runs]),
        "masks_queries_logits": torch.stack([m.transpose(0, 1) for _, m in runs]),
    }
    sizes = ([(60, 80), (45, 50)], [(30, 40), (32, 48)])
    instance = processor.post_process_instance_segmentation(outputs, *sizes, max_instances=3)
    semantic = processor.post_process_semantic_segmentation(outputs, *sizes)
    panoptic = processor.post_process_panoptic_segmentation(outputs, *sizes, object_threshold=0.0)
    assert len(instance) == len(semantic) == len(panoptic) == 2
    assert instance[1]["masks"].shape == (3, 3, 45, 50) and semantic[1].shape == (3, 45, 50)
    for b, (class_logits, mask_logits) in enumerate(runs):
        args = (class_logits, mask_logits, (32, 48), sizes[1][b], sizes[0][b])
        assert torch.equal(semantic[b], semantic_segmentation(*args))
        expected = instance_segmentation(*args, max_instances=3)
        assert all(torch.equal(instance[b][k], expected[k]) for k in expected)
        assert panoptic[b]["segments"] == panoptic_segmentation(*args, 2, object_threshold=0.0)["segments"]
    dispatched = processor.post_process(outputs, *sizes, task="instance", max_instances=3)
    assert all(torch.equal(d["masks"], i["masks"]) for d, i in zip(dispatched, instance, strict=True))
    assert all(torch.equal(d, s) for d, s in zip(processor.post_process(outputs, *sizes, task="semantic"),
                                                 semantic, strict=True))  # fmt: skip
    by_task = processor.post_process(outputs, *sizes, task="panoptic", object_threshold=0.0)
    assert [p["segments"] for p in by_task] == [p["segments"] for p in panoptic]
    with pytest.raises(ValueError, match="num_thing_classes"):
        VideomtVideoProcessor().post_process_panoptic_segmentation(outputs, *sizes)
