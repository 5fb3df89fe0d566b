"""VidEoMT fine-tuning: the original's optimiser groups and schedule, ``visionports train`` on a synthetic
YouTube-VIS set (one process, resumed, bf16, and two processes under torchrun), and its refusals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from visionports.cli import main
from visionports.data.synthetic_videos import make_synthetic_ytvis
from visionports.models.videomt import VideomtConfig, VideomtForUniversalSegmentation
from visionports.models.videomt.family import make_processor
from visionports.models.videomt.train_videomt import layer_scale_of, parameter_groups, two_stage_factor

TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, segmenter_blocks=[1, 2],
            num_queries=8, position_grid_size=4, train_num_points=256, id2label={0: "thing"})  # fmt: skip
SMALL = ["--size-scale", "0.15", "--batch-size", "2", "--no-evaluate"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_ytvis(tmp_path_factory.mktemp("videos"), 4, 2, frames=6, size=(64, 96), seed=0)


@pytest.fixture(scope="module")
def start_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("videomt")
    config = VideomtConfig(**TINY)
    VideomtForUniversalSegmentation(config).save_pretrained(folder)
    make_processor(config).save_pretrained(folder)
    return folder


def _train(*args: str):
    return CliRunner().invoke(main, ["train", *args])


def test_layer_wise_decay_follows_the_original_block_order() -> None:
    depth, decay = 4, 0.6
    assert layer_scale_of("layers.3.mlp.fc1.weight", depth, decay, "dinov2") == 1.0
    assert layer_scale_of("layers.0.attention.qkv.weight", depth, decay, "dinov2") == pytest.approx(0.6**3)
    assert layer_scale_of("embeddings.position_embeddings", depth, decay, "dinov2") == pytest.approx(0.6**3)
    assert layer_scale_of("norm.weight", depth, decay, "dinov2") == 1.0  # after the blocks in timm's order
    assert layer_scale_of("norm.weight", depth, decay, "dinov3") == pytest.approx(
        0.6**3
    )  # before them in HF's
    assert layer_scale_of("query.weight", depth, decay, "dinov2") is None
    assert layer_scale_of("class_head.bias", depth, decay, "dinov3") is None
    model = VideomtForUniversalSegmentation(VideomtConfig(**TINY))
    groups = parameter_groups(model, 1e-4, 0.05, decay)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert all(g["weight_decay"] == 0.05 for g in groups)
    assert [g["vit"] for g in groups] == [True] * (len(groups) - 1) + [False]
    assert sorted(round(g["lr"] / 1e-4, 6) for g in groups) == [0.36, 0.6, 1.0, 1.0]


def test_two_stage_schedule() -> None:
    def factor(step: int, vit: bool) -> float:
        return two_stage_factor(step, vit, head_warmup=10, vit_warmup=20, total=100, power=0.9)

    assert [factor(s, False) for s in (0, 5, 10)] == [0.0, 0.5, 1.0]
    assert factor(55, False) == pytest.approx(0.5**0.9)
    assert [factor(s, True) for s in (0, 9, 10, 20, 30)] == [0.0, 0.0, 0.0, 0.5, 1.0]
    assert factor(65, True) == pytest.approx(0.5**0.9)
    assert factor(100, True) == factor(100, False) == 0.0


def test_train_cli_fine_tunes_reloads_and_resumes(data: Path, start_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _train(
        "--model", str(start_model), "--data", str(data), "--output", str(out), "--max-steps", "2", *SMALL
    )
    assert result.exit_code == 0, result.output
    assert "fine-tuned: 2 steps on 4 videos" in result.output
    model = VideomtForUniversalSegmentation.from_pretrained(out)
    assert model.config.num_labels == len(model.config.category_ids) == 4  # the data set's classes
    start = load_file(str(start_model / "model.safetensors"))
    trained = load_file(str(out / "model.safetensors"))
    assert not torch.equal(start["query_updater.weight"], trained["query_updater.weight"])
    resumed = _train("--model", str(start_model), "--data", str(data), "--output", str(out), "--max-steps", "3",
                     "--resume", "latest", *SMALL)  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert "fine-tuned: 3 steps" in resumed.output


def test_bf16_on_cpu(data: Path, start_model: Path, tmp_path: Path) -> None:
    result = _train("--model", str(start_model), "--data", str(data), "--output", str(tmp_path / "bf16"), "--max-steps",
                    "1", "--bf16", *SMALL)  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("option", "family"), [(["--ema-decay", "0.5"], "deimv2"), (["--horizontal-flip", "0.5"], "deimv2")]
)
def test_an_option_of_the_other_family_is_refused(
    data: Path, start_model: Path, tmp_path: Path, option: list[str], family: str
) -> None:
    result = _train(
        "--model", str(start_model), "--data", str(data), "--output", str(tmp_path / "x"), *option
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].endswith(f"applies to {family} models, not videomt")
    assert not (tmp_path / "x").exists()


def test_coco_data_for_a_video_model_is_refused(start_model: Path, tmp_path: Path) -> None:
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    result = _train(
        "--model", str(start_model), "--data", str(tmp_path / "coco"), "--output", str(tmp_path / "x")
    )
    assert result.exit_code == 1 and "no annotation file for split 'train'" in result.output
    assert not (tmp_path / "x").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_torchrun(data: Path, start_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "visionports.cli", "train", "--model", str(start_model), "--data", str(data),
               "--output", str(out), "--epochs", "1", "--batch-size", "1", "--size-scale", "0.15", "--no-evaluate",
               ]  # fmt: skip
    run = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=240)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("fine-tuned:") == 1  # the main process alone reports
    assert "fine-tuned: 2 steps on 4 videos" in run.stdout  # 4 clips per epoch over 2 processes x 1 clip
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--bf16", "--fp16"], "--bf16 and --fp16 exclude each other"),
        (["--resume", "latest", "--overwrite"], "--resume"),
    ],
)
def test_run_options_that_cannot_run_are_refused(
    data: Path, start_model: Path, tmp_path: Path, option: list[str], message: str
) -> None:
    result = _train(
        "--model", str(start_model), "--data", str(data), "--output", str(tmp_path / "x"), *option
    )
    assert result.exit_code == 1 and message in result.output.strip().splitlines()[-1]
    assert not (tmp_path / "x").exists()
