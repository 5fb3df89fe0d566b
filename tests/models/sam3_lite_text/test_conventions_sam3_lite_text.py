"""transformers conventions of SAM3-LiteText: text encoder, full model and image processor."""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig

from golden import FIXTURES
from reload_checks import model_tensors, poisoned_memory
from visionports.core.conversion import convert_checkpoint
from visionports.core.registry import get_family
from visionports.models.sam3_lite_text import (
    Sam3LiteTextConfig,
    Sam3LiteTextImageProcessor,
    Sam3LiteTextModel,
    Sam3LiteTextTextConfig,
    Sam3LiteTextTextModel,
)
from visionports.models.sam3_lite_text import modeling_text_sam3_lite_text as text_module
from visionports.models.sam3_lite_text.parity_sam3_lite_text import Sam3LiteTextParity

TEXT_CASE = FIXTURES / "sam3_lite_text" / "s0_mct_reduced_ctx16"
_DETECTOR = dict(d_model=32, ffn_dim=64, n_heads=8, num_queries=20, image_size=112, patch_size=14,
                 pretrain_img_size=56, vit_embed_dim=32, vit_depth=4, vit_heads=2, vit_window_size=4,
                 vit_global_att_blocks=[1, 3], vit_mlp_ratio=4.625)  # fmt: skip


def _tiny(layout: str = "base") -> Sam3LiteTextTextModel:
    torch.manual_seed(0)
    config = Sam3LiteTextTextConfig(layout=layout, hidden_size=32, num_attention_heads=4, num_transformer_layers=2,
                                    vocab_size=100, projection_dim=16)  # fmt: skip
    return Sam3LiteTextTextModel(config)


def test_config_aliases_and_embeddings() -> None:
    model = _tiny("mct")
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.num_attention_heads) == (
        4,
        32,
        4,
    )
    ids = torch.randint(1, 100, (2, 16))
    out = model(ids, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert model.get_input_embeddings() is model.token_embedding
    replacement = nn.Embedding(100, 32)
    model.set_input_embeddings(replacement)
    assert model.token_embedding is replacement
    assert not torch.equal(model(ids).last_hidden_state, out.last_hidden_state)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    model = _tiny("base").train()
    ids = torch.randint(1, 100, (2, 16))
    assert model.supports_gradient_checkpointing
    model(ids).last_hidden_state.square().sum().backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert all(layer.gradient_checkpointing for layer in model.layers)
    model(ids).last_hidden_state.square().sum().backward()
    for name, grad in plain.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=0, rtol=0)


def test_image_processor_standard_arguments() -> None:
    image = np.random.default_rng(0).integers(0, 256, (3, 20, 30), dtype=np.uint8)  # channels first
    processor = Sam3LiteTextImageProcessor(size=16)
    first = processor(image, input_data_format="channels_first")
    last = processor(np.moveaxis(image, 0, -1), input_data_format="channels_last", return_tensors="pt")
    assert torch.equal(first["pixel_values"], last["pixel_values"]) and first["pixel_values"].shape == (
        1,
        3,
        16,
        16,
    )
    assert first["original_sizes"].tolist() == [[20, 30]]
    raw = processor(image, input_data_format="channels_first", do_resize=False, do_normalize=False)[
        "pixel_values"
    ]
    torch.testing.assert_close(raw[0], torch.from_numpy(image).float() / 255, atol=0, rtol=0)
    custom = processor(image, input_data_format="channels_first", image_mean=[0, 0, 0], image_std=[1, 1, 1])
    torch.testing.assert_close(custom["pixel_values"] * 2 - 1, first["pixel_values"], atol=1e-6, rtol=0)
    channels_last = processor(image, input_data_format="channels_first", data_format="channels_last")
    assert channels_last["pixel_values"].shape == (1, 16, 16, 3)
    assert (
        processor(image, input_data_format="channels_first", do_convert_rgb=True)["pixel_values"].shape[1]
        == 3
    )
    with pytest.raises(ValueError, match="do_convert_rgb=False"):
        processor(image, do_convert_rgb=False)
    with pytest.raises(ValueError, match="return_tensors"):
        processor(image, return_tensors="np")
    with pytest.raises(TypeError, match="unexpected arguments"):
        processor(image, colour=True)


def _tiny_full(**kwargs) -> Sam3LiteTextModel:
    torch.manual_seed(0)
    text = dict(layout="mct", hidden_size=32, num_attention_heads=4, num_transformer_layers=2, vocab_size=100,
                projection_dim=32)  # fmt: skip
    config = Sam3LiteTextConfig(text_config=text, detector=dict(_DETECTOR))
    return Sam3LiteTextModel._from_config(config, **kwargs).eval()


@pytest.mark.parametrize(
    "build", [lambda: _tiny("mct"), lambda: _tiny("base"), _tiny_full], ids=["mct", "base", "full"]
)
def test_init_weights_covers_every_tensor(build) -> None:
    """Same seed, same weights; a meta-device build initialised by ``init_weights`` alone (fresh memory poisoned)
    holds no NaN and recomputes every buffer as ``__init__`` does."""
    model = build()
    fresh = model_tensors(model)
    assert _equal(model_tensors(build()), fresh)
    with torch.device("meta"):
        meta = type(model)(model.config)
    with poisoned_memory():
        meta.to_empty(device="cpu")
        meta.init_weights()
    tensors = model_tensors(meta)
    assert not [name for name, value in tensors.items() if value.is_floating_point() and value.isnan().any()]
    buffers = [name for name, _ in model.named_buffers(remove_duplicate=False)]
    assert _equal(
        {n: tensors[n] for n in buffers}, {n: fresh[n] for n in buffers}
    )  # BatchNorm statistics, ViT positions


def _equal(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> bool:
    return got.keys() == expected.keys() and all(torch.equal(got[n], v) for n, v in expected.items())


def test_init_weights_scheme() -> None:
    model = _tiny("mct")
    hidden = model.config.hidden_size
    for table in (model.position_embedding, model.text_projection):
        assert abs(table.std().item() - hidden**-0.5) < 0.25 * hidden**-0.5
    assert abs(model.projector.weight.std().item() - 0.02) < 0.005 and not model.projector.bias.any()
    repmixer = model.layers[0]
    assert torch.all(repmixer.mixer_scale == 1e-5) and torch.all(repmixer.ffn_scale == 1e-5)
    assert torch.equal(repmixer.mixer_conv.bn.running_var, torch.ones(32))


@pytest.mark.parametrize("layout", ["mct", "base"])
def test_text_hidden_states_and_attentions(layout: str) -> None:
    model = _tiny(layout).eval()
    ids = torch.randint(1, 100, (2, 16))
    out = model(ids, output_attentions=True, output_hidden_states=True)
    blocks = model.config.num_hidden_layers
    assert len(out.hidden_states) == blocks + 1 and torch.equal(out.hidden_states[0], model.token_embedding(ids) +
                                                                 model.position_embedding)  # fmt: skip
    assert len(out.attentions) == model.config.num_transformer_layers  # RepMixer blocks add none
    assert all(a.shape == (2, 4, 16, 16) for a in out.attentions)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, 4, 16), atol=1e-6, rtol=0)
    plain = model(ids)
    assert plain.attentions is None and plain.hidden_states is None
    assert torch.equal(plain.last_hidden_state, out.last_hidden_state)
    model.config.output_attentions = model.config.output_hidden_states = True
    model.config.return_dict = False
    as_tuple = model(ids)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 6 and len(as_tuple[-1]) == len(out.attentions)
    assert torch.equal(as_tuple[0], out.last_hidden_state)


def test_eager_is_the_default_and_really_runs_eager() -> None:
    model = _tiny("base").eval()
    assert model.config._attn_implementation == "eager"
    ids = torch.randint(1, 100, (2, 16))
    spy = mock.Mock(wraps=text_module.eager_attention_forward)
    with (
        mock.patch.object(text_module, "eager_attention_forward", spy),
        mock.patch.object(F, "scaled_dot_product_attention", side_effect=AssertionError("sdpa ran")),
    ):
        eager = model(ids).last_hidden_state
    assert spy.call_count == model.config.num_transformer_layers
    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == "sdpa"
    with mock.patch.object(text_module, "eager_attention_forward", side_effect=AssertionError("eager ran")):
        sdpa = model(ids).last_hidden_state
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=0)
    # attention weights come from the eager path under any backend
    assert len(model(ids, output_attentions=True).attentions) == model.config.num_transformer_layers


def test_unsupported_attention_is_refused() -> None:
    model = _tiny("base")
    with pytest.raises((ValueError, ImportError), match="(?i)flash|flex"):
        model.set_attn_implementation("flash_attention_2")
    with pytest.raises(ValueError, match="not supported"):
        Sam3LiteTextTextModel._from_config(model.config, attn_implementation="no_such_attention")


def test_sdpa_matches_the_golden_text_case() -> None:
    """sdpa stays within the text case's 1e-5 tolerance (measured: 4.3e-06 at the last block)."""
    case = json.loads((TEXT_CASE / "case.json").read_text())
    adapter = Sam3LiteTextParity()
    result = convert_checkpoint(get_family("sam3_lite_text"), TEXT_CASE / "checkpoint.pt", progress=False,
                                **adapter.conversion_options(case))  # fmt: skip
    model = result.model.eval()
    model.set_attn_implementation("sdpa")
    expected = load_file(TEXT_CASE / "outputs.safetensors")
    with torch.no_grad():
        got = adapter.run(model, load_file(TEXT_CASE / "inputs.safetensors"), case)
    compared = [name for name in got if name in expected and got[name].is_floating_point()]
    assert len(compared) > 10
    for name in compared:
        torch.testing.assert_close(got[name], expected[name].to(got[name].dtype), atol=1e-5, rtol=0)


def test_full_model_outputs_follow_the_flags() -> None:
    model = _tiny_full(attn_implementation="eager")
    assert model.text_model.config._attn_implementation == "eager"
    assert model.detector.vision_encoder.config._attn_implementation == "eager"
    ids, pixels = torch.randint(1, 100, (2, 16)), torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        out = model(pixel_values=pixels, input_ids=ids, output_attentions=True, output_hidden_states=True)
        plain = model(pixel_values=pixels, input_ids=ids)
    assert len(out.text_hidden_states) == 5 and len(out.text_attentions) == 2
    assert len(out.vision_attentions) == 4 and len(out.vision_hidden_states) == 5
    assert out.encoder_attentions and out.decoder_attentions and out.encoder_hidden_states
    assert all(
        getattr(plain, name) is None
        for name in ("text_attentions", "vision_hidden_states", "encoder_attentions")
    )
    assert torch.equal(out.pred_logits, plain.pred_logits)
    model.config.return_dict = False
    model.config.output_hidden_states = True
    with torch.no_grad():
        as_tuple = model(pixel_values=pixels, input_ids=ids)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], plain.pred_logits)
    assert any(isinstance(item, tuple) and len(item) == 5 for item in as_tuple)  # text hidden states


def test_full_model_default_backends() -> None:
    """Unless asked for, the text encoder runs eager (the original's softmax) and the SAM3 parts sdpa."""
    model = _tiny_full()
    assert model.text_model.config._attn_implementation == "eager"
    assert model.detector.detr_decoder.config._attn_implementation == "sdpa"
    model.set_attn_implementation("eager")
    assert model.detector.detr_decoder.config._attn_implementation == "eager"
    assert model.detector.geometry_encoder.layers[0].self_attn.config._attn_implementation == "eager"
    model.set_attn_implementation("sdpa")  # every part, the plain-module geometry encoder included
    assert model.text_model.config._attn_implementation == "sdpa"
    assert model.detector.geometry_encoder.layers[0].self_attn.config._attn_implementation == "sdpa"
    assert model.detector.dot_product_scoring.config._attn_implementation == "sdpa"


# A config.json saved before text_config was a registered sub-config: a plain dict without model_type.
_OLD_CONFIG = {
    "transformers_version": "5.23.0", "model_type": "visionports_sam3_lite_text", "variant": "s1",
    "architectures": ["Sam3LiteTextModel"], "threshold": 0.4, "mask_threshold": 0.5, "initializer_range": 0.02,
    "text_config": {"variant": "s1", "layout": "base", "vocab_size": 100, "hidden_size": 32,
                    "num_transformer_layers": 2, "num_attention_heads": 4, "ffn_multiplier": 4.0,
                    "context_length": 16, "repmixer_kernel_size": 11, "layer_norm_eps": 1e-05,
                    "batch_norm_eps": 1e-05, "causal_masking": False, "projection_dim": 32,
                    "reparameterized": False, "layer_scale_init_value": 1e-05, "initializer_range": 0.02},
    "detector": _DETECTOR,
}  # fmt: skip


def test_text_config_is_a_sub_config_and_old_folders_load(tmp_path) -> None:
    """``text_config`` is a registered ``Sam3LiteTextTextConfig`` (``config.text`` the same object); a folder whose
    config.json stores it as a plain dict (saved before) loads into the same configuration and model."""
    assert Sam3LiteTextConfig.sub_configs == {"text_config": Sam3LiteTextTextConfig}
    config = Sam3LiteTextConfig.from_preset("s0")
    assert isinstance(config.text_config, Sam3LiteTextTextConfig) and config.text is config.text_config
    assert (config.text.variant, config.text.layout, config.text.hidden_size) == ("s0", "mct", 512)
    assert Sam3LiteTextConfig().text.to_dict() == Sam3LiteTextTextConfig().to_dict()
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(_OLD_CONFIG))
    loaded = AutoConfig.from_pretrained(old)
    assert isinstance(loaded, Sam3LiteTextConfig) and isinstance(loaded.text_config, Sam3LiteTextTextConfig)
    expected = Sam3LiteTextTextConfig(**_OLD_CONFIG["text_config"])
    assert loaded.text.to_dict() == expected.to_dict()
    assert (loaded.threshold, loaded.detector) == (0.4, _DETECTOR)
    torch.manual_seed(0)
    model = Sam3LiteTextModel(loaded).eval()
    model.save_pretrained(tmp_path / "new")
    saved = json.loads((tmp_path / "new" / "config.json").read_text())["text_config"]
    assert saved["model_type"] == Sam3LiteTextTextConfig.model_type
    (tmp_path / "new" / "config.json").write_text(
        json.dumps(_OLD_CONFIG)
    )  # the old layout next to new weights
    reloaded = Sam3LiteTextModel.from_pretrained(tmp_path / "new").eval()
    assert _equal(model_tensors(reloaded), model_tensors(model))
    without_dtype = [  # dtype: recorded by from_pretrained
        {k: v for k, v in m.text_model.config.to_dict().items() if k != "dtype"} for m in (reloaded, model)
    ]
    assert without_dtype[0] == without_dtype[1]


def test_full_model_feature_methods() -> None:
    """``get_text_features`` / ``get_image_features``: flags and ``return_dict`` default to the config, the ViT
    features are ``[B, grid², vit_embed_dim]``, and the token embeddings are the text encoder's."""
    model = _tiny_full()
    pixels, ids = torch.randn(2, 3, 112, 112), torch.randint(1, 100, (2, 16))
    with torch.no_grad():
        vision = model.get_image_features(pixels)
        text = model.get_text_features(ids)
        assert vision.last_hidden_state.shape == (2, 8 * 8, _DETECTOR["vit_embed_dim"])
        assert vision.hidden_states is None and text.hidden_states is None
        model.config.output_hidden_states = True
        assert len(model.get_image_features(pixels).hidden_states) == _DETECTOR["vit_depth"] + 1
        assert len(model.get_text_features(ids).hidden_states) == model.config.text.num_hidden_layers + 1
        model.config.return_dict = False
        assert isinstance(model.get_image_features(pixels), tuple)
        assert torch.equal(model.get_text_features(ids)[0], text.last_hidden_state)
        with pytest.raises(ValueError, match="pixel_values must have shape"):
            model.get_image_features(torch.randn(1, 3, 56, 56))
    assert model.get_input_embeddings() is model.text_model.token_embedding
