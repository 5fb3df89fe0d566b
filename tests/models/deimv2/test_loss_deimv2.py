"""DEIMv2 training criterion, component by component (golden loss cases run in tests/core/test_parity.py)."""

from __future__ import annotations

import math

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError

from visionports.models.deimv2.configuration_deimv2 import Deimv2Config
from visionports.models.deimv2.decoder_deimv2 import weighting_function
from visionports.models.deimv2.denoising_deimv2 import inverse_sigmoid, make_denoising_groups
from visionports.models.deimv2.loss_deimv2 import (
    Deimv2Criterion,
    fdr_targets,
    prepare_targets,
    union_matching,
)
from visionports.models.deimv2.matcher_deimv2 import Deimv2HungarianMatcher
from visionports.models.deimv2.modeling_deimv2 import Deimv2ForObjectDetection
from visionports.utils.boxes import center_to_corners, pairwise_generalized_iou, pairwise_iou


def test_iou_and_generalized_iou() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 4.0, 5.0, 5.0]])
    iou, union = pairwise_iou(a, b)
    assert torch.allclose(iou, torch.tensor([[1 / 7, 0.0]]))
    assert torch.allclose(union, torch.tensor([[7.0, 5.0]]))
    giou = pairwise_generalized_iou(a, b)
    assert torch.allclose(giou, torch.tensor([[1 / 7 - 2 / 9, 0 - 20 / 25]]))
    assert torch.equal(
        center_to_corners(torch.tensor([0.5, 0.5, -1.0, 0.2]), clamp_size=True),
        torch.tensor([0.5, 0.4, 0.5, 0.6]),
    )
    with pytest.raises(ValueError, match="boxes2 holds degenerate boxes"):
        pairwise_generalized_iou(a, torch.tensor([[1.0, 1.0, 0.0, 0.0]]))


def test_matcher_assigns_the_obvious_pairs_and_switches_cost_at_the_epoch() -> None:
    targets = [
        {"labels": torch.tensor([3, 1]), "boxes": torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2]])}
    ]
    boxes = torch.tensor([[[0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.5, 0.5], [0.2, 0.2, 0.1, 0.1]]])
    logits = torch.full((1, 3, 5), -4.0)
    logits[0, 0, 1] = logits[0, 2, 3] = 4.0
    matcher = Deimv2HungarianMatcher(change_epoch=10)
    rows, cols = matcher(logits, boxes, targets, epoch=0)[0]
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 2: 0}
    late = matcher.cost_matrix(logits, boxes, targets, epoch=10)[0]
    iou, _ = pairwise_iou(center_to_corners(boxes[0]), center_to_corners(targets[0]["boxes"]))
    expected = -(torch.sigmoid(logits[0])[:, [3, 1]] * iou**4)
    assert torch.allclose(late, expected)
    assert not torch.allclose(matcher.cost_matrix(logits, boxes, targets, epoch=9)[0], expected)
    empty = matcher(logits, boxes, [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}])
    assert len(empty[0][0]) == 0


def test_union_matching_keeps_the_most_frequent_target_per_query() -> None:
    final = [(torch.tensor([0, 1]), torch.tensor([0, 1]))]
    layer1 = [(torch.tensor([0, 2]), torch.tensor([1, 1]))]
    layer2 = [(torch.tensor([0, 3]), torch.tensor([1, 0]))]
    rows, cols = union_matching(final, [layer1, layer2])[0]
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 1: 1, 2: 1, 3: 0}


def test_fdr_targets_interpolate_the_edge_distances() -> None:
    up, reg_scale, bins = torch.tensor([0.5]), torch.tensor([4.0]), 32
    reference = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.6, 0.1, 0.3]])
    target = torch.tensor([[0.41, 0.38, 0.63, 0.59], [0.2, 0.5, 0.42, 0.7]])
    left, right_w, left_w = fdr_targets(reference, target, bins, reg_scale, up)
    values = weighting_function(bins, up, reg_scale)
    cx, cy, w, h = reference.unbind(-1)
    distances = torch.stack(
        [(cx - target[:, 0]) / (w / 4), (cy - target[:, 1]) / (h / 4), (target[:, 2] - cx) / (w / 4),
         (target[:, 3] - cy) / (h / 4)], -1).reshape(-1) - 2  # fmt: skip
    index = left.long()
    decoded = left_w * values[index] + right_w * values[index + 1]
    inside = (distances > values[0]) & (distances < values[-1])
    assert inside.sum() >= 6
    assert torch.allclose(decoded[inside], distances[inside], atol=1e-5)
    assert torch.allclose(left_w + right_w, torch.ones_like(left_w))
    far = fdr_targets(reference[:1], torch.tensor([[0.0, 0.0, 1.0, 1.0]]), bins, reg_scale, up)
    assert torch.allclose(far[0], torch.full((4,), bins - 0.1)) and torch.equal(far[1], torch.ones(4))


def test_denoising_groups_shapes_mask_and_seeded_draws() -> None:
    embed = torch.nn.Embedding(81, 8, padding_idx=80)
    labels = [torch.tensor([1, 2, 3]), torch.tensor([4])]
    boxes = [torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 3), torch.tensor([[0.3, 0.3, 0.1, 0.1]])]
    torch.manual_seed(0)
    groups = make_denoising_groups(labels, boxes, 80, 10, embed, num_denoising=20)
    assert groups.num_groups == 6 and groups.num_queries == 36
    assert groups.content.shape == (2, 36, 8) and groups.reference_logits.shape == (2, 36, 4)
    assert groups.attention_mask.shape == (46, 46)
    assert not groups.attention_mask[36:, :36].any() and groups.attention_mask[36:, 36:].all()
    assert groups.attention_mask[:6, :6].all() and not groups.attention_mask[:6, 6:36].any()
    assert groups.positive_indices[0].tolist() == [g * 6 + i for g in range(6) for i in range(3)]
    assert groups.positive_indices[1].tolist() == [g * 6 for g in range(6)]
    positives = torch.sigmoid(groups.reference_logits[0, groups.positive_indices[0]])
    assert ((positives[:, :2] - 0.5).abs() <= 0.2 + 1e-6).all()  # centres move at most half a box
    torch.manual_seed(0)
    again = make_denoising_groups(labels, boxes, 80, 10, embed, num_denoising=20)
    assert torch.equal(again.reference_logits, groups.reference_logits)
    assert (
        make_denoising_groups([torch.zeros(0, dtype=torch.long)], [torch.zeros(0, 4)], 80, 10, embed) is None
    )
    assert make_denoising_groups(labels, boxes, 80, 10, embed, num_denoising=0) is None
    assert torch.allclose(inverse_sigmoid(torch.tensor([0.5, 1.0])), torch.tensor([0.0, math.log(1 / 1e-5)]))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"class_labels": torch.tensor([1]), "boxes": torch.rand(1, 4)}, "list of dicts"),
        (
            [{"class_labels": torch.tensor([1]), "boxes": torch.rand(1, 4)}],
            "one dict per image: got 1 for a batch of 2",
        ),
        ([{"boxes": torch.rand(1, 4)}] * 2, "must have 'class_labels' and 'boxes'"),
        ([{"class_labels": torch.tensor([80]), "boxes": torch.rand(1, 4)}] * 2, "must lie in \\[0, 79\\]"),
        ([{"class_labels": torch.tensor([1.0]), "boxes": torch.rand(1, 4)}] * 2, "1-D integer tensor"),
        ([{"class_labels": torch.tensor([1]), "boxes": torch.rand(2, 4)}] * 2, "must have shape \\[1, 4\\]"),
        (
            [{"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 1.5, 0.1]])}] * 2,
            "normalised",
        ),
        (
            [{"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, float("nan"), 0.1, 0.1]])}] * 2,
            "NaN",
        ),
    ],
)
def test_prepare_targets_rejects_bad_labels(labels, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        prepare_targets(labels, 2, 80, torch.device("cpu"), torch.float32)


def test_presets_carry_the_recipe() -> None:
    atto, n, s = (Deimv2Config.from_preset(v) for v in ("atto", "n", "s"))
    assert atto.loss_types == ["mal", "boxes"] and not atto.use_union_set_matching
    assert (atto.matcher_change_epoch, n.matcher_change_epoch, s.matcher_change_epoch) == (450, 136, 100)
    assert s.loss_types == ["mal", "boxes", "local"] and s.use_union_set_matching
    assert (s.loss_gamma, s.mal_alpha, s.weight_loss_fgl, s.weight_loss_ddf) == (1.5, None, 0.15, 1.5)
    with pytest.raises(
        StrictDataclassClassValidationError, match="loss_types has unknown entries \\['iou'\\]"
    ):
        Deimv2Config.from_preset("atto", loss_types=["mal", "iou"])


def _tiny_hybrid_config(**kw) -> Deimv2Config:
    return Deimv2Config.from_preset(
        "n", encoder_in_channels=[512, 1024], encoder_hidden_dim=32, d_model=32, decoder_ffn_dim=64,
        encoder_ffn_dim=64, num_queries=30, decoder_n_points=[2, 2], **kw)  # fmt: skip


def _labels() -> list[dict]:
    return [
        {
            "class_labels": torch.tensor([1, 5]),
            "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.3, 0.1, 0.1]]),
        },
        {"class_labels": torch.tensor([7]), "boxes": torch.tensor([[0.6, 0.4, 0.3, 0.3]])},
    ]


def test_training_forward_returns_every_term_and_gradients() -> None:
    torch.manual_seed(0)
    model = Deimv2ForObjectDetection(_tiny_hybrid_config()).train()
    for p in model.model.decoder.parameters():  # non-zero heads, so that layers disagree (DDF appears)
        torch.nn.init.normal_(p, std=0.05)
    out = model(torch.rand(2, 3, 128, 128), labels=_labels())
    names = set(out.loss_dict)
    assert {"loss_mal", "loss_bbox", "loss_giou", "loss_fgl", "loss_ddf_aux_0", "loss_fgl_dn_2", "loss_mal_enc_0",
            "loss_giou_pre", "loss_bbox_dn_pre"} <= names  # fmt: skip
    assert "loss_ddf" not in names and "loss_fgl_pre" not in names and "loss_fgl_enc_0" not in names
    assert torch.isclose(out.loss, sum(out.loss_dict.values()))
    assert out.logits.shape == (2, 30, 80) and out.pred_boxes.shape == (2, 30, 4)
    out.loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith("model.backbone") for n in grads)
    assert "model.model.decoder.denoising_class_embed.weight".replace("model.model", "model") in grads


def test_lite_variant_terms_eval_mode_and_empty_targets() -> None:
    torch.manual_seed(0)
    config = Deimv2Config.from_preset("atto", num_queries=20)
    model = Deimv2ForObjectDetection(config).train()
    out = model(torch.rand(2, 3, 128, 128), labels=_labels())
    assert not any("fgl" in k or "ddf" in k for k in out.loss_dict)
    assert "loss_mal_dn_2" in out.loss_dict and torch.isfinite(out.loss)
    model.eval()
    with torch.no_grad():
        evaluation = model(torch.rand(2, 3, 128, 128), labels=_labels())
    assert not any("_dn_" in k for k in evaluation.loss_dict) and torch.isfinite(evaluation.loss)
    model.train()
    empty = [{"class_labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}] * 2
    nothing = model(torch.rand(2, 3, 128, 128), labels=empty)
    assert torch.isfinite(nothing.loss) and not any("_dn_" in k for k in nothing.loss_dict)
    assert float(nothing.loss_dict["loss_bbox"].detach()) == 0.0


def test_criterion_epoch_is_a_forward_argument() -> None:
    torch.manual_seed(0)
    model = Deimv2ForObjectDetection(Deimv2Config.from_preset("atto", num_queries=20, matcher_change_epoch=3))
    for p in model.model.decoder.parameters():
        torch.nn.init.normal_(p, std=0.05)
    model.train()
    x = torch.rand(2, 3, 128, 128)
    results = []
    for epoch in (None, 0, 3):
        torch.manual_seed(1)
        results.append(model(x, labels=_labels(), epoch=epoch).loss_dict["loss_mal"])
    assert torch.equal(results[0], results[1]) and not torch.equal(results[1], results[2])
    assert not hasattr(model, "training_epoch")  # no mutable state carries the epoch
    assert Deimv2Criterion(model.config).matcher.change_epoch == 3


def test_the_trainer_passes_the_current_epoch(tmp_path) -> None:
    from transformers import TrainingArguments

    from visionports.models.deimv2.train_deimv2 import DetectionTrainer

    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(1))

        def forward(self, pixel_values, epoch):
            seen.append(epoch)
            return {"loss": (self.weight * pixel_values).sum()}

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = DetectionTrainer(model=Recorder(), args=args)
    for state_epoch, expected in ((0.0, 0), (0.75, 0), (2.0, 2), (2.999, 2)):
        trainer.state.epoch = state_epoch
        trainer.compute_loss(trainer.model, {"pixel_values": torch.ones(1)})
        assert seen[-1] == expected


def test_criterion_takes_targets_and_epoch_as_arguments() -> None:
    torch.manual_seed(0)
    model = Deimv2ForObjectDetection(Deimv2Config.from_preset("atto", num_queries=20)).train()
    x = torch.rand(2, 3, 128, 128)
    torch.manual_seed(1)
    out = model(x, labels=_labels(), epoch=2)
    assert not hasattr(out.training_outputs, "targets")  # the checked targets do not travel in the output
    targets = prepare_targets(_labels(), 2, model.config.num_labels, x.device, x.dtype)
    direct = Deimv2Criterion(model.config)(out.training_outputs, targets, epoch=2)
    assert direct.keys() == out.loss_dict.keys()
    assert all(torch.equal(direct[k], out.loss_dict[k]) for k in direct)
