"""Tiny DEIMv2 configurations covering each backbone/encoder family."""

from __future__ import annotations

import pytest

from visionports import Deimv2Config

_VIT = dict(vit_hidden_size=32, vit_num_heads=2, vit_ffn_hidden_size=64, vit_depth=4, vit_out_indices=[1, 2, 3],
            sta_inplanes=8, backbone_hidden_dim=32, encoder_in_channels=[32, 32, 32], encoder_hidden_dim=32,
            encoder_ffn_dim=64, d_model=32, decoder_ffn_dim=64, num_queries=10, eval_image_size=[64, 64])  # fmt: skip

TINY = {
    "lite_hgnet": lambda: Deimv2Config.from_preset("atto", num_queries=10, eval_image_size=[64, 64]),
    "hybrid_hgnet": lambda: Deimv2Config.from_preset("n", num_queries=10, eval_image_size=[64, 64]),
    "vit_tiny": lambda: Deimv2Config.from_preset("s", **_VIT),
    "dinov3": lambda: Deimv2Config.from_preset("x", **_VIT, vit_num_register_tokens=2),
}


@pytest.fixture(params=sorted(TINY))
def tiny_config(request: pytest.FixtureRequest) -> Deimv2Config:
    return TINY[request.param]()
