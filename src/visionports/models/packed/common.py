"""What the three packed encoders share: the forward, attention switch, output flags and the layer loop.

Attention backends (transformers' ``attn_implementation``):

- ``"eager"``: per-image matmul-softmax; the only backend that forms attention weights.
- ``"sdpa"``: per-image ``F.scaled_dot_product_attention`` (exact, everywhere).
- ``"flash_attention_2"``: flash-attn varlen over the whole pack; raises where it cannot run.
- nothing requested: flash varlen when it can run on the inputs (CUDA, fp16/bf16, flash-attn installed),
  otherwise per-image SDPA.

``output_attentions``: one ``[num_heads, N, N]`` tensor per layer (N = rows of the pack) holding the attention
probabilities of the packed sequence, block-diagonal: entries between two different images are exactly 0. Only
the eager backend forms them; SDPA and flash give ``None`` per layer, as transformers' own SDPA path does.
``output_hidden_states``: the embeddings, then every layer's output (``num_hidden_layers + 1`` tensors
``[N, hidden_size]``, before the final norm), as the standard models give them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .loading import RefuseMissingWeightsMixin
from .packing import Segments, packed_attention, resolve_backend, validate_packed


class PackedEncoderMixin(RefuseMissingWeightsMixin):
    """Mixed in before a family's ``*PreTrainedModel``: packed inputs, transformers' switches honoured, no
    loading with missing weights. Families provide ``embed_packed``, ``finish_packed`` and ``layers_path``."""

    main_input_name = "hidden_states"
    layers_path: str = "encoder.layers"  # where the model keeps its packed layers (``get_submodule`` path)
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = False
    _supports_attention_backend = False
    _can_compile_fullgraph = False
    _can_record_outputs = None
    num_prefix_tokens = 0

    def get_correct_attn_implementation(
        self, requested_attention: str | None, is_init_check: bool = False
    ) -> str:
        # transformers turns "nothing requested" into "sdpa"; remember it so that the default can pick flash.
        self._automatic_attention = requested_attention is None
        return super().get_correct_attn_implementation(requested_attention, is_init_check)

    def set_attn_implementation(self, attn_implementation: str | dict, *args: Any, **kwargs: Any) -> None:
        super().set_attn_implementation(attn_implementation, *args, **kwargs)
        if isinstance(attn_implementation, str):
            self._automatic_attention = False

    def attention_backend(self, like: torch.Tensor) -> str:
        """``"eager"``, ``"sdpa"`` or ``"flash"`` for activations like ``like`` (see the module docstring)."""
        requested = self.config._attn_implementation
        if requested == "sdpa" and getattr(self, "_automatic_attention", False):
            requested = None
        return resolve_backend(requested, like)

    def output_flags(
        self, output_attentions: bool | None, output_hidden_states: bool | None, return_dict: bool | None
    ) -> tuple[bool, bool, bool]:
        """Call arguments, else the config's ``output_attentions`` / ``output_hidden_states`` / ``return_dict``."""
        config = self.config
        attentions = config.output_attentions if output_attentions is None else output_attentions
        hidden = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        as_dict = getattr(config, "return_dict", True) if return_dict is None else return_dict
        return bool(attentions), bool(hidden), bool(as_dict)

    def forward(
        self,
        hidden_states: torch.Tensor,
        grid_thw: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPooling | tuple:
        """Patch rows ``hidden_states [N, p*p*C]`` of the images ``grid_thw [n, 3]`` -> packed outputs."""
        validate_packed(hidden_states, grid_thw, self.packed_patch_size(), self.config.num_channels)
        want_attentions, want_hidden, as_dict = self.output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        x, segments, extra = self.embed_packed(hidden_states, grid_thw)
        layers = self.get_submodule(self.layers_path)
        x, hidden, attentions = run_layers(layers, x, segments, self.attention_backend(x), want_attentions,
                                           want_hidden, *extra)  # fmt: skip
        last, pooled = self.finish_packed(x, segments)
        output = BaseModelOutputWithPooling(
            last_hidden_state=last, pooler_output=pooled, hidden_states=hidden, attentions=attentions
        )
        return output if as_dict else output.to_tuple()

    def packed_patch_size(self) -> int:
        """The config's ``patch_size`` (a ``(p, p)`` pair gives ``p``; non-square patches are refused)."""
        p = self.config.patch_size
        if isinstance(p, (tuple, list)):
            if p[0] != p[1]:
                raise ValueError(f"{type(self).__name__} needs square patches, got patch_size={p}")
            p = p[0]
        return int(p)

    def embed_packed(
        self, hidden_states: torch.Tensor, grid_thw: torch.Tensor
    ) -> tuple[torch.Tensor, Segments, tuple[torch.Tensor, ...]]:
        """Validated inputs -> token rows, their per-image segments and any extra per-row layer inputs."""
        raise NotImplementedError

    def finish_packed(self, x: torch.Tensor, segments: Segments) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The last layer's rows -> ``(last_hidden_state, pooler_output)``."""
        raise NotImplementedError


def run_layers(
    layers: Sequence[nn.Module],
    x: torch.Tensor,
    segments: Segments,
    backend: str,
    want_attentions: bool,
    want_hidden: bool,
    *extra: torch.Tensor,
) -> tuple[torch.Tensor, tuple | None, tuple | None]:
    """All layers once over the pack: ``(x, hidden_states, attentions)``, the tuples ``None`` unless asked."""
    hidden = [x] if want_hidden else None
    attentions = [] if want_attentions else None
    for layer in layers:
        x, weights = layer(x, segments, backend, want_attentions, *extra)
        if hidden is not None:
            hidden.append(x)
        if attentions is not None:
            attentions.append(weights)
    return (
        x,
        (tuple(hidden) if hidden is not None else None),
        (tuple(attentions) if attentions is not None else None),
    )


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[T, heads * d] -> [T, heads, d]``."""
    return x.view(x.shape[0], heads, -1)


def attention_dropout(module: nn.Module) -> float:
    """The attention-probability dropout of ``module`` in training, 0 in eval."""
    return float(getattr(module, "dropout", 0.0)) if module.training else 0.0


def project_qkv(attention: nn.Module, normed: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``attention.q_proj/k_proj/v_proj`` of ``normed`` rows, each ``[T, num_heads, head_dim]``."""
    return tuple(split_heads(proj(normed), attention.num_heads)
                 for proj in (attention.q_proj, attention.k_proj, attention.v_proj))  # fmt: skip


class PrenormPackedLayer:
    """Mixed in before an upstream pre-norm encoder layer: its block over packed rows ``[N, D]``, attention
    bounded per image, with the layer's own modules (same parameters).

    ``part_names`` name the layer's ``(norm1, attention, norm2, mlp)``; the attention module provides
    ``q_proj`` / ``k_proj`` / ``v_proj`` / ``out_proj``, ``num_heads`` and ``scale``.
    """

    part_names: tuple[str, str, str, str]

    def forward(
        self, hidden_states: torch.Tensor, segments: Segments, backend: str, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The new rows and, with ``need_weights``, the block-diagonal attention weights."""
        norm1, attention, norm2, mlp = (getattr(self, name) for name in self.part_names)
        q, k, v = project_qkv(attention, norm1(hidden_states))
        dropout = attention_dropout(attention)
        mixed, weights = packed_attention(q, k, v, segments, attention.scale, backend, dropout, need_weights)
        hidden_states = hidden_states + attention.out_proj(mixed.flatten(1))
        return hidden_states + mlp(norm2(hidden_states)), weights


def pool_per_image(head: nn.Module, rows: torch.Tensor, segments: Segments) -> torch.Tensor:
    """``head`` on each image's rows alone, images of one length batched together: ``[n, D]`` in input order.

    The heads attend from a learned query over one image's rows with no mask, so a batch of same-length images
    gives each image its own result.
    """
    pieces = rows.split(segments.lengths)
    by_length: dict[int, list[int]] = {}
    for i, length in enumerate(segments.lengths):
        by_length.setdefault(length, []).append(i)
    pooled: list[torch.Tensor | None] = [None] * len(pieces)
    for indices in by_length.values():
        batch = head(torch.stack([pieces[i] for i in indices]))
        for j, i in enumerate(indices):
            pooled[i] = batch[j]
    return torch.stack(pooled)


def per_size(sizes: list[tuple[int, int]], build: Callable[[int, int], torch.Tensor]) -> list[torch.Tensor]:
    """``build(h, w)`` once per distinct size, returned for every entry of ``sizes`` in order."""
    cache: dict[tuple[int, int], torch.Tensor] = {}
    for size in sizes:
        if size not in cache:
            cache[size] = build(*size)
    return [cache[size] for size in sizes]


def layer_container(name: str, layers: list[nn.Module]) -> nn.Module:
    """A module holding ``layers`` as an ``nn.ModuleList`` attribute ``name``, so the parameter names read as
    upstream's (``encoder.layers.N.*``, ``model.layer.N.*``)."""
    container = nn.Module()
    container.add_module(name, nn.ModuleList(layers))
    return container
