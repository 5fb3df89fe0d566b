"""Packing images of different sizes into one token sequence, and attention bounded per image.

Rows are patches, image after image, row-major inside an image (index ``y * w + x``); inside a row the values
are ordered ``(py, px, c)``, channel fastest. ``grid_thw`` holds ``(1, h, w)`` per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F


def pack_images(images: Sequence[torch.Tensor], patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[C, H, W]`` float images -> ``hidden_states [sum h*w, p*p*C]`` and ``grid_thw [n, 3]`` (int64)."""
    if len(images) == 0:
        raise ValueError("images: expected at least one [C, H, W] tensor, got an empty list")
    rows, grids = [], []
    for i, image in enumerate(images):
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            raise ValueError(
                f"images[{i}]: expected a [C, H, W] tensor, got {getattr(image, 'shape', type(image))}"
            )
        channels, height, width = image.shape
        if height % patch_size or width % patch_size or height == 0 or width == 0:
            raise ValueError(
                f"images[{i}]: height and width must be positive multiples of {patch_size}, got {height}x{width}"
            )
        h, w = height // patch_size, width // patch_size
        patches = image.reshape(channels, h, patch_size, w, patch_size).permute(1, 3, 2, 4, 0)
        rows.append(patches.reshape(h * w, patch_size * patch_size * channels))
        grids.append((1, h, w))
    return torch.cat(rows), torch.tensor(grids, dtype=torch.int64)


def segment_lengths(grid_thw: torch.Tensor, num_prefix_tokens: int = 0) -> list[int]:
    """Tokens per image: ``num_prefix_tokens + t * h * w``."""
    return [num_prefix_tokens + int(t) * int(h) * int(w) for t, h, w in grid_thw.tolist()]


def cu_seqlens_from_grid_thw(grid_thw: torch.Tensor, num_prefix_tokens: int = 0) -> tuple[torch.Tensor, int]:
    """int32 ``[0, L_0, L_0 + L_1, ...]`` on ``grid_thw``'s device and ``max(L_i)`` as a Python int."""
    lengths = segment_lengths(grid_thw, num_prefix_tokens)
    cu = torch.tensor([0, *lengths], dtype=torch.int64, device=grid_thw.device).cumsum(0).to(torch.int32)
    return cu, max(lengths) if lengths else 0


def unpack(output: torch.Tensor, grid_thw: torch.Tensor, num_prefix_tokens: int = 0) -> list[torch.Tensor]:
    """Split a packed output into one view per image (input order)."""
    return list(output.split(segment_lengths(grid_thw, num_prefix_tokens), dim=0))


def validate_packed(
    hidden_states: torch.Tensor, grid_thw: torch.Tensor, patch_size: int, channels: int
) -> None:
    """Clear ``ValueError``s for packed inputs a model cannot take."""
    if not isinstance(hidden_states, torch.Tensor) or hidden_states.ndim != 2:
        raise ValueError(
            f"hidden_states must be [total_patches, patch_dim], got {getattr(hidden_states, 'shape', None)}"
        )
    if not hidden_states.is_floating_point():
        raise ValueError(f"hidden_states must be a floating tensor, got {hidden_states.dtype}")
    if (
        not isinstance(grid_thw, torch.Tensor)
        or grid_thw.ndim != 2
        or grid_thw.shape[1] != 3
        or grid_thw.shape[0] == 0
    ):
        raise ValueError(
            f"grid_thw must be [num_images, 3] with at least one image, got {getattr(grid_thw, 'shape', None)}"
        )
    if grid_thw.is_floating_point():
        raise ValueError(f"grid_thw must be an integer tensor, got {grid_thw.dtype}")
    expected_dim = patch_size * patch_size * channels
    if hidden_states.shape[1] != expected_dim:
        raise ValueError(
            f"hidden_states rows must have patch_size² * channels = {expected_dim} values, got {hidden_states.shape[1]}"
        )
    for i, (t, h, w) in enumerate(grid_thw.tolist()):
        if t != 1:
            raise ValueError(f"grid_thw[{i}] has t={t}: only images (t = 1) are supported")
        if h <= 0 or w <= 0:
            raise ValueError(f"grid_thw[{i}] must have positive h and w, got {(t, h, w)}")
    total = sum(int(t) * int(h) * int(w) for t, h, w in grid_thw.tolist())
    if hidden_states.shape[0] != total:
        raise ValueError(
            f"hidden_states has {hidden_states.shape[0]} rows but grid_thw adds up to {total} patches"
        )


def _flash_available(q: torch.Tensor) -> str | None:
    """Why flash varlen cannot run on ``q`` (None when it can)."""
    if q.device.type != "cuda":
        return f"flash attention needs CUDA tensors, got {q.device.type}"
    if q.dtype not in (torch.float16, torch.bfloat16):
        return f"flash attention needs float16 or bfloat16, got {q.dtype}"
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return "flash attention needs the flash-attn package"
    return None


def resolve_backend(requested: str | None, q: torch.Tensor) -> str:
    """The attention backend to use: a forced one must be able to run; by default flash when possible, else sdpa."""
    if requested in ("flash_attention_2", "flash_attention_3"):
        reason = _flash_available(q)
        if reason:
            raise RuntimeError(f"attn_implementation={requested!r} cannot run here: {reason}")
        return "flash"
    if requested in (None, "auto"):
        return "flash" if _flash_available(q) is None else "sdpa"
    if requested in ("sdpa", "eager"):
        return requested
    raise ValueError(
        f"unknown attn_implementation {requested!r} for a packed encoder; use eager, sdpa or flash_attention_2"
    )


class Segments(NamedTuple):
    """Where each image's tokens lie in a packed sequence: computed once per forward, shared by every layer."""

    cu_seqlens: torch.Tensor  # int32 [num_images + 1], on the activations' device
    max_seqlen: int
    lengths: list[int]


def segments_from_grid_thw(
    grid_thw: torch.Tensor, num_prefix_tokens: int = 0, device: torch.device | None = None
) -> Segments:
    """``Segments`` for ``grid_thw``, with ``cu_seqlens`` on ``device`` (default: ``grid_thw``'s)."""
    cu_seqlens, max_seqlen = cu_seqlens_from_grid_thw(grid_thw, num_prefix_tokens)
    return Segments(
        cu_seqlens.to(device or grid_thw.device), max_seqlen, segment_lengths(grid_thw, num_prefix_tokens)
    )


def _block_diagonal(blocks: list[torch.Tensor]) -> torch.Tensor:
    """``[heads, L_i, L_i]`` blocks -> ``[heads, T, T]`` with zeros between different images."""
    total = sum(block.shape[-1] for block in blocks)
    out = blocks[0].new_zeros(blocks[0].shape[0], total, total)
    start = 0
    for block in blocks:
        end = start + block.shape[-1]
        out[:, start:end, start:end] = block
        start = end
    return out


def packed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segments: Segments,
    scale: float,
    backend: str,
    dropout: float = 0.0,
    need_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention of ``[T, heads, d]`` q/k/v restricted to each segment: ``([T, heads, d], weights)``.

    ``weights`` is only formed by the eager backend when ``need_weights``: the ``[heads, T, T]`` attention
    probabilities of the packed sequence, block-diagonal (exactly 0 between different images). ``dropout`` is
    the attention-probability dropout (pass 0.0 in eval).
    """
    if backend == "flash":
        from flash_attn import flash_attn_varlen_func

        cu, longest = segments.cu_seqlens, segments.max_seqlen
        out = flash_attn_varlen_func(q, k, v, cu, cu, longest, longest, dropout_p=dropout, softmax_scale=scale,
                                     causal=False)  # fmt: skip
        return out, None
    chunks = [t.split(segments.lengths) for t in (q, k, v)]
    per_image = [
        tuple(t.transpose(0, 1)[None] for t in qkv) for qkv in zip(*chunks, strict=True)
    ]  # [1, H, L, d]
    if backend == "sdpa":
        outs = [
            F.scaled_dot_product_attention(qs, ks, vs, dropout_p=dropout, scale=scale)
            for qs, ks, vs in per_image
        ]
        return torch.cat([out[0].transpose(0, 1) for out in outs]), None
    blocks = []
    for qs, ks, _ in per_image:
        weights = torch.softmax((qs @ ks.transpose(-1, -2)) * scale, dim=-1, dtype=torch.float32).to(qs.dtype)
        blocks.append(F.dropout(weights[0], p=dropout, training=dropout > 0))
    full = None
    if need_weights:  # the returned matrix is the one the outputs are computed from (gradients reach it)
        full = _block_diagonal(blocks)
        bounds = segments.cu_seqlens.tolist()
        blocks = [full[:, a:b, a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    outs = [(block @ vs[0]).transpose(0, 1) for block, (_, _, vs) in zip(blocks, per_image, strict=True)]
    return torch.cat(outs), full
