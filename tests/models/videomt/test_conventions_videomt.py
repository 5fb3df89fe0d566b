"""transformers conventions of VidEoMT: attention implementations, attentions, hidden states (L+1), output
flags from the config, gradient checkpointing, initialisation, config names, input embeddings."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionports.models.videomt import PRESETS, VideomtConfig, VideomtForUniversalSegmentation
from visionports.models.videomt.modeling_videomt import eager_attention

TINY = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=96, segmenter_blocks=[2, 3],
            num_queries=6, num_register_tokens=2, id2label={i: str(i) for i in range(4)})  # fmt: skip
BACKBONES = {
    "dinov2": {"position_grid_size": 4},
    "dinov3": {"position_grid_size": None, "layer_norm_eps": 1e-5},
}
PATCHES = (32 // 16) * (48 // 16)
TOKENS = 1 + 2 + PATCHES  # class token, registers, patches


def _config(backbone: str, **overrides) -> VideomtConfig:
    return VideomtConfig(backbone_type=backbone, **TINY, **BACKBONES[backbone], **overrides)


def _model(backbone: str, seed: int = 0, **kwargs) -> VideomtForUniversalSegmentation:
    torch.manual_seed(seed)
    return VideomtForUniversalSegmentation._from_config(_config(backbone), **kwargs).eval()


def _clip(batch: int = 2, frames: int = 2) -> torch.Tensor:
    return torch.randn(batch, frames, 3, 32, 48, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------------- attention implementations


def test_eager_attention_is_softmax_qk_v() -> None:
    q, k, v = torch.randn(3, 2, 5, 4, 7, 16, dtype=torch.float64).unbind(0)  # leading dims [2, 5]
    out, weights = eager_attention(q, k, v)
    reference = F.scaled_dot_product_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1))
    torch.testing.assert_close(out, reference.unflatten(0, (2, 5)), atol=1e-12, rtol=0)
    torch.testing.assert_close(weights, torch.softmax(q @ k.transpose(-1, -2) / 4, -1), atol=0, rtol=0)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_attention_implementation_is_honoured(backbone: str) -> None:
    sdpa, eager = _model(backbone), _model(backbone, attn_implementation="eager")
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    real = F.scaled_dot_product_attention
    with mock.patch.object(F, "scaled_dot_product_attention", side_effect=real) as spy, torch.no_grad():
        a = sdpa(_clip())
        calls = spy.call_count
        b = eager(_clip())
    assert calls == 2 + 2 * 2  # one call per block before the queries, one per segmenter block and frame
    assert spy.call_count == calls  # eager never reaches SDPA
    torch.testing.assert_close(a.masks_queries_logits, b.masks_queries_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.class_queries_logits, b.class_queries_logits, atol=1e-5, rtol=1e-4)
    sdpa.set_attn_implementation("eager")
    with torch.no_grad():
        assert torch.equal(sdpa(_clip()).masks_queries_logits, b.masks_queries_logits)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_output_attentions_are_the_weights_the_blocks_use(backbone: str) -> None:
    model = _model(backbone)  # sdpa: asking for attentions switches to the eager path
    with torch.no_grad():
        out = model(_clip(), output_attentions=True, output_hidden_states=True)
        eager = _model(backbone, attn_implementation="eager")(_clip())
    assert model(_clip()).attentions is None
    shapes = [a.shape for a in out.attentions]
    assert shapes == [(2, 2, 4, TOKENS, TOKENS)] * 2 + [(2, 2, 4, 6 + TOKENS, 6 + TOKENS)] * 2
    assert all(torch.allclose(a.sum(-1), torch.ones(())) for a in out.attentions)
    assert torch.equal(out.masks_queries_logits, eager.masks_queries_logits)
    # the first block's weights, recomputed from its input
    layer, x = model.layers[0], model.layers[0].norm1(out.hidden_states[0])
    attention = layer.attention
    if backbone == "dinov2":
        q, k, _ = attention.qkv(x).unflatten(-1, (3, 4, 16)).transpose(-2, -4).unbind(-3)
    else:
        q, k = (
            proj(x).unflatten(-1, (4, 16)).transpose(-2, -3) for proj in (attention.q_proj, attention.k_proj)
        )
        cos, sin = model.rope(_clip().flatten(0, 1))
        rotate = torch.cat([-q[..., 8:], q[..., :8]], -1), torch.cat([-k[..., 8:], k[..., :8]], -1)
        q = torch.cat([q[..., :3, :], q[..., 3:, :] * cos + rotate[0][..., 3:, :] * sin], -2)
        k = torch.cat([k[..., :3, :], k[..., 3:, :] * cos + rotate[1][..., 3:, :] * sin], -2)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 4, -1)
    torch.testing.assert_close(out.attentions[0], expected, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------------------- hidden states, flags


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_hidden_states_are_embeddings_then_every_block(backbone: str) -> None:
    model = _model(backbone)
    clip = _clip()
    with torch.no_grad():
        out = model(clip, output_hidden_states=True)
        embedded = model.embeddings(clip.flatten(0, 1))[0].unflatten(0, (2, 2))
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert torch.equal(out.hidden_states[0], embedded)
    assert [h.shape for h in out.hidden_states] == [(2, 2, TOKENS, 64)] * 3 + [(2, 2, 6 + TOKENS, 64)] * 2
    assert torch.equal(model.norm(out.hidden_states[-1]), out.last_hidden_state)
    assert model(clip).hidden_states is None


def test_output_flags_and_return_dict_from_the_config() -> None:
    config = _config("dinov2", output_hidden_states=True, output_attentions=True, return_dict=False)
    torch.manual_seed(0)
    model = VideomtForUniversalSegmentation(config).eval()
    with torch.no_grad():
        as_tuple = model(_clip())
        as_dict = model(_clip(), return_dict=True)
        overridden = model(_clip(), return_dict=True, output_attentions=False, output_hidden_states=False)
    assert isinstance(as_tuple, tuple)
    assert len(as_dict.attentions) == 4 and len(as_dict.hidden_states) == 5
    assert overridden.attentions is None and overridden.hidden_states is None
    assert torch.equal(as_tuple[0], as_dict.class_queries_logits)
    assert any(isinstance(item, tuple) and len(item) == 4 for item in as_tuple)  # the four blocks' attentions


# ------------------------------------------------------------------------------------------- training mechanics


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients(backbone: str, reentrant: bool) -> None:
    grads = []
    for checkpointing in (False, True):
        model = _model(backbone).train()
        if checkpointing:
            model.gradient_checkpointing_enable({"use_reentrant": reentrant})
            assert model.is_gradient_checkpointing and all(
                layer.gradient_checkpointing for layer in model.layers
            )
        out = model(_clip())
        (out.masks_queries_logits.square().mean() + out.class_queries_logits.sum()).backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "layers.0.norm1.weight" in grads[0]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5, msg=name)


# ---------------------------------------------------------------------------------------------- initialisation


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_init_weights_covers_every_parameter(backbone: str) -> None:
    model = _model(backbone)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.fill_(float("nan"))
    for module in model.modules():
        model._init_weights(module)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        assert torch.isfinite(tensor).all(), name
    scales = [p for name, p in model.named_parameters() if ".layer_scale" in name]
    assert len(scales) == 2 * 4 and all(torch.equal(s, torch.ones(64)) for s in scales)
    for token in (model.embeddings.cls_token, model.embeddings.register_tokens, model.query.weight):
        assert 0.01 < token.std() < 0.03  # initializer_range 0.02
    assert torch.equal(model.layers[0].norm1.bias, torch.zeros(64))
    if backbone == "dinov3":
        torch.testing.assert_close(
            model.rope.inv_freq, torch.tensor([1, 0.1**0.5, 0.1, 0.1**1.5]), atol=0, rtol=1e-6
        )
    else:
        assert model.embeddings.position_embeddings.std() > 0


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_init_is_deterministic_under_a_seed(backbone: str) -> None:
    first, second, other = _model(backbone, 3), _model(backbone, 3), _model(backbone, 4)
    first, second, other = (dict(m.state_dict()) for m in (first, second, other))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["embeddings.cls_token"], other["embeddings.cls_token"])


def test_layerscale_value_sets_the_initial_scales() -> None:
    torch.manual_seed(0)
    model = VideomtForUniversalSegmentation(_config("dinov3", layerscale_value=1e-5))
    assert torch.equal(model.layers[1].layer_scale2.lambda1, torch.full((64,), 1e-5))


# ------------------------------------------------------------------------------------------ names and embeddings


def test_config_names_and_input_embeddings() -> None:
    config = VideomtConfig.from_preset("dinov2_l_ytvis2019")
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (1024, 16, 24)
    assert {PRESETS[name]["num_hidden_layers"] for name in PRESETS} == {12, 24}
    model = _model("dinov2")
    embedding = model.get_input_embeddings()
    assert embedding is model.embeddings.patch_embeddings and isinstance(embedding, nn.Conv2d)
    assert model.get_output_embeddings() is None
