"""VidEoMT save_pretrained -> from_pretrained gives the saved model back, bit for bit, on both backbones."""

from __future__ import annotations

from pathlib import Path

import torch

from reload_checks import poisoned_memory
from visionports.models.videomt import VideomtConfig, VideomtForUniversalSegmentation

TINY = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96, segmenter_blocks=[2],
            num_queries=6, id2label={i: str(i) for i in range(4)})  # fmt: skip
BACKBONES = {
    "dinov2": {"position_grid_size": 4},
    "dinov3": {"position_grid_size": None, "layer_norm_eps": 1e-5, "rope_theta": 100.0},
}


def _model(backbone: str) -> VideomtForUniversalSegmentation:
    torch.manual_seed(0)
    model = VideomtForUniversalSegmentation(
        VideomtConfig(backbone_type=backbone, **TINY, **BACKBONES[backbone])
    )
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from the initialisation (unit scales, zero biases)
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return model.eval()


def _run(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    clip = torch.randn(1, 2, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(clip)
    return {"class": out.class_queries_logits, "masks": out.masks_queries_logits, "state": out.state.queries}


def test_poisoning_is_active() -> None:
    with poisoned_memory():
        assert torch.isnan(torch.empty(8)).all()


def test_rope_frequencies_after_from_pretrained(tmp_path: Path) -> None:
    """The non-persistent RoPE buffer is recomputed, not left as the meta-built model's fresh memory."""
    model = _model("dinov3")
    model.save_pretrained(tmp_path)
    with poisoned_memory():
        loaded = VideomtForUniversalSegmentation.from_pretrained(tmp_path)
    expected = torch.tensor([1.0, 100**-0.25, 100**-0.5, 100**-0.75])  # head_dim 16: theta^(-4i/16)
    torch.testing.assert_close(loaded.rope.inv_freq, expected, atol=0, rtol=1e-6)
    assert torch.equal(loaded.rope.inv_freq, model.rope.inv_freq)


# Bit-identical reloads of every VidEoMT preset shape (both backbones): tests/core/test_reload_audit.py.
