"""Packed AIMv2: per image equal to the standard Aimv2VisionModel on that image alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Aimv2Config, Aimv2Model, Aimv2VisionConfig, Aimv2VisionModel

from visionports.models.packed.aimv2_packed import Aimv2PackedVisionModel
from visionports.models.packed.packing import cu_seqlens_from_grid_thw, pack_images, unpack

TOL = 1e-5


def _config(native: bool, head: bool = True) -> Aimv2VisionConfig:
    return Aimv2VisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                             patch_size=4, image_size=16, is_native=native, use_head=head)  # fmt: skip


def _pair(
    tmp_path: Path, native: bool, head: bool = True, **load
) -> tuple[Aimv2VisionModel, Aimv2PackedVisionModel]:
    torch.manual_seed(0)
    reference = Aimv2VisionModel(_config(native, head)).eval()
    reference.save_pretrained(tmp_path)
    ours, info = Aimv2PackedVisionModel.from_pretrained(tmp_path, output_loading_info=True, **load)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    return reference, ours.eval()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.isfinite(a).all()) and bool(((a - b).abs() <= TOL).all())


@pytest.mark.parametrize(("native", "sizes"), [
    (True, [(16, 16), (8, 24), (4, 4), (4, 12), (20, 8), (12, 4)]),
    (False, [(16, 16), (16, 16), (16, 16)]),
])  # fmt: skip
def test_packed_equals_per_image_reference(tmp_path: Path, native: bool, sizes: list) -> None:
    reference, ours = _pair(tmp_path, native)
    images = [torch.randn(3, h, w) for h, w in sizes]
    hidden, grid = pack_images(images, 4)
    with torch.no_grad():
        out = ours(hidden, grid, output_hidden_states=True)
        alone = ours(*pack_images(images[1:2], 4))
        int32 = ours(hidden, grid.to(torch.int32))
        for i, (image, rows) in enumerate(zip(images, unpack(out.last_hidden_state, grid), strict=True)):
            ref = reference(image[None], output_hidden_states=True)
            assert _close(rows, ref.last_hidden_state[0]), i
            assert _close(out.pooler_output[i], ref.pooler_output[0]), i
            for ours_state, ref_state in zip(out.hidden_states, ref.hidden_states, strict=True):
                assert _close(unpack(ours_state, grid)[i], ref_state[0])
    assert out.last_hidden_state.shape == (sum(h * w for h, w in sizes) // 16, 64)
    assert torch.equal(unpack(out.last_hidden_state, grid)[1], alone.last_hidden_state)
    assert torch.equal(int32.last_hidden_state, out.last_hidden_state)


def test_no_head_and_eager_backend(tmp_path: Path) -> None:
    reference, ours = _pair(tmp_path, native=True, head=False, attn_implementation="eager")
    images = [torch.randn(3, 8, 12), torch.randn(3, 4, 4)]
    with torch.no_grad():
        out = ours(*pack_images(images, 4))
        assert out.pooler_output is None
        for image, rows in zip(images, unpack(out.last_hidden_state, pack_images(images, 4)[1]), strict=True):
            assert _close(rows, reference(image[None]).last_hidden_state[0])


def test_layout_and_helpers() -> None:
    image = torch.arange(3 * 8 * 12, dtype=torch.float32).reshape(3, 8, 12)
    rows, grid = pack_images([image], 4)
    assert grid.tolist() == [[1, 2, 3]] and rows.shape == (6, 48)
    y, x, py, px, c = 1, 2, 3, 1, 2  # element [py*p*C + px*C + c] of row y*w + x = image[c, y*p+py, x*p+px]
    assert rows[y * 3 + x, py * 4 * 3 + px * 3 + c] == image[c, y * 4 + py, x * 4 + px]
    cu, longest = cu_seqlens_from_grid_thw(torch.tensor([[1, 2, 3], [1, 1, 1]]), num_prefix_tokens=5)
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 11, 17] and longest == 11
    parts = unpack(torch.arange(17.0)[:, None], torch.tensor([[1, 2, 3], [1, 1, 1]]), num_prefix_tokens=5)
    assert [p.shape[0] for p in parts] == [11, 6] and parts[1].data_ptr() == parts[0].data_ptr() + 11 * 4


def test_bad_inputs(tmp_path: Path) -> None:
    _, ours = _pair(tmp_path, native=False)
    rows, grid = pack_images([torch.randn(3, 16, 16)], 4)
    cases = [
        (rows, torch.tensor([[2, 4, 4]]), "t=2"),
        (rows[:-1], grid, "grid_thw adds up to 16"),
        (rows[:, :-1], grid, "patch_size"),
        (rows, torch.tensor([[1, 2, 8]]), "fixed-size AIMv2 takes only"),
    ]
    for hidden, thw, message in cases:
        with pytest.raises(ValueError, match=message):
            ours(hidden, thw)
    with pytest.raises(ValueError, match="multiples of 4"):
        pack_images([torch.randn(3, 10, 16)], 4)
    with pytest.raises(ValueError, match="empty list"):
        pack_images([], 4)


def test_flash_is_refused_on_cpu(tmp_path: Path) -> None:
    torch.manual_seed(0)
    Aimv2VisionModel(_config(True)).save_pretrained(tmp_path)
    with pytest.raises((ImportError, RuntimeError, ValueError)):
        model = Aimv2PackedVisionModel.from_pretrained(tmp_path, attn_implementation="flash_attention_2")
        model(*pack_images([torch.randn(3, 8, 8)], 4))


def test_two_tower_folder_loads_the_vision_tower(tmp_path: Path) -> None:
    torch.manual_seed(0)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=100,
                eos_token_id=1)  # fmt: skip
    full = Aimv2Model(Aimv2Config(vision_config=_config(True).to_dict(), text_config=text)).eval()
    full.save_pretrained(tmp_path)
    ours = Aimv2PackedVisionModel.from_pretrained(tmp_path).eval()
    image = torch.randn(3, 8, 12)
    with torch.no_grad():
        assert _close(
            ours(*pack_images([image], 4)).last_hidden_state,
            full.vision_model(image[None]).last_hidden_state[0],
        )


def test_folder_without_the_encoder_is_refused(tmp_path: Path) -> None:
    torch.nn.Linear(2, 2).requires_grad_(False)
    from safetensors.torch import save_file

    _config(True).save_pretrained(tmp_path)
    save_file({"unrelated.weight": torch.ones(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="refusing to return randomly initialised weights"):
        Aimv2PackedVisionModel.from_pretrained(tmp_path)
