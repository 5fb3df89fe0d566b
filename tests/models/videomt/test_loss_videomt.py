"""VidEoMT training loss: the clip-consistent matcher, the terms, gradients and label checks (the golden loss
cases of the original run through the parity tool in tests/core/test_parity.py)."""

from __future__ import annotations

import pytest
import torch

from visionports.models.videomt import VideomtConfig, VideomtForUniversalSegmentation
from visionports.models.videomt.matcher_videomt import VideomtClipMatcher

TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, segmenter_blocks=[0, 1, 2],
            num_queries=6, position_grid_size=4, train_num_points=256, id2label={i: str(i) for i in range(3)})  # fmt: skip


def _model(**overrides) -> VideomtForUniversalSegmentation:
    torch.manual_seed(0)
    return VideomtForUniversalSegmentation(VideomtConfig(**{**TINY, **overrides})).train()


def _clip(tracks: int = 2, frames: int = 3, size: int = 32) -> tuple[torch.Tensor, list[dict]]:
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(1, frames, 3, size, size, generator=g)
    masks = torch.zeros(tracks, frames, size, size, dtype=torch.bool)
    for n in range(tracks):
        masks[n, n % frames :, 4 * n : 4 * n + 12, 6:20] = True  # track n appears in frame n
    labels = {"class_labels": torch.arange(tracks) % 3, "mask_labels": masks}
    return pixels, [labels]


def test_a_track_is_matched_once_in_its_first_frame_and_taken_slots_are_skipped() -> None:
    # track 0 appears in frame 0, track 1 in frame 1; slot 0 predicts both perfectly where each appears, slot 2
    # predicts track 1 less well: slot 0 is taken by track 0 in frame 0, so track 1 gets slot 2
    h = w = 8
    masks = torch.zeros(2, 2, h, w)
    masks[0, :, :4] = 1
    masks[1, 1, 4:] = 1
    present = torch.tensor([[True, True], [False, True]])
    mask_logits = torch.full((2, 3, h, w), -10.0)
    mask_logits[0, 0] = masks[0, 0] * 20 - 10
    mask_logits[1, 0] = masks[1, 1] * 20 - 10
    mask_logits[1, 2] = masks[1, 1] * 8 - 4
    class_logits = torch.zeros(2, 3, 4)
    matcher = VideomtClipMatcher(class_cost=2.0, mask_cost=5.0, dice_cost=5.0, num_points=4096)
    queries, tracks = matcher.match_clip(class_logits, mask_logits, torch.tensor([0, 1]), masks, present)
    assert queries.tolist() == [0, 2] and tracks.tolist() == [0, 1]


def test_labels_give_the_original_terms_and_gradients_reach_every_parameter() -> None:
    model = _model()
    pixels, labels = _clip()
    out = model(pixels, labels=labels)
    blocks = len(TINY["segmenter_blocks"])
    expected = {
        f"loss_{k}{s}" for k in ("ce", "mask", "dice") for s in ["", *(f"_{i}" for i in range(blocks - 1))]
    }
    assert set(out.loss_dict) == expected  # the prediction before the last block carries no term
    assert torch.allclose(out.loss, sum(out.loss_dict.values()))
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_tracks_absent_from_every_frame_are_ignored() -> None:
    model = _model()
    pixels, labels = _clip()
    extra = {
        "class_labels": torch.cat([labels[0]["class_labels"], torch.tensor([2])]),
        "mask_labels": torch.cat([labels[0]["mask_labels"], torch.zeros(1, *labels[0]["mask_labels"].shape[1:], dtype=torch.bool)]),
    }  # fmt: skip
    torch.manual_seed(4)
    with torch.no_grad():
        base = model(pixels, labels=labels).loss_dict
    torch.manual_seed(4)
    with torch.no_grad():
        with_absent = model(pixels, labels=[extra]).loss_dict
    assert {k: v.item() for k, v in base.items()} == {k: v.item() for k, v in with_absent.items()}


def test_a_clip_without_tracks_trains_every_slot_towards_no_object() -> None:
    model = _model()
    pixels, labels = _clip()
    empty = [{"class_labels": torch.zeros(0, dtype=torch.int64), "mask_labels": labels[0]["mask_labels"][:0]}]
    out = model(pixels, labels=empty)
    terms = {name: value.item() for name, value in out.loss_dict.items()}
    assert terms["loss_mask"] == terms["loss_dice"] == 0.0 and terms["loss_ce"] > 0
    out.loss.backward()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"class_labels": torch.tensor([0])}, "'class_labels' and 'mask_labels'"),
        ({"class_labels": torch.tensor([0]), "mask_labels": torch.zeros(1, 3, 16, 32, dtype=torch.bool)}, "shape"),
        ({"class_labels": torch.tensor([3]), "mask_labels": torch.zeros(1, 3, 32, 32, dtype=torch.bool)}, "[0, 2]"),
    ],
)  # fmt: skip
def test_bad_labels_are_refused(labels: dict, message: str) -> None:
    model = _model()
    pixels, _ = _clip()
    with pytest.raises(ValueError, match="labels") as error:
        model(pixels, labels=[labels])
    assert message in str(error.value)
    with pytest.raises(ValueError, match="one dict per video"):
        model(pixels, labels=[labels, labels])
