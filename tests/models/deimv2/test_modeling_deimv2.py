from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForObjectDetection

from visionports import Deimv2Config, Deimv2ForObjectDetection, Deimv2Model
from visionports.models.deimv2.decoder_deimv2 import generate_anchors


def _model(config: Deimv2Config, dtype: torch.dtype = torch.float32) -> Deimv2ForObjectDetection:
    return Deimv2ForObjectDetection(config).eval().to(dtype)


def test_outputs_and_round_trip(tiny_config: Deimv2Config, tmp_path: Path) -> None:
    model = _model(tiny_config)
    pixels = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model(pixels)
    q, c = tiny_config.num_queries, tiny_config.num_labels
    assert out.logits.shape == (2, q, c) and out.pred_boxes.shape == (2, q, 4)
    assert out.decoder_hidden_states is None and out.backbone_hidden_states is None
    model.save_pretrained(tmp_path)
    loaded = AutoModelForObjectDetection.from_pretrained(tmp_path).eval()
    assert type(loaded) is Deimv2ForObjectDetection
    with torch.no_grad():
        again = loaded(pixels)
    assert torch.equal(again.logits, out.logits) and torch.equal(again.pred_boxes, out.pred_boxes)
    body = AutoModel.from_pretrained(tmp_path).eval()
    assert type(body) is Deimv2Model
    with torch.no_grad():
        assert torch.equal(body(pixels).logits, out.logits)


def test_batch_independence(tiny_config: Deimv2Config) -> None:
    model = _model(tiny_config, torch.float64)
    pixels = torch.rand(3, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        batched = model(pixels)
        single = [model(pixels[i : i + 1]) for i in range(3)]
    for i, out in enumerate(single):
        torch.testing.assert_close(batched.logits[i], out.logits[0], atol=1e-10, rtol=0)
        torch.testing.assert_close(batched.pred_boxes[i], out.pred_boxes[0], atol=1e-10, rtol=0)


def test_hidden_states(tiny_config: Deimv2Config) -> None:
    model = _model(tiny_config)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64), output_hidden_states=True)
    levels = tiny_config.num_feature_levels
    assert len(out.encoder_hidden_states) == levels
    assert all(h.shape[1] == tiny_config.d_model for h in out.encoder_hidden_states)
    assert len(out.decoder_hidden_states) == tiny_config.decoder_layers + 1  # initial queries + each layer
    assert torch.equal(out.decoder_hidden_states[-1], out.last_hidden_state)
    assert out.initial_queries.shape == (1, tiny_config.num_queries, tiny_config.d_model)
    assert out.enc_topk_indices.dtype == torch.int64
    # strides of the encoder maps follow the decoder strides
    sizes = [64 // s for s in tiny_config.decoder_feat_strides]
    assert [h.shape[-1] for h in out.encoder_hidden_states] == sizes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_smoke(tiny_config: Deimv2Config, dtype: torch.dtype) -> None:
    model = _model(tiny_config, dtype)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64).to(dtype))
    assert (
        out.logits.dtype == dtype
        and torch.isfinite(out.logits).all()
        and torch.isfinite(out.pred_boxes).all()
    )


def test_other_input_sizes(tiny_config: Deimv2Config) -> None:
    model = _model(tiny_config)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 96, 128), output_hidden_states=True)
    assert out.logits.shape == (1, tiny_config.num_queries, 80)
    anchors = sum((96 // s) * (128 // s) for s in tiny_config.decoder_feat_strides)
    assert out.enc_outputs_logits.shape[1] == anchors


def test_bad_inputs_are_named() -> None:
    model = _model(Deimv2Config.from_preset("atto", num_queries=10))
    cases = [
        (torch.rand(3, 64, 64), ValueError, "shape \\[batch, 3, height, width\\]"),
        (torch.rand(1, 1, 64, 64), ValueError, "3 \\(RGB\\) channels, got 1"),
        (torch.randint(0, 255, (1, 3, 64, 64)), TypeError, "floating tensor"),
        (torch.rand(1, 3, 64, 64, dtype=torch.float64), TypeError, "model is torch.float32"),
        (torch.rand(1, 3, 64, 50), ValueError, "multiples of 32"),
        (torch.rand(1, 3, 32, 32), ValueError, "too small"),
        ("not a tensor", TypeError, "must be a torch.Tensor"),
    ]
    for pixels, error, message in cases:
        with pytest.raises(error, match=message), torch.no_grad():
            model(pixels)


def test_anchors_follow_the_original_rule() -> None:
    anchors, valid = generate_anchors([(80, 80), (40, 40), (20, 20)], 0.05, 0.01)
    assert anchors.shape == (1, 8400, 4) and valid.shape == (1, 8400, 1)
    # at stride 8 of a 640 input the outermost centres (0.00625) fall outside (0.01, 0.99)
    assert not valid[0, 0, 0] and torch.isinf(anchors[0, 0]).all()
    assert valid[0, 81, 0]
    torch.testing.assert_close(torch.sigmoid(anchors[0, 81]), torch.tensor([0.01875, 0.01875, 0.05, 0.05]))
