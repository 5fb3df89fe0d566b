"""Results the ecosystem reads: COCO results files (pycocotools), video JSON with RLE masks, supervision."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

import visionports
from golden import FIXTURES
from visionports.cli import main
from visionports.data.coco import COCO_CATEGORY_IDS, COCO_CLASSES
from visionports.data.coco_results import label_categories
from visionports.utils.masks import decode_rle

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools

DEIM = FIXTURES / "deimv2" / "atto_s0_b1_320" / "checkpoint.pth"
SAM3 = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5"
VIDEOMT = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3" / "checkpoint.pth"


@pytest.fixture(scope="module")
def deim_dir(convert: Callable[..., Path]) -> Path:
    return convert("deimv2", DEIM)


@pytest.fixture(scope="module")
def sam3_dir(convert: Callable[..., Path]) -> Path:
    return convert("sam3-lite-text", SAM3 / "checkpoint.pt")


@pytest.fixture(scope="module")
def videomt_dir(convert: Callable[..., Path]) -> Path:
    return convert("videomt", VIDEOMT, "--set", "num_attention_heads=4", "--set", "num_thing_classes=2",
                   "--set", "min_size_test=64")  # fmt: skip


def _images(folder: Path, sizes=((48, 80), (120, 90))) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for n, size in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"im{n}.png")
        paths.append(folder / f"im{n}.png")
    return paths


def _gt_from(results: dict, path: Path, iou_type: str) -> COCO:
    """A ground truth over the same images and categories whose objects are the results themselves."""
    annotations = [{k: v for k, v in a.items() if k != "score"} for a in results["annotations"]]
    if iou_type == "bbox":
        for a in annotations:
            a.pop("segmentation", None)
    gt = {"images": results["images"], "categories": results["categories"], "annotations": annotations}
    path.write_text(json.dumps(gt))
    return COCO(str(path))


def _evaluate(gt: COCO, annotations: list[dict], iou_type: str) -> float:
    dt = gt.loadRes(json.loads(json.dumps(annotations)))  # loadRes edits its input
    evaluation = COCOeval(gt, dt, iou_type)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return float(evaluation.stats[0])


def test_label_categories_use_cocos_ids_only_for_its_classes() -> None:
    coco = dict(enumerate(COCO_CLASSES))
    assert label_categories(coco) == dict(enumerate(COCO_CATEGORY_IDS))
    assert label_categories({0: "cat", 1: "dog"}) == {0: 0, 1: 1}
    assert label_categories({**coco, 0: "human"}) == {i: i for i in range(80)}


def test_detect_writes_a_coco_results_file_kept_on_resume(deim_dir: Path, tmp_path: Path) -> None:
    images, out = _images(tmp_path / "in"), tmp_path / "out"
    args = ["detect", *map(str, images), "--model", str(deim_dir), "--threshold", "0.3", "--output", str(out),
            "--batch-size", "1", "--format", "coco"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "detections.coco.json" in result.output
    manifest = json.loads((out / "detections.json").read_text())
    assert manifest["visionports_version"] == visionports.__version__ and manifest["model"] == str(deim_dir)
    assert manifest["sizes"] == {str(images[0]): [80, 48], str(images[1]): [90, 120]}
    path = out / "detections.coco.json"
    payload = json.loads(path.read_text())
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in payload["images"]] == [
        (1, str(images[0]), 80, 48),
        (2, str(images[1]), 90, 120),
    ]
    config = json.loads((deim_dir / "config.json").read_text())
    id2label = {int(k): v for k, v in config["id2label"].items()}
    table = label_categories(id2label)
    assert [(c["id"], c["name"]) for c in payload["categories"]] == [
        (table[i], id2label[i]) for i in sorted(id2label)
    ]
    entries = [d for p in images for d in manifest["images"][str(p)]]
    assert entries and len(payload["annotations"]) == len(entries)
    for ann, det in zip(payload["annotations"], entries, strict=True):
        assert ann["category_id"] == table[det["label_id"]] and ann["score"] == det["score"]
        x, y, w, h = ann["bbox"]
        assert w >= 0 and h >= 0 and ann["area"] == pytest.approx(w * h, abs=0.01)
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 2 and len(coco.getAnnIds()) == len(entries)
    gt = _gt_from(payload, tmp_path / "gt.json", "bbox")
    assert _evaluate(gt, payload["annotations"], "bbox") > 0  # against themselves (random boxes overlap)

    # an interrupted run: the second input unfinished; the resumed run's COCO file still holds the first
    manifest["complete"] = False
    for key in ("images", "pictures", "sizes"):
        manifest[key].pop(str(images[1]))
    (out / "detections.json").write_text(json.dumps(manifest))
    path.unlink()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "1 kept" in result.output, result.output
    assert json.loads(path.read_text()) == payload
    # without --format coco, an earlier COCO file is removed (it would not match the new manifest)
    result = CliRunner().invoke(main, args[:-2] + ["--threshold", "0.4"])
    assert result.exit_code == 0, result.output
    assert not path.exists()


def test_segment_writes_coco_rle_results(sam3_dir: Path, tmp_path: Path) -> None:
    images, out = _images(tmp_path / "in"), tmp_path / "out"
    prompts = ["a cat", "a dog"]
    result = CliRunner().invoke(main, ["segment", *map(str, images), "--prompt", prompts[0], "--prompt", prompts[1],
                                       "--model", str(sam3_dir), "--threshold", "0.05", "--output", str(out),
                                       "--format", "coco"])  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "segments.json").read_text())
    assert manifest["visionports_version"] == visionports.__version__ and manifest["prompts"] == prompts
    path = out / "segments.coco.json"
    payload = json.loads(path.read_text())
    assert payload["categories"] == [{"id": 0, "name": "a cat", "supercategory": ""},
                                     {"id": 1, "name": "a dog", "supercategory": ""}]  # fmt: skip
    entries = [(n, e) for n, p in enumerate(images, start=1) for e in manifest["images"][str(p)]]
    assert entries and len(payload["annotations"]) == len(entries)
    coco = COCO(str(path))
    for ann, (image_id, entry) in zip(payload["annotations"], entries, strict=True):
        assert ann["image_id"] == image_id and ann["category_id"] == prompts.index(entry["label"])
        assert isinstance(ann["segmentation"]["counts"], str) and ann["area"] == entry["mask_pixels"]
        np.testing.assert_array_equal(
            coco.annToMask(coco.anns[ann["id"]]).astype(bool), decode_rle(entry["mask"])
        )
        info = coco.imgs[image_id]
        assert ann["segmentation"]["size"] == [info["height"], info["width"]]
    gt = _gt_from(payload, tmp_path / "gt.json", "segm")
    assert _evaluate(gt, payload["annotations"], "segm") > 0


def _clip(path: Path, frames: int = 5) -> Path:
    from visionports.utils.video import write_video

    rng = np.random.default_rng(0)
    write_video([rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(frames)], path, fps=5)
    return path


@pytest.mark.parametrize(("task", "online"), [("instance", False), ("semantic", True)])
def test_video_json_masks_decode_to_the_rendered_masks(
    videomt_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str, online: bool
) -> None:
    pytest.importorskip("av")
    from visionports.tasks import segment_video as sv

    drawn: dict[int, dict[int, np.ndarray]] = {}  # key -> frame -> mask (as rendered)
    render, start = sv.render, [0]

    def recording(frames, segments):
        for mask, key, _ in segments:
            for t in range(len(frames)):
                drawn.setdefault(key, {})[start[0] + t] = mask[t].copy()
        start[0] += len(frames)
        return render(frames, segments)

    monkeypatch.setattr(sv, "render", recording)
    js = tmp_path / "out.json"
    sv.segment_video(_clip(tmp_path / "clip.mp4"), videomt_dir, tmp_path / "out.mp4", task=task, json_path=js,
                     chunk=2, progress=False, device="cpu", online=online)  # fmt: skip
    segments = json.loads(js.read_text())["segments"]
    names = json.loads((videomt_dir / "config.json").read_text())["id2label"]
    assert segments
    for segment in segments:
        assert {"key", "caption", "frames", "track_id", "label", "label_id", "score", "masks"} <= set(segment)
        assert segment["label"] == names[str(segment["label_id"])]
        if task == "instance":
            assert segment["track_id"] == segment["key"] and 0.0 <= segment["score"] <= 1.0
            assert segment["caption"].endswith(f"{segment['score']:.2f}")
        else:
            assert segment["track_id"] is None and segment["label_id"] == segment["key"]
        assert len(segment["masks"]) == len(segment["frames"])
        rendered = drawn[segment["key"]]
        for t, rle in zip(segment["frames"], segment["masks"], strict=True):
            np.testing.assert_array_equal(decode_rle(rle), rendered[t])
        if task == "semantic":  # a class's key is unique: every frame it shows in is listed
            assert segment["frames"] == [t for t, m in sorted(rendered.items()) if m.any()]


def test_deimv2_results_go_to_supervision(deim_dir: Path) -> None:
    sv = pytest.importorskip("supervision")
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    model = AutoModelForObjectDetection.from_pretrained(deim_dir).eval()
    processor = AutoImageProcessor.from_pretrained(deim_dir)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8))
    with torch.inference_mode():
        outputs = model(**processor(image, return_tensors="pt"))
    found = processor.post_process_object_detection(outputs, threshold=0.3, target_sizes=[(60, 90)])[0]
    detections = sv.Detections.from_transformers(found, id2label=model.config.id2label)
    assert len(detections) == len(found["scores"]) > 0
    np.testing.assert_array_equal(detections.class_id, found["labels"].numpy())
    assert list(detections.data["class_name"]) == [model.config.id2label[int(c)] for c in found["labels"]]


def test_sam3_results_go_to_supervision() -> None:
    sv = pytest.importorskip("supervision")
    from visionports.models.sam3_lite_text import Sam3LiteTextImageProcessor

    outputs = load_file(str(SAM3 / "outputs.safetensors"))
    raw = {name: torch.cat([outputs[f"p{k}_{source}"] for k in (0, 1)])
           for name, source in (("pred_logits", "pred_logits"), ("presence_logits", "presence_logit_dec"),
                                ("pred_boxes", "pred_boxes"), ("pred_masks", "pred_masks"))}  # fmt: skip
    prompts = ["a cat", "a dog"]
    results = Sam3LiteTextImageProcessor(size=112).post_process_instance_segmentation(
        raw, threshold=0.05, target_sizes=[(50, 80)], prompts=prompts
    )
    assert sum(len(r["scores"]) for r in results) > 0
    for index, result in enumerate(results):
        assert result["labels"].dtype == torch.long and result["labels"].tolist() == [index] * len(
            result["scores"]
        )
        detections = sv.Detections.from_transformers(result, id2label=dict(enumerate(prompts)))
        assert len(detections) == len(result["scores"])
        assert detections.class_id.tolist() == [index] * len(detections)
        np.testing.assert_allclose(detections.confidence, result["scores"].numpy(), rtol=1e-6)
        np.testing.assert_array_equal(detections.mask, result["masks"].numpy())
        assert list(detections.data["class_name"]) == [prompts[index]] * len(detections)


@pytest.mark.parametrize("task", ["instance", "semantic", "panoptic"])
def test_videomt_results_go_to_supervision_per_frame(videomt_dir: Path, task: str) -> None:
    pytest.importorskip("supervision")
    from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation

    from visionports.utils.supervision_adapters import video_to_supervision

    model = AutoModelForUniversalSegmentation.from_pretrained(videomt_dir).eval()
    processor = AutoImageProcessor.from_pretrained(videomt_dir)
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)) for _ in range(3)]
    inputs = processor([frames], return_tensors="pt")
    with torch.inference_mode():
        out = model(inputs["pixel_values"])
    outputs = {
        "class_queries_logits": out.class_queries_logits,
        "masks_queries_logits": out.masks_queries_logits,
    }
    result = processor.post_process(outputs, inputs["original_sizes"], inputs["resized_sizes"], task=task,
                                    object_threshold=0.0)[0]  # fmt: skip
    per_frame = video_to_supervision(result, model.config.id2label)
    assert len(per_frame) == 3
    for t, detections in enumerate(per_frame):
        assert detections.mask.shape[1:] == (40, 56)
        if task == "instance":
            shown = result["masks"][:, t].flatten(1).any(1)
            assert len(detections) == int(shown.sum()) > 0
            np.testing.assert_array_equal(detections.tracker_id, result["track_ids"][shown].numpy())
            np.testing.assert_array_equal(detections.class_id, result["labels"][shown].numpy())
            np.testing.assert_array_equal(detections.mask, result["masks"][shown, t].numpy())
            np.testing.assert_allclose(detections.confidence, result["scores"][shown].numpy(), rtol=1e-6)
        elif task == "semantic":
            np.testing.assert_array_equal(detections.class_id, torch.unique(result[t]).numpy())
            assert detections.tracker_id is None
        else:
            seg = result["segmentation"][t]
            showing = [s for s in result["segments"] if bool((seg == s["id"]).any())]
            assert detections.tracker_id.tolist() == [s["track_id"] for s in showing]
        names = [model.config.id2label[int(c)] for c in detections.class_id]
        assert list(detections.data.get("class_name", [])) == names


def test_faster_coco_eval_reads_the_coco_files(deim_dir: Path, sam3_dir: Path, tmp_path: Path) -> None:
    """The other COCO evaluator users run (faster-coco-eval) loads and evaluates both files."""
    fce = pytest.importorskip("faster_coco_eval")
    images = _images(tmp_path / "in")
    runs = {"detections.coco.json": ("bbox", ["detect", "--model", str(deim_dir), "--threshold", "0.3"]),
            "segments.coco.json": ("segm", ["segment", "--model", str(sam3_dir), "--prompt", "a cat",
                                            "--threshold", "0.05"])}  # fmt: skip
    for name, (iou_type, command) in runs.items():
        out = tmp_path / name
        result = CliRunner().invoke(
            main, [*command, *map(str, images), "--output", str(out), "--format", "coco"]
        )
        assert result.exit_code == 0, result.output
        payload = json.loads((out / name).read_text())
        gt_file = tmp_path / f"gt_{name}"
        gt_file.write_text(json.dumps({"images": payload["images"], "categories": payload["categories"],
                                       "annotations": [{k: v for k, v in a.items() if k != "score"}
                                                       for a in payload["annotations"]]}))  # fmt: skip
        gt = fce.COCO(str(gt_file))
        evaluation = fce.COCOeval_faster(
            gt, gt.loadRes(json.loads(json.dumps(payload["annotations"]))), iou_type
        )
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        reference = _evaluate(COCO(str(gt_file)), payload["annotations"], iou_type)  # pycocotools, same files
        assert (
            payload["annotations"]
            and evaluation.stats[0] > 0
            and evaluation.stats[0] == pytest.approx(reference)
        )
