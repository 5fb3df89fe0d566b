"""VidEoMT evaluation on video data sets: the runner's predictions, the metric plumbing, the VIPSeg/VSPW readers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionports.core.errors import VideoDatasetFormatError
from visionports.data import video_evaluation as ve
from visionports.data.video_predictions import (
    VideoInstances,
    VideoOutputs,
    predict_instances,
    predict_panoptic,
    predict_semantic,
)
from visionports.data.vipseg import load_vipseg_split, panoptic_ground_truth, things_first_labels
from visionports.data.vspw import IGNORE, load_vspw_split, semantic_ground_truth, to_labels
from visionports.data.ytvis import load_ytvis_split
from visionports.models.videomt import VideomtConfig, VideomtForUniversalSegmentation
from visionports.models.videomt.family import make_processor
from visionports.utils.masks import encode_rle

TINY = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96, segmenter_blocks=[2],
            num_queries=6, position_grid_size=4, min_size_test=32, max_size_test=64)  # fmt: skip
H, W, T = 40, 56, 3


def make_model(folder: Path, task: str, num_labels: int, **extra) -> Path:
    """A random-weights VidEoMT folder (weights moved off their initialisation) with its processor."""
    torch.manual_seed(0)
    config = VideomtConfig(**TINY, task=task, id2label={i: f"c{i}" for i in range(num_labels)}, **extra)
    model = VideomtForUniversalSegmentation(config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    model.save_pretrained(folder)
    make_processor(config).save_pretrained(folder)
    return folder


def _frames(folder: Path, count: int, seed: int, suffix: str = ".jpg") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"{t:05d}{suffix}" for t in range(count)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(folder / name)
    return names


def _box(t: int, k: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[4 + 2 * t + 10 * k : 14 + 2 * t + 10 * k, 5 + 12 * k : 20 + 12 * k] = True
    return mask


def make_ytvis(root: Path, videos: int = 2) -> Path:
    """A YouTube-VIS folder: ``videos`` videos of T frames, two box tracks each, categories 1, 2, 5."""
    data = {"videos": [], "annotations": [],
            "categories": [{"id": i, "name": f"k{i}"} for i in (1, 2, 5)]}  # fmt: skip
    for v in range(1, videos + 1):
        names = _frames(root / "valid" / "JPEGImages" / f"v{v}", T, v)
        data["videos"].append({"id": v, "width": W, "height": H, "file_names": [f"v{v}/{n}" for n in names]})
        for k, category in enumerate((5, 1 + v % 2)):
            data["annotations"].append({"id": 10 * v + k, "video_id": v, "category_id": category, "iscrowd": 0,
                                        "segmentations": [encode_rle(_box(t, k)) for t in range(T)]})  # fmt: skip
    (root / "valid.json").write_text(json.dumps(data))
    return root


VIPSEG_CATEGORIES = [{"id": 0, "name": "wall", "isthing": 0}, {"id": 1, "name": "door", "isthing": 1},
                     {"id": 2, "name": "sky", "isthing": 0}, {"id": 3, "name": "car", "isthing": 1}]  # fmt: skip


def make_vipseg(root: Path, frames: int = 8) -> Path:
    """A VIPSeg_720P folder: one video, wall and sky stuff, two cars (ids kept over frames), a void corner
    (8 frames: VPQ's longest window)."""
    names = _frames(root / "images" / "vid_a", frames, 7)
    (root / "panomasksRGB" / "vid_a").mkdir(parents=True)
    annotated, images = [], []
    for t, name in enumerate(names):
        ids = np.full((H, W), 7, np.int32)  # wall
        ids[: H // 2] = 300  # sky
        ids[_box(t, 0)], ids[_box(t, 1)] = 70000, 70001  # two cars, ids > 255 to exercise rgb2id
        ids[-3:, -3:] = 0
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        png = f"{Path(name).stem}.png"
        Image.fromarray(rgb).save(root / "panomasksRGB" / "vid_a" / png)
        images.append({"id": f"img{t}", "file_name": name, "width": W, "height": H})
        annotated.append({"image_id": f"img{t}", "file_name": png, "segments_info": [
            {"id": 7, "category_id": 0, "iscrowd": 0}, {"id": 300, "category_id": 2, "iscrowd": 0},
            {"id": 70000, "category_id": 3, "iscrowd": 0}, {"id": 70001, "category_id": 3, "iscrowd": 0}]})  # fmt: skip
    data = {"videos": [{"video_id": "vid_a", "images": images}],
            "annotations": [{"video_id": "vid_a", "annotations": annotated}], "categories": VIPSEG_CATEGORIES}  # fmt: skip
    (root / "panoptic_gt_VIPSeg_val.json").write_text(json.dumps(data))
    return root


def make_vspw(root: Path) -> Path:
    """A VSPW_480p folder: one video with palette masks of raw labels 0 (others), 1..3 and 255."""
    names = _frames(root / "data" / "clip" / "origin", T, 9)
    (root / "data" / "clip" / "mask").mkdir()
    for t, name in enumerate(names):
        raw = np.full((H, W), 1, np.uint8)
        raw[_box(t, 0)], raw[_box(t, 1)], raw[:3], raw[-3:] = 3, 2, 0, 255
        mask = Image.fromarray(raw, mode="L").convert("P")
        mask.putpalette([v for i in range(256) for v in ((i * 37) % 256, i, 255 - i)])  # colours, not grey
        mask.save(root / "data" / "clip" / "mask" / f"{Path(name).stem}.png")
    (root / "val.txt").write_text("clip\n")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("video-eval")
    return {
        "instance": make_model(base / "vis", "instance", 3, max_num_instances=4),
        "panoptic": make_model(
            base / "vps", "panoptic", 4, num_thing_classes=2, object_mask_threshold=0.0, overlap_threshold=0.1
        ),  # fmt: skip
        "semantic": make_model(base / "vss", "semantic", 3),
        "ytvis": make_ytvis(base / "ytvis"),
        "vipseg": make_vipseg(base / "VIPSeg_720P"),
        "vspw": make_vspw(base / "VSPW_480p"),
    }


def _load(folder: Path):
    from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation

    return AutoModelForUniversalSegmentation.from_pretrained(
        folder
    ).eval(), AutoImageProcessor.from_pretrained(folder)


def _whole_video(model, processor, paths: list[Path]) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """The model stepped frame by frame by hand (state carried), outputs concatenated over time, the mask
    logits rounded to float16 as segment-video rounds them."""
    from visionports.utils.images import open_image

    state, classes, masks = None, [], []
    for path in paths:
        inputs = processor([[open_image(path)]], return_tensors="pt")
        with torch.no_grad():
            out = model(inputs["pixel_values"], state=state)
        state = out.state
        classes.append(out.class_queries_logits)
        masks.append(out.masks_queries_logits.half().float())
    outputs = {"class_queries_logits": torch.cat(classes, 1), "masks_queries_logits": torch.cat(masks, 1)}
    return outputs, inputs["original_sizes"], inputs["resized_sizes"]


@pytest.mark.parametrize("chunk", [1, 2])
def test_predictions_equal_the_processor_post_processing(folders: dict[str, Path], chunk: int) -> None:
    split = load_ytvis_split(folders["ytvis"], "valid")
    video = split.videos[0]
    for task in ("instance", "semantic", "panoptic"):
        model, processor = _load(folders[task])
        expected = processor.post_process(*_whole_video(model, processor, video.frame_paths))[0]
        with VideoOutputs(model, processor, video.frame_paths, chunk) as outputs:
            if task == "instance":
                found = predict_instances(outputs, processor.max_instances)
                assert (
                    found.scores == expected["scores"].tolist()
                    and found.labels == expected["labels"].tolist()
                )
                assert found.track_ids == expected["track_ids"].tolist() and len(found.scores) == 4
                assert found.segmentations == [
                    [encode_rle(m) for m in masks] for masks in expected["masks"].numpy()
                ]
            elif task == "semantic":
                assert np.array_equal(predict_semantic(outputs), expected.numpy())
            else:
                segmentation, segments = predict_panoptic(outputs, 2, processor.object_threshold,
                                                          processor.overlap_threshold)  # fmt: skip
                assert segments == expected["segments"] and segments  # the low thresholds keep some
                assert np.array_equal(segmentation, expected["segmentation"].numpy())


def test_evaluate_writes_the_runners_predictions(
    folders: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    seen: list[VideoInstances] = []
    original = ve.predict_instances
    monkeypatch.setattr(ve, "predict_instances", lambda *a: seen.append(original(*a)) or seen[-1])
    run = ve.evaluate_video_folder(folders["instance"], folders["ytvis"], max_videos=1,
                                   predictions=tmp_path / "results.json", progress=False, device="cpu")  # fmt: skip
    written = json.loads((tmp_path / "results.json").read_text())
    assert run.task == "instance" and run.split == "valid" and run.videos == 1 and len(seen) == 1
    assert written == ve.ytvis_results(1, seen[0], [1, 2, 5])
    assert {entry["category_id"] for entry in written} <= {1, 2, 5} and all(len(e["segmentations"]) == T
                                                                              for e in written)  # fmt: skip
    assert list(run.metrics) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"]
    assert all(_in_range(value) for value in run.metrics.values())


def _in_range(value: float) -> bool:
    """A fraction, or undefined (NaN; YouTube-VIS's -1 for an area range without objects)."""
    return math.isnan(value) or value == -1 or 0.0 <= value <= 1.0


def _ytvis_truth(split):
    videos = iter(split.videos)

    def predict(outputs, max_instances: int) -> VideoInstances:
        tracks = next(videos).tracks
        return VideoInstances([1.0] * len(tracks), [split.label_of(t.category_id) for t in tracks],
                              list(range(len(tracks))), [t.segmentations for t in tracks])  # fmt: skip

    return predict


def test_ground_truth_as_predictions_scores_one(folders: dict[str, Path], monkeypatch) -> None:
    split = load_ytvis_split(folders["ytvis"], "valid")
    monkeypatch.setattr(ve, "predict_instances", _ytvis_truth(split))
    vis = ve.evaluate_video_folder(folders["instance"], folders["ytvis"], progress=False, device="cpu")
    assert vis.metrics["AP"] == pytest.approx(1.0) and vis.metrics["AR10"] == pytest.approx(1.0)

    vipseg = load_vipseg_split(folders["vipseg"], "val")

    def panoptic_truth(outputs, things: int, *thresholds: float) -> tuple:
        semantic, instance = panoptic_ground_truth(vipseg.videos[0], vipseg.labels, things)
        pairs, ids = np.unique(np.stack([semantic, instance], -1).reshape(-1, 2), axis=0, return_inverse=True)
        ids = ids.reshape(semantic.shape).astype(np.int32) + 1  # one id per (class, instance) pair
        ids[semantic == 255] = 0
        segments = [{"id": n + 1, "label": int(label), "is_thing": int(label) < things, "track_id": n}
                    for n, (label, _) in enumerate(pairs) if label != 255]  # fmt: skip
        return ids, segments

    monkeypatch.setattr(ve, "predict_panoptic", panoptic_truth)
    vps = ve.evaluate_video_folder(
        folders["panoptic"], folders["vipseg"].parent, progress=False, device="cpu"
    )
    assert vps.metrics["VPQ"] == pytest.approx(1.0) and vps.metrics["STQ"] == pytest.approx(1.0)

    vspw = load_vspw_split(folders["vspw"], "val")
    truth = np.where(
        semantic_ground_truth(vspw.videos[0]) == IGNORE, 0, semantic_ground_truth(vspw.videos[0])
    )
    monkeypatch.setattr(ve, "predict_semantic", lambda outputs: truth)
    vss = ve.evaluate_video_folder(folders["semantic"], folders["vspw"], progress=False, device="cpu")
    assert vss.metrics["mIoU"] == pytest.approx(1.0)


@pytest.mark.parametrize("task, data", [("panoptic", "vipseg"), ("semantic", "vspw")])
def test_dense_tasks_run_end_to_end(folders: dict[str, Path], task: str, data: str) -> None:
    run = ve.evaluate_video_folder(folders[task], folders[data], progress=False, device="cpu", chunk=2)
    first = {"panoptic": ["VPQ", "VPQ_thing", "VPQ_stuff", "STQ", "AQ", "SQ"], "semantic": ["mIoU"]}[task]
    assert run.videos == 1 and list(run.metrics)[: len(first)] == first
    assert all(_in_range(value) for value in run.metrics.values())
    table = ve.format_video_metrics(run.metrics).splitlines()
    assert [line.split()[0] for line in table] == list(run.metrics)


def test_vipseg_reader_follows_the_real_layout(folders: dict[str, Path]) -> None:
    split = load_vipseg_split(folders["vipseg"].parent, "val")  # a folder holding VIPSeg_720P/ works too
    assert split.labels == {1: 0, 3: 1, 0: 2, 2: 3} == things_first_labels(VIPSEG_CATEGORIES)
    assert split.num_thing_classes == 2
    video = split.videos[0]
    assert video.frame_paths[1] == folders["vipseg"] / "images" / "vid_a" / "00001.jpg"
    semantic, instance = panoptic_ground_truth(video, split.labels, 2)
    assert semantic.shape == (8, H, W) and semantic[0, -1, -1] == 255 and semantic[0, 0, -1] == 3
    assert semantic[1][_box(1, 0)].tolist() == [1] * _box(1, 0).sum()  # car: things-first label 1
    assert set(np.unique(instance)) == {0, 70000, 70001}
    assert (instance[:, 0, -1] == 0).all()  # stuff has no instance id
    with pytest.raises(VideoDatasetFormatError, match="no VIPSeg split 'test'"):
        load_vipseg_split(folders["vipseg"], "test")


def test_vspw_reader_follows_the_real_layout(folders: dict[str, Path]) -> None:
    split = load_vspw_split(folders["vspw"].parent, "val")
    video = split.videos[0]
    assert [p.name for p in video.frame_paths] == ["00000.jpg", "00001.jpg", "00002.jpg"]
    labels = semantic_ground_truth(video)
    assert labels.shape == (T, H, W) and labels[0, 0, 0] == IGNORE and labels[0, -1, 0] == IGNORE
    assert labels[0, 10, 0] == 0 and labels[0][_box(0, 0)].tolist() == [2] * _box(0, 0).sum()
    assert to_labels(np.array([0, 1, 124, 255])).tolist() == [255, 0, 123, 255]


def test_bad_inputs_are_refused_before_the_model_runs(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="takes instance models, not semantic"):
        ve.evaluate_video_folder(folders["semantic"], folders["vspw"], predictions=tmp_path / "p.json")
    with pytest.raises(VideoDatasetFormatError, match="no VSPW split"):
        ve.evaluate_video_folder(folders["semantic"], folders["ytvis"])
    with pytest.raises(ValueError, match="predicts 4 classes but .* 3 categories"):
        make_model(tmp_path / "four", "instance", 4)
        ve.evaluate_video_folder(tmp_path / "four", folders["ytvis"])
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    (tmp_path / "coco" / "annotations" / "instances_val.json").write_text("{}")
    with pytest.raises(VideoDatasetFormatError, match="a COCO image data set"):
        ve.evaluate_video_folder(folders["instance"], tmp_path / "coco")


@pytest.mark.parametrize("none", [[], None], ids=["empty", "null"])  # the real valid.json has null
def test_a_split_without_annotations_needs_predictions(
    folders: dict[str, Path], tmp_path: Path, none: list | None
) -> None:
    root = make_ytvis(tmp_path / "server", videos=1)
    data = json.loads((root / "valid.json").read_text())
    (root / "valid.json").write_text(json.dumps({**data, "annotations": none}))
    with pytest.raises(ValueError, match="has no annotations .* pass --predictions"):
        ve.evaluate_video_folder(folders["instance"], root)
    run = ve.evaluate_video_folder(folders["instance"], root, predictions=tmp_path / "r.json", progress=False)
    assert run.metrics == {} and len(json.loads((tmp_path / "r.json").read_text())) == 4
