"""Fine-tuning DEIMv2: schedule, parameter groups, EMA, data set, and the train/evaluate CLI end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModelForObjectDetection

from visionports.cli import main
from visionports.data.coco_dataset import load_coco_split
from visionports.data.detection_data import CocoDetectionDataset, collate_detection
from visionports.data.synthetic_coco import make_synthetic_coco
from visionports.models.deimv2 import Deimv2Config, Deimv2ForObjectDetection, Deimv2ImageProcessor
from visionports.models.deimv2.train_deimv2 import augmentation_plan, flat_cosine_factor, parameter_groups
from visionports.models.deimv2.train_options_deimv2 import FineTuneOptions
from visionports.training.ema import ModelEMA
from visionports.training.fine_tuning import (
    AugmentationEpochCallback,
    TrainingOptionError,
    check_options,
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_coco(tmp_path_factory.mktemp("shapes"), 6, 3, (128, 160), 3, seed=1)


@pytest.fixture(scope="module")
def start_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("atto")
    Deimv2ForObjectDetection(Deimv2Config.from_preset("atto", num_queries=20)).save_pretrained(folder)
    Deimv2ImageProcessor(size={"height": 128, "width": 128}).save_pretrained(folder)
    return folder


def test_flat_cosine_schedule() -> None:
    factors = [flat_cosine_factor(s, total=100, warmup=10, flat=40, no_aug=10, gamma=0.5) for s in range(101)]
    assert factors[0] == 0.0 and factors[5] == pytest.approx(0.25) and factors[10] == 1.0
    assert (
        factors[40] == 1.0
        and factors[65] == pytest.approx(0.75)
        and factors[90] == 0.5
        and factors[100] == 0.5
    )
    assert all(a >= b for a, b in zip(factors[40:], factors[41:], strict=False))


def test_parameter_groups_split_backbone_and_decay() -> None:
    model = Deimv2ForObjectDetection(Deimv2Config.from_preset("atto", num_queries=20))
    groups = parameter_groups(model, lr=1e-3, backbone_lr=1e-4, weight_decay=0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    backbone = {id(p) for p in model.model.backbone.parameters()}
    for group in groups:
        in_backbone = {id(p) in backbone for p in group["params"]}
        assert len(in_backbone) == 1 and group["lr"] == (1e-4 if in_backbone.pop() else 1e-3)
        assert group["weight_decay"] == (0.0 if all(p.ndim <= 1 for p in group["params"]) else 0.1)


def test_model_ema_update() -> None:
    model = torch.nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.5, warmups=0)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, start + 1.0) and not ema.module.weight.requires_grad
    ramp = ModelEMA(model, decay=0.9, warmups=10)
    ramp.updates = 10
    assert ramp.current_decay() == pytest.approx(0.9 * (1 - 1 / 2.718281828459045))
    with pytest.raises(ValueError, match="decay must be in"):
        ModelEMA(model, decay=1.0)


def test_detection_dataset_targets(shapes: Path) -> None:
    split = load_coco_split(shapes, "train")
    processor = Deimv2ImageProcessor(size={"height": 64, "width": 64})
    item = CocoDetectionDataset(split, processor)[0]
    image = split.images[0]
    assert item["pixel_values"].shape == (3, 64, 64)
    x, y, w, h = image.boxes_xywh[0]
    expected = torch.tensor(
        [(x + w / 2) / image.width, (y + h / 2) / image.height, w / image.width, h / image.height]
    )
    assert torch.allclose(item["labels"]["boxes"][0], expected)
    assert item["labels"]["class_labels"][0] == split.label_of(image.category_ids[0])
    flipped = CocoDetectionDataset(split, processor, horizontal_flip=1.0)[0]
    assert torch.equal(flipped["pixel_values"], item["pixel_values"].flip(-1))
    assert torch.allclose(flipped["labels"]["boxes"][:, 0], 1 - item["labels"]["boxes"][:, 0])
    batch = collate_detection([item, flipped])
    assert batch["pixel_values"].shape == (2, 3, 64, 64) and len(batch["labels"]) == 2
    with pytest.raises(ValueError, match="horizontal_flip must be a probability"):
        CocoDetectionDataset(split, processor, horizontal_flip=2.0)


def test_train_two_steps_then_evaluate(shapes: Path, start_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    runner = CliRunner()
    args = ["train", "--model", str(start_model), "--data", str(shapes), "--output", str(out),
            "--batch-size", "3", "--max-steps", "2", "--ema-warmups", "1", "--seed", "0"]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "fine-tuned: 2 steps on 6 images (4 classes)" in result.output and "AP50" in result.output
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {p.name for p in out.iterdir()}
    tuned = AutoModelForObjectDetection.from_pretrained(out)
    categories = json.loads((shapes / "annotations" / "instances_train.json").read_text())["categories"]
    names = [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
    assert tuned.config.num_labels == 4 and [tuned.config.id2label[i] for i in range(4)] == names
    assert tuned.model.decoder.denoising_class_embed.weight.shape == (5, 64)
    start = AutoModelForObjectDetection.from_pretrained(start_model)
    before = dict(start.named_parameters())
    kept = [
        n
        for n, p in tuned.named_parameters()
        if n.startswith("model.backbone") and p.shape == before[n].shape
    ]
    assert kept and any(
        not torch.equal(dict(tuned.named_parameters())[n], before[n]) for n in kept
    )  # trained
    checkpoint = out / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "ema" / "model.safetensors").is_file() and (
        checkpoint / "model.safetensors"
    ).is_file()

    evaluated = runner.invoke(main, ["evaluate", "--model", str(out), "--data", str(shapes)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "AP50" in evaluated.output and "AR_100" in evaluated.output

    again = runner.invoke(main, args)
    assert again.exit_code != 0 and "exists and is not empty; pass --overwrite" in again.output


def test_train_bad_inputs_write_nothing(shapes: Path, start_model: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    broken = tmp_path / "broken"
    (broken / "annotations").mkdir(parents=True)
    (broken / "annotations" / "instances_train.json").write_text('{"images": [], "annotations": 3}')
    for model_dir, data, message in [
        (start_model, broken, "instances_train.json"),
        (tmp_path, shapes, "not a model folder"),
    ]:
        out = tmp_path / "out"
        result = runner.invoke(main, ["train", "--model", str(model_dir), "--data", str(data),
                                      "--output", str(out), "--max-steps", "1"])  # fmt: skip
        assert result.exit_code != 0 and message in result.output
        assert not out.exists()


def test_augmentation_plan_scales_the_recipe_and_takes_overrides() -> None:
    atto = augmentation_plan("atto", FineTuneOptions(augment="recipe"), 12, (192, 192))
    assert atto.policy_epochs == (0, 6, 10) and atto.multiscale_stop_epoch == 11  # 4/250/400, 468 of 500
    assert atto.mosaic_prob == 0.3 and atto.mixup_prob == 0.0 and atto.copyblend_prob == 0.0
    assert atto.min_box_size == pytest.approx(12 * 192 / 320) and atto.multiscale_sizes is None
    small = augmentation_plan(
        "s", FineTuneOptions(augment="recipe"), 132, (640, 640)
    )  # the recipe's own length
    assert (
        small.policy_epochs == (4, 64, 120)
        and small.mixup_epochs == (4, 64)
        and small.copyblend_epochs == (4, 120)
    )
    assert small.multiscale_stop_epoch == 120 and small.multiscale_sizes.count(640) == 20
    given = FineTuneOptions(augment="recipe", augment_epochs="1,2,3", mixup_prob=0.2, mixup_epochs="0,5",
                            multiscale_stop_epoch=7, horizontal_flip=0.0)  # fmt: skip
    plan = augmentation_plan("s", given, 12, (320, 320))
    assert plan.policy_epochs == (1, 2, 3) and plan.mixup_epochs == (0, 5) and plan.mixup_prob == 0.2
    assert plan.multiscale_stop_epoch == 7 and plan.flip_prob == 0.0 and plan.copyblend_epochs == (0, 11)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"augment": "mosaic"}, "--augment must be one of recipe, flip, none"),
        ({"augment": "none", "horizontal_flip": 0.5}, "--hflip flips images; --augment none"),
        ({"augment": "flip", "mosaic_prob": 0.5}, "--mosaic-prob only applies with --augment recipe"),
        ({"augment": "recipe", "augment_epochs": "5,2,9"}, "--augment-epochs must be 3 non-decreasing"),
        ({"augment": "recipe", "mixup_epochs": "a,b"}, "--mixup-epochs must be 2"),
    ],
)
def test_bad_augmentation_options_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(TrainingOptionError, match=message):
        check_options(FineTuneOptions(**changes), overwrite=False)


def test_epoch_callback_sets_the_epoch_that_starts() -> None:
    class Target:
        epoch = -1

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

    targets = Target(), Target()
    callback = AugmentationEpochCallback(*targets)
    for state_epoch, expected in [(0.0, 0), (2.0, 2), (2.9999999999, 3), (3.5, 3)]:
        callback.on_epoch_begin(None, type("State", (), {"epoch": state_epoch})(), None)
        assert [t.epoch for t in targets] == [expected, expected]


def test_train_one_recipe_step_in_bf16(shapes: Path, start_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "recipe"
    args = ["train", "--model", str(start_model), "--data", str(shapes), "--output", str(out), "--batch-size", "3",
            "--max-steps", "1", "--ema-warmups", "1", "--augment", "recipe", "--bf16", "--no-evaluate"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "fine-tuned: 1 steps" in result.output
    state = json.loads((out / "checkpoints" / "checkpoint-1" / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert state["global_step"] == 1 and losses and math.isfinite(losses[0]) and losses[0] > 0
    assert (out / "model.safetensors").is_file()
