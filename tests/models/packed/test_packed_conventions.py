"""transformers conventions on the three packed encoders: construction from a config, initialisation,
save/load round trips (poisoned fresh memory), attention backends, output flags, gradient checkpointing."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
import transformers
from torch import nn
from transformers import (
    Aimv2VisionConfig,
    Aimv2VisionModel,
    DINOv3ViTConfig,
    DINOv3ViTModel,
    Siglip2VisionConfig,
    Siglip2VisionModel,
)

import visionports.models.packed.packing
from reload_checks import poisoned_memory
from visionports import Aimv2PackedVisionModel, Dinov3PackedVisionModel, Siglip2PackedVisionModel, unpack
from visionports.models.packed.packing import pack_images

transformers.utils.logging.disable_progress_bar()

PATCH = 4
GRIDS = [(2, 3), (1, 1), (3, 2), (1, 4)]
SMALL = dict(
    hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, patch_size=PATCH
)
FAMILIES = {
    "aimv2": (
        Aimv2PackedVisionModel,
        Aimv2VisionModel,
        lambda: Aimv2VisionConfig(image_size=16, is_native=True, **SMALL),
    ),
    "siglip2": (
        Siglip2PackedVisionModel,
        Siglip2VisionModel,
        lambda: Siglip2VisionConfig(num_patches=9, **SMALL),
    ),
    "dinov3": (
        Dinov3PackedVisionModel,
        DINOv3ViTModel,
        lambda: DINOv3ViTConfig(num_register_tokens=2, layerscale_value=0.5, **SMALL),
    ),
}
NAMES = list(FAMILIES)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return pack_images([torch.randn(3, h * PATCH, w * PATCH, generator=generator) for h, w in GRIDS], PATCH)


def _build(name: str, seed: int = 0, **config_overrides) -> nn.Module:
    packed_cls, _, make_config = FAMILIES[name]
    config = make_config()
    for key, value in config_overrides.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    return packed_cls(config)


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, persistent or not."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


# ----------------------------------------------------------------------------------------- construction, init


@pytest.mark.parametrize("name", NAMES)
def test_constructs_from_config_and_from_config(name: str) -> None:
    packed_cls, _, make_config = FAMILIES[name]
    direct = packed_cls(make_config())
    via = packed_cls._from_config(make_config())
    assert type(direct.config) is type(make_config()) and type(via) is packed_cls
    hidden, grid = _inputs()
    out = direct.eval()(hidden, grid)
    expected_rows = sum(direct.num_prefix_tokens + h * w for h, w in GRIDS)
    assert out.last_hidden_state.shape == (expected_rows, 32)
    assert torch.isfinite(out.last_hidden_state).all()


@pytest.mark.parametrize("name", NAMES)
def test_init_is_deterministic_under_a_seed(name: str) -> None:
    first, second, other = (
        _tensors(_build(name, seed=3)),
        _tensors(_build(name, seed=3)),
        _tensors(_build(name, 4)),
    )
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert any(not torch.equal(first[key], other[key]) for key in first if first[key].is_floating_point())


@pytest.mark.parametrize("name", NAMES)
def test_init_weights_is_the_standard_scheme(name: str) -> None:
    """Module by module, our ``_init_weights`` draws exactly what the standard model's draws, and covers everything."""
    packed_cls, standard_cls, make_config = FAMILIES[name]
    ours, standard = packed_cls(make_config()), standard_cls(make_config())
    reference = dict(standard.named_modules())
    checked = 0
    for index, (module_name, module) in enumerate(ours.named_modules()):
        if not module_name:
            continue
        counterpart = reference.get(module_name) or reference[f"vision_model.{module_name}"]
        with torch.no_grad():
            for parameter in [*module.parameters(), *counterpart.parameters()]:
                parameter.fill_(float("nan"))  # anything _init_weights leaves alone stays NaN and fails below
        torch.manual_seed(index)
        ours._init_weights(module)
        torch.manual_seed(index)
        standard._init_weights(counterpart)
        theirs = dict(counterpart.named_parameters(recurse=False))
        for key, value in module.named_parameters(recurse=False):
            assert torch.equal(value, theirs[key]), f"{module_name}.{key}"
            checked += 1
    assert checked == len(list(ours.parameters()))


# ----------------------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trips_bit_identically_with_poisoned_memory(tmp_path: Path, name: str) -> None:
    model = _build(name, seed=5).eval()
    hidden, grid = _inputs()
    with torch.no_grad():
        expected = model(hidden, grid, output_hidden_states=True)
    saved = {key: value.clone() for key, value in _tensors(model).items()}
    model.save_pretrained(tmp_path)
    with poisoned_memory():
        assert torch.isnan(torch.empty(4)).all()  # the poisoning is active
        for _ in range(3):
            loaded = type(model).from_pretrained(tmp_path).eval()  # default: meta-device initialisation
            tensors = _tensors(loaded)
            assert set(tensors) == set(saved)
            for key, value in saved.items():
                assert torch.equal(tensors[key], value), key
            with torch.no_grad():
                out = loaded(hidden, grid, output_hidden_states=True)
            assert torch.equal(out.last_hidden_state, expected.last_hidden_state)
            assert torch.equal(out.pooler_output, expected.pooler_output)
            assert all(
                torch.equal(a, b) for a, b in zip(out.hidden_states, expected.hidden_states, strict=True)
            )


@pytest.mark.parametrize("name", NAMES)
def test_init_from_an_empty_state_dict_is_complete_and_deterministic(name: str) -> None:
    """``from_pretrained(None, config=..., state_dict={})`` (every weight initialised on the meta path) leaves no
    uninitialised memory, repeats under a seed, and recomputes the buffers as ``__init__`` does."""
    packed_cls, _, make_config = FAMILIES[name]
    buffers = dict(packed_cls(make_config()).named_buffers())
    runs = []
    with poisoned_memory():
        for _ in range(2):
            torch.manual_seed(7)
            runs.append(_tensors(packed_cls.from_pretrained(None, config=make_config(), state_dict={})))
    first, second = runs
    for key, value in first.items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key
        assert torch.equal(value, second[key]), key
    for key, value in buffers.items():
        assert torch.equal(first[key], value), key


# ----------------------------------------------------------------------------------------- attention switch


@pytest.mark.parametrize("name", NAMES)
def test_attn_implementation_is_honoured(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _build(name).save_pretrained(tmp_path)
    packed_cls = FAMILIES[name][0]
    hidden, grid = _inputs()
    default = packed_cls.from_pretrained(tmp_path).eval()
    sdpa = packed_cls.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    eager = packed_cls.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert (default.config._attn_implementation, eager.config._attn_implementation) == ("sdpa", "eager")
    assert default.attention_backend(hidden) == sdpa.attention_backend(hidden) == "sdpa"  # CPU: no flash
    assert eager.attention_backend(hidden) == "eager"
    with torch.no_grad():
        reference = sdpa(hidden, grid).last_hidden_state

        def refuse(*args, **kwargs):
            raise AssertionError("SDPA called by the eager backend")

        functional = types.SimpleNamespace(
            dropout=torch.nn.functional.dropout, scaled_dot_product_attention=refuse
        )
        monkeypatch.setattr(visionports.models.packed.packing, "F", functional)
        assert (eager(hidden, grid).last_hidden_state - reference).abs().max() <= 1e-5
        with pytest.raises(AssertionError, match="SDPA called"):
            sdpa(hidden, grid)
    eager.set_attn_implementation("sdpa")
    assert eager.config._attn_implementation == "sdpa" and not eager._automatic_attention


@pytest.mark.parametrize("name", NAMES)
def test_flex_attention_is_refused_at_load(tmp_path: Path, name: str) -> None:
    _build(name).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="flex_attention"):
        FAMILIES[name][0].from_pretrained(tmp_path, attn_implementation="flex_attention")


# ----------------------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("name", NAMES)
def test_output_attentions_are_per_image_block_diagonal(name: str) -> None:
    """Eager: one [heads, N, N] per layer, zero across images, each image's block = the standard model's."""
    packed_cls, standard_cls, make_config = FAMILIES[name]
    standard = standard_cls._from_config(make_config(), attn_implementation="eager").eval()
    ours = packed_cls._from_config(make_config(), attn_implementation="eager").eval()
    ours.load_state_dict(standard.state_dict())
    hidden, grid = _inputs()
    with torch.no_grad():
        out = ours(hidden, grid, output_attentions=True)
    rows = out.last_hidden_state.shape[0]
    assert len(out.attentions) == 2 and all(a.shape == (4, rows, rows) for a in out.attentions)
    bounds = [0, *torch.tensor([ours.num_prefix_tokens + h * w for h, w in GRIDS]).cumsum(0).tolist()]
    for layer, weights in enumerate(out.attentions):
        assert torch.allclose(weights.sum(-1), torch.ones(4, rows), atol=1e-5)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            assert weights[:, a:b, :a].abs().sum() == 0 and weights[:, a:b, b:].abs().sum() == 0
            image_rows = unpack(hidden, grid)[i]
            h, w = GRIDS[i]
            with torch.no_grad():
                if name == "siglip2":
                    ref = standard(pixel_values=image_rows[None], pixel_attention_mask=torch.ones(1, h * w, dtype=torch.long),
                                   spatial_shapes=torch.tensor([[h, w]]), output_attentions=True)  # fmt: skip
                else:
                    image = (
                        image_rows.reshape(h, w, PATCH, PATCH, 3)
                        .permute(4, 0, 2, 1, 3)
                        .reshape(3, h * PATCH, -1)
                    )
                    ref = standard(pixel_values=image[None], output_attentions=True)
            assert (weights[:, a:b, a:b] - ref.attentions[layer][0]).abs().max() <= 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_sdpa_gives_no_attention_weights_and_flags_follow_the_config(name: str) -> None:
    model = _build(name).eval()
    hidden, grid = _inputs()
    with torch.no_grad():
        out = model(hidden, grid, output_attentions=True)
        assert out.attentions == (None, None)
        model.config.output_hidden_states = True
        model.config.return_dict = False
        as_tuple = model(hidden, grid)
    assert isinstance(as_tuple, tuple) and len(as_tuple[-1]) == model.config.num_hidden_layers + 1
    assert torch.equal(as_tuple[0], out.last_hidden_state)
    assert model.get_input_embeddings() is next(
        m for n, m in model.named_modules() if n.startswith("embeddings.patch_embed")
    )


# ----------------------------------------------------------------------------------------- training


def _grads(model: nn.Module, hidden: torch.Tensor, grid: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    out = model(hidden, grid)
    (out.last_hidden_state.square().mean() + out.pooler_output.mean()).backward()
    return {key: p.grad.clone() for key, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_checkpointing_recomputes_layers_with_equal_gradients(name: str, reentrant: bool) -> None:
    model = _build(name).train()
    hidden, grid = _inputs()
    calls: list[str] = []
    layers = [
        m for m in model.modules() if isinstance(m, transformers.modeling_layers.GradientCheckpointingLayer)
    ]
    assert len(layers) == model.config.num_hidden_layers
    for layer in layers:  # the first norm runs inside the layer's forward, so also when it is recomputed
        first_norm = next(
            getattr(layer, n) for n in ("rms_norm1", "layer_norm1", "norm1") if hasattr(layer, n)
        )
        first_norm.register_forward_pre_hook(lambda module, args: calls.append("forward"))
    torch.manual_seed(0)
    plain = _grads(model, hidden, grid)
    plain_calls = len(calls)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": reentrant})
    assert all(layer.gradient_checkpointing for layer in layers)
    calls.clear()
    torch.manual_seed(0)
    checkpointed = _grads(model, hidden, grid)
    assert plain_calls == len(layers) and len(calls) == 2 * len(layers)  # each layer ran again in backward
    assert plain.keys() == checkpointed.keys() and len(plain) == len(list(model.parameters())) - (
        1 if name == "dinov3" else 0  # the pre-training mask token gets no gradient
    )
    for key, grad in plain.items():
        assert torch.allclose(grad, checkpointed[key], atol=1e-6, rtol=1e-5), key


def test_dinov3_drop_path_drops_whole_images() -> None:
    model = _build("dinov3", drop_path_rate=0.9).train()
    model.config.pos_embed_shift = None
    hidden, grid = _inputs()
    model.eval()
    with torch.no_grad():
        kept = model(hidden, grid, output_hidden_states=True).hidden_states
    model.train()
    torch.manual_seed(1)
    with torch.no_grad():
        dropped = model(hidden, grid, output_hidden_states=True).hidden_states
    prefix, images_without_update = model.num_prefix_tokens, 0
    for layer in range(1, len(dropped)):
        for image in unpack(dropped[layer] - dropped[layer - 1], grid, prefix):
            zero = (image.abs().amax(-1) == 0).tolist()
            assert all(zero) or not any(zero)  # both branches dropped for every row of an image, or for none
            images_without_update += all(zero)
    assert images_without_update > 0  # rate 0.9: some image loses both branches of a layer
    assert not all(torch.equal(a, b) for a, b in zip(kept, dropped, strict=True))
