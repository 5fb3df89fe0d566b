"""`visionports evaluate` on VidEoMT folders: dispatch by family, one-line errors, the metrics table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from visionports import Deimv2Config
from visionports.cli import main
from visionports.data.synthetic_videos import CATEGORIES, make_synthetic_ytvis
from visionports.models.videomt import VideomtConfig, VideomtForUniversalSegmentation
from visionports.models.videomt.family import make_processor

TINY = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96, segmenter_blocks=[2],
            num_queries=6, position_grid_size=4, min_size_test=32, max_size_test=64)  # fmt: skip
NUM_THINGS = len(CATEGORIES)


def _model(folder: Path, task: str, **extra) -> Path:
    """A random-weights VidEoMT folder labelled as the synthetic data (things, then one stuff class)."""
    torch.manual_seed(0)
    labels = NUM_THINGS + (task != "instance")
    config = VideomtConfig(**TINY, task=task, id2label={i: f"c{i}" for i in range(labels)}, **extra)
    VideomtForUniversalSegmentation(config).save_pretrained(folder)
    make_processor(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("evaluate-videomt")
    deimv2 = base / "deimv2"
    Deimv2Config.from_preset("atto", num_labels=4).save_pretrained(deimv2)  # refusals happen before loading
    coco = base / "coco" / "annotations"
    coco.mkdir(parents=True)
    (coco / "instances_val.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    return {
        "data": make_synthetic_ytvis(
            base / "videos", 1, 2, frames=3, size=(40, 56), max_objects=2, dense=True
        ),
        "instance": _model(base / "vis", "instance"),
        "panoptic": _model(base / "vps", "panoptic", num_thing_classes=NUM_THINGS),
        "semantic": _model(base / "vss", "semantic"),
        "deimv2": deimv2,
        "coco": coco.parent,
    }


def _run(*args: str | Path):
    return CliRunner().invoke(main, ["evaluate", *map(str, args)])


def _error(result) -> str:
    """The output's one ``Error:`` line (and check that it is the last and only one)."""
    lines = [line for line in result.output.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and result.output.strip().splitlines()[-1] == lines[0], result.output
    return lines[0]


def test_instance_model_prints_ap_and_writes_predictions(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = _run("--model", setup["instance"], "--data", setup["data"], "--device", "cpu", "--max-videos", "1",
                  "--chunk", "2", "--predictions", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    table = [line.split()[0] for line in result.stdout.strip().splitlines()[:-1]]
    assert table == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"]
    assert result.stdout.strip().splitlines()[-1] == f"1 video(s) -> {out}"
    written = json.loads(out.read_text())
    assert written and {entry["video_id"] for entry in written} == {1}
    assert all(len(entry["segmentations"]) == 3 for entry in written)


@pytest.mark.parametrize("task, first", [("panoptic", "VPQ"), ("semantic", "mIoU")])
def test_dense_models_read_the_synthetic_dense_ground_truth(
    setup: dict[str, Path], task: str, first: str
) -> None:
    result = _run("--model", setup[task], "--data", setup["data"], "--device", "cpu")  # default split: valid
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split()[0] == first


def test_missing_data_folder(setup: dict[str, Path], tmp_path: Path) -> None:
    result = _run("--model", setup["instance"], "--data", tmp_path / "nowhere")
    assert result.exit_code == 1
    assert "no annotation file for split 'valid'" in _error(result)


def test_missing_model_folder(setup: dict[str, Path], tmp_path: Path) -> None:
    result = _run("--model", tmp_path / "no-model", "--data", setup["data"])
    assert result.exit_code in (1, 2) and "no-model" in _error(result)


@pytest.mark.parametrize(
    "option", [["--batch-size", "2"], ["--ray"], ["--output", "x"], ["--actors", "3"], ["--pictures"]]
)
def test_deimv2_options_are_refused_for_videomt(setup: dict[str, Path], option: list[str]) -> None:
    result = _run("--model", setup["instance"], "--data", setup["data"], *option)
    assert result.exit_code == 1
    assert _error(result) == f"Error: {option[0]} does not apply to VidEoMT models"


@pytest.mark.parametrize("option", [["--predictions", "p.json"], ["--max-videos", "1"], ["--chunk", "2"]])
def test_videomt_options_are_refused_for_deimv2(setup: dict[str, Path], option: list[str]) -> None:
    result = _run("--model", setup["deimv2"], "--data", setup["coco"], *option)
    assert result.exit_code == 1
    assert _error(result) == f"Error: {option[0]} does not apply to DEIMv2 models"


def test_videomt_model_on_coco_data(setup: dict[str, Path]) -> None:
    result = _run("--model", setup["instance"], "--data", setup["coco"])
    assert result.exit_code == 1
    assert "a COCO image data set; a VidEoMT model evaluates on video data" in _error(result)


def test_predictions_only_for_instance_models(setup: dict[str, Path], tmp_path: Path) -> None:
    result = _run("--model", setup["semantic"], "--data", setup["data"], "--predictions", tmp_path / "p.json")
    assert result.exit_code == 1 and "takes instance models, not semantic" in _error(result)
    assert not (tmp_path / "p.json").exists()
