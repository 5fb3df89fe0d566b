"""VidEoMT model: streaming equals whole-clip, both backbones, layouts, round trip, errors, upstream anchor."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForUniversalSegmentation

from golden import FIXTURES
from visionports.core.load_report import load_mapped
from visionports.models.videomt import VideomtConfig, VideomtForUniversalSegmentation
from visionports.models.videomt.convert_videomt import convert_state_dict, infer_config

CASE = FIXTURES / "videomt" / "dinov2_tiny_s0_b1_t3"
TINY = dict(hidden_size=64, num_hidden_layers=5, num_attention_heads=4, intermediate_size=256, segmenter_blocks=[3, 4],
            num_queries=12, id2label={i: str(i) for i in range(5)})  # fmt: skip


def _tiny(backbone: str) -> VideomtForUniversalSegmentation:
    extra = (
        {"position_grid_size": 6}
        if backbone == "dinov2"
        else {"position_grid_size": None, "layer_norm_eps": 1e-5}
    )
    config = VideomtConfig(backbone_type=backbone, **TINY, **extra)
    model = VideomtForUniversalSegmentation(config).eval()
    with torch.no_grad():  # non-trivial layer scales and queries
        for name, p in model.named_parameters():
            if "layer_scale" in name or "query" in name:
                p.normal_(0.5, 0.2)
    return model


def _fixture_model() -> VideomtForUniversalSegmentation:
    sd = torch.load(CASE / "checkpoint.pth", map_location="cpu", weights_only=True)["model"]
    config = infer_config(sd, num_attention_heads=4)
    model = VideomtForUniversalSegmentation(config).eval()
    load_mapped(model, convert_state_dict(sd, config))
    return model


@pytest.mark.parametrize("backbone", ["dinov2", "dinov3"])
def test_streaming_equals_whole_clip(backbone: str) -> None:
    model = _tiny(backbone)
    clip = torch.randn(2, 5, 3, 64, 96)
    with torch.no_grad():
        whole = model(clip)
        state, classes, masks = None, [], []
        for t in range(5):
            out = model(clip[:, t : t + 1], state=state)
            state = out.state
            classes.append(out.class_queries_logits)
            masks.append(out.masks_queries_logits)
        chunked = model(clip[:, 3:], state=model(clip[:, :3]).state)
    assert whole.class_queries_logits.shape == (2, 5, 12, 6) and whole.masks_queries_logits.shape == (
        2,
        5,
        12,
        16,
        24,
    )
    torch.testing.assert_close(torch.cat(classes, 1), whole.class_queries_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat(masks, 1), whole.masks_queries_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        chunked.masks_queries_logits, whole.masks_queries_logits[:, 3:], atol=1e-5, rtol=1e-4
    )
    assert state.frames_seen == 5 and state.queries.shape == (2, 12, 64)


def test_videos_in_a_batch_are_independent() -> None:
    model = _tiny("dinov2")
    clip = torch.randn(2, 3, 3, 32, 64, dtype=torch.float64)
    model = model.double()
    with torch.no_grad():
        both = model(clip)
        second = model(clip[1:])
    torch.testing.assert_close(both.masks_queries_logits[1:], second.masks_queries_logits, atol=1e-10, rtol=0)


def test_first_frame_uses_learned_queries_and_state_is_constant_size() -> None:
    model = _tiny("dinov3")
    with torch.no_grad():
        out = model(torch.randn(1, 2, 3, 32, 32), output_hidden_states=True)
    assert torch.equal(out.queries_in[0, 0], model.query.weight)
    assert torch.equal(out.queries_in[0, 1], out.propagated_queries[0, 0])
    assert len(out.hidden_states) == 5 + 1 and out.hidden_states[0].shape == (1, 2, 1 + 4 + 4, 64)
    assert out.hidden_states[-1].shape == (1, 2, 12 + 1 + 4 + 4, 64)
    assert out.state.queries.shape == (1, 12, 64)  # does not grow with the video


def test_round_trip_and_auto_class(tmp_path: Path) -> None:
    model = _fixture_model()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForUniversalSegmentation.from_pretrained(tmp_path).eval()
    assert type(loaded) is VideomtForUniversalSegmentation
    pixels = load_file(str(CASE / "inputs.safetensors"))["pixel_values"]
    with torch.no_grad():
        assert torch.equal(loaded(pixels).masks_queries_logits, model(pixels).masks_queries_logits)


def test_bad_inputs() -> None:
    model = _tiny("dinov2")
    for pixels, error, message in [
        (torch.randn(1, 2, 4, 32, 32), ValueError, "\\[videos, frames, 3, height, width\\]"),
        (torch.randn(1, 0, 3, 32, 32), ValueError, "no frames"),
        (torch.randn(1, 1, 3, 30, 32), ValueError, "multiples of 16"),
        (torch.zeros(1, 1, 3, 32, 32, dtype=torch.uint8), TypeError, "floating"),
    ]:
        with pytest.raises(error, match=message), torch.no_grad():
            model(pixels)
    with pytest.raises(ValueError, match="state holds 2 videos"), torch.no_grad():
        model(torch.randn(1, 1, 3, 32, 32), state=model.initial_state(2))


_UPSTREAM_NAMES = [
    (r"^embeddings\.patch_embeddings\.", "embeddings.patch_embeddings.projection."),
    (r"^norm\.", "layernorm."),
    (r"^layers\.(\d+)\.attention\.proj\.", r"layers.\1.attention.out_proj."),
    (r"^layers\.(\d+)\.layer_scale([12])\.gamma$", r"layers.\1.layer_scale\2.lambda1"),
    (r"^layers\.(\d+)\.fc([12])\.", r"layers.\1.mlp.fc\2."),
    (r"^class_head\.", "class_predictor."),
    (r"^mask_head\.0\.", "mask_head.fc1."),
    (r"^mask_head\.2\.", "mask_head.fc2."),
    (r"^mask_head\.4\.", "mask_head.fc3."),
    (r"^upscale\.(\d+)\.norm\.", r"upscale_block.block.\1.layernorm2d."),
    (r"^upscale\.(\d+)\.", r"upscale_block.block.\1."),
]


def _to_upstream(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our DINOv2 VidEoMT state dict in upstream transformers' names (test-only bridge)."""
    out = {}
    for key, value in ours.items():
        name = key
        for pattern, replacement in _UPSTREAM_NAMES:
            name = re.sub(pattern, replacement, name)
        if name == "embeddings.position_embeddings":
            out["embeddings.position_embeddings.weight"] = value[0]
        elif re.search(r"attention\.qkv\.(weight|bias)$", name):
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3), strict=True):
                out[name.replace("qkv", part)] = chunk
        else:
            out[name] = value
    return out


def test_upstream_transformers_anchor() -> None:
    """Upstream VideomtForUniversalSegmentation at the same weights: identical at the square training size,
    where it needs no position-table resampling; it cannot take other sizes (no resampling, fixed grid)."""
    from transformers import VideomtConfig as UpstreamConfig
    from transformers import VideomtForUniversalSegmentation as Upstream

    ours = _fixture_model()
    upstream = Upstream(UpstreamConfig(hidden_size=64, num_hidden_layers=5, num_attention_heads=4,
                                       intermediate_size=256, num_register_tokens=4, image_size=96, patch_size=16,
                                       num_queries=12, num_labels=5, num_blocks=2)).eval()  # fmt: skip
    mapped = _to_upstream(ours.state_dict())
    missing, unexpected = upstream.load_state_dict(mapped, strict=False)
    assert not unexpected and set(missing) <= {
        "embeddings.mask_token",
        "criterion.empty_weight",
        "attn_mask_probs",
    }
    square = torch.randn(1, 3, 3, 96, 96)
    with torch.no_grad():
        theirs = upstream(pixel_values_videos=square)
        mine = ours(square)
    their_masks = theirs.masks_queries_logits.reshape(mine.masks_queries_logits.shape)
    their_classes = theirs.class_queries_logits.reshape(mine.class_queries_logits.shape)
    torch.testing.assert_close(mine.masks_queries_logits, their_masks, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mine.class_queries_logits, their_classes, atol=1e-5, rtol=1e-4)
    with pytest.raises(RuntimeError), torch.no_grad():
        upstream(pixel_values_videos=torch.randn(1, 1, 3, 64, 128))
