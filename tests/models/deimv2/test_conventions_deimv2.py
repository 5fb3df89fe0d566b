"""transformers conventions of the DEIMv2 models: attentions, hidden states, attention implementations,
gradient checkpointing, initialisation, config aliases, processor arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from visionports import Deimv2Config
from visionports.models.deimv2.image_processing_deimv2 import Deimv2ImageProcessor
from visionports.models.deimv2.layers_deimv2 import Deimv2SelfAttention
from visionports.models.deimv2.modeling_deimv2 import Deimv2ForObjectDetection, Deimv2Model

_VIT = dict(vit_hidden_size=32, vit_num_heads=2, vit_ffn_hidden_size=64, vit_depth=4, vit_out_indices=[1, 2, 3],
            sta_inplanes=8, backbone_hidden_dim=32, encoder_in_channels=[32, 32, 32], encoder_hidden_dim=32,
            encoder_ffn_dim=64, d_model=32, decoder_ffn_dim=64, num_queries=10, eval_image_size=[64, 64])  # fmt: skip
TINY = {
    "lite_hgnet": lambda: Deimv2Config.from_preset("atto", num_queries=10, eval_image_size=[64, 64]),
    "hybrid_hgnet": lambda: Deimv2Config.from_preset("n", num_queries=10, eval_image_size=[64, 64]),
    "vit_tiny": lambda: Deimv2Config.from_preset("s", **_VIT),
}


def _pixels(batch: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def _model(name: str, **kwargs) -> Deimv2ForObjectDetection:
    torch.manual_seed(0)
    return Deimv2ForObjectDetection._from_config(TINY[name](), **kwargs).eval()


def test_default_attention_is_eager_and_sdpa_is_honoured() -> None:
    assert _model("vit_tiny").config._attn_implementation == "eager"
    model = _model("vit_tiny", attn_implementation="sdpa")
    assert model.config._attn_implementation == "sdpa"
    eager = _model("vit_tiny")
    with torch.no_grad():
        a, b = eager(_pixels()), model(_pixels())
    torch.testing.assert_close(a.logits, b.logits, atol=1e-4, rtol=1e-4)


def test_eager_self_attention_equals_multihead_attention_bit_for_bit() -> None:
    torch.manual_seed(1)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).double().eval()
    ours = Deimv2SelfAttention(16, 4, Deimv2Config()).double()
    for name, w, b in zip("qkv", mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3), strict=True):
        getattr(ours, f"{name}_proj").weight.data.copy_(w)
        getattr(ours, f"{name}_proj").bias.data.copy_(b)
    ours.out_proj.load_state_dict(mha.out_proj.state_dict())
    x, pos = torch.randn(2, 7, 16, dtype=torch.float64), torch.randn(2, 7, 16, dtype=torch.float64)
    mask = torch.rand(7, 7) > 0.3
    mask.fill_diagonal_(True)
    with torch.no_grad():
        for attn_mask in (None, mask):
            q = x + pos
            ref, ref_w = mha(
                q, q, x, attn_mask=None if attn_mask is None else ~attn_mask, average_attn_weights=False
            )
            got, weights = ours(q, x, attn_mask)
            assert torch.equal(got, ref) and torch.equal(weights, ref_w)


@pytest.mark.parametrize("name", ["vit_tiny", "lite_hgnet"])
def test_output_attentions(name: str) -> None:
    model = _model(name, attn_implementation="sdpa")  # attentions force the explicit path
    config = model.config
    with torch.no_grad():
        out = model(_pixels(), output_attentions=True)
        plain = model(_pixels())
    assert plain.decoder_attentions is None and plain.encoder_attentions is None
    heads, queries = config.decoder_attention_heads, config.num_queries
    assert len(out.decoder_attentions) == config.decoder_layers
    assert all(a.shape == (2, heads, queries, queries) for a in out.decoder_attentions)
    torch.testing.assert_close(out.decoder_attentions[0].sum(-1), torch.ones(2, heads, queries))
    if name == "vit_tiny":
        tokens = (64 // 16) ** 2 + 1
        assert len(out.backbone_attentions) == config.vit_depth
        assert out.backbone_attentions[0].shape == (2, config.vit_num_heads, tokens, tokens)
        hw = (64 // 32) ** 2
        assert [a.shape for a in out.encoder_attentions] == [(2, config.encoder_attention_heads, hw, hw)]
    else:
        assert out.backbone_attentions == () and out.encoder_attentions == ()
    torch.testing.assert_close(out.logits, plain.logits, atol=1e-4, rtol=1e-4)


def test_decoder_hidden_states_are_layers_plus_one() -> None:
    model = _model("hybrid_hgnet")
    with torch.no_grad():
        out = model(_pixels(), output_hidden_states=True)
    assert len(out.decoder_hidden_states) == model.config.decoder_layers + 1
    assert torch.equal(out.decoder_hidden_states[0], out.initial_queries)
    assert torch.equal(out.decoder_hidden_states[-1], out.last_hidden_state)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    grads = []
    for checkpointing in (False, True):
        model = _model("vit_tiny").train()
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert model.is_gradient_checkpointing
        out = model(_pixels())
        (out.logits.sum() + out.pred_boxes.sum()).backward()
        grads.append(model.model.decoder.layers[0].ffn.w3.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_every_weight_is_initialised_deterministically() -> None:
    states = []
    for _ in range(2):
        torch.manual_seed(3)
        states.append(Deimv2Model(TINY["lite_hgnet"]()).state_dict())
    lab = [k for k in states[0] if k.endswith("lab.scale")]
    assert lab and all(float(states[0][k]) == 1.0 for k in lab)
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key


def test_meta_built_model_recomputes_non_persistent_buffers(tmp_path) -> None:
    model = _model("vit_tiny")
    model.save_pretrained(tmp_path)
    reloaded = Deimv2ForObjectDetection.from_pretrained(tmp_path).eval()
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, dict(reloaded.named_buffers())[name]), name


def test_config_aliases() -> None:
    config = Deimv2Config.from_preset("atto")
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (64, 8, 3)
    config.hidden_size = 96
    assert config.d_model == 96


def test_image_processor_standard_arguments() -> None:
    processor = Deimv2ImageProcessor(size={"height": 32, "width": 32})
    image = np.random.default_rng(0).integers(0, 256, (3, 40, 48), dtype=np.uint8)
    first = processor(image, input_data_format="channels_first", return_tensors="pt")["pixel_values"]
    last = processor(np.moveaxis(image, 0, -1), input_data_format="channels_last")["pixel_values"]
    assert torch.equal(first, last) and first.shape == (1, 3, 32, 32)
    normalised = processor(image, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)[
        "pixel_values"
    ]
    torch.testing.assert_close(normalised, (first - 0.5) / 0.5)
    nhwc = processor(image, data_format="channels_last", do_convert_rgb=True)["pixel_values"]
    assert torch.equal(nhwc, first.permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match="do_convert_rgb"):
        processor(image, do_convert_rgb=False)
    with pytest.raises(TypeError, match="unexpected"):
        processor(image, foo=1)
