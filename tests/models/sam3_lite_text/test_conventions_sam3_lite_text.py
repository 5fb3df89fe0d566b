"""transformers conventions of the SAM3-LiteText text encoder and image processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from visionports.models.sam3_lite_text import (
    Sam3LiteTextImageProcessor,
    Sam3LiteTextTextConfig,
    Sam3LiteTextTextModel,
)


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
