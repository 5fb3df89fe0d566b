"""VidEoMT: online video segmentation inside a plain ViT (DINOv2 or DINOv3 backbone).

Frames pass through the first ViT blocks alone; learned queries join at the first segmenter block; after
the last block the queries are updated and carried to the next frame, so tracks are query slots. The
state between calls is only the carried queries, so a video can be streamed frame by frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DINOv3ViTConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.dinov3_vit.modeling_dinov3_vit import (
    DINOv3ViTRopePositionEmbedding,
    apply_rotary_pos_emb,
)
from transformers.utils import ModelOutput

from ...core.inputs import check_pixel_dtype
from ...core.pretrained import ReloadIdenticalMixin, as_returned, output_flags
from .configuration_videomt import VideomtConfig
from .loss_videomt import VideomtCriterion, check_labels

Rope = tuple[torch.Tensor, torch.Tensor]  # DINOv3 RoPE (cos, sin) of the patch tokens


def resample_position_table(table: torch.Tensor, grid: int, height: int, width: int) -> torch.Tensor:
    """Resize a square [1, grid², C] position table to [1, height·width, C] (bicubic, antialiased, float32).

    Left unchanged when the new grid is square with as many cells (as timm does).
    """
    if height == width and height * width == table.shape[1]:
        return table
    dim = table.shape[-1]
    resized = F.interpolate(
        table.float().reshape(1, grid, grid, dim).permute(0, 3, 1, 2),
        size=(height, width),
        mode="bicubic",
        antialias=True,
        align_corners=False,
    )
    return resized.permute(0, 2, 3, 1).reshape(1, height * width, dim).to(table.dtype)


class VideomtDinov2Embeddings(nn.Module):
    """Patch embedding + resampled position table (patches only), then [cls, registers, patches]."""

    def __init__(self, config: VideomtConfig):
        super().__init__()
        dim, grid = config.hidden_size, config.position_grid_size
        self.grid = grid
        self.patch_embeddings = nn.Conv2d(3, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, dim))
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid, dim))

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        patches = self.patch_embeddings(pixel_values).permute(0, 2, 3, 1)
        batch, height, width, dim = patches.shape
        positions = resample_position_table(self.position_embeddings, self.grid, height, width)
        patches = patches.reshape(batch, -1, dim) + positions
        prefix = [self.cls_token.expand(batch, -1, -1), self.register_tokens.expand(batch, -1, -1)]
        return torch.cat([*prefix, patches], dim=1), (height, width)


class VideomtDinov3Embeddings(nn.Module):
    """Patch embedding without a position table (DINOv3 uses RoPE), then [cls, registers, patches]."""

    def __init__(self, config: VideomtConfig):
        super().__init__()
        dim = config.hidden_size
        self.patch_embeddings = nn.Conv2d(3, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, dim))

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        patches = self.patch_embeddings(pixel_values)
        batch, _, height, width = patches.shape
        prefix = [self.cls_token.expand(batch, -1, -1), self.register_tokens.expand(batch, -1, -1)]
        return torch.cat([*prefix, patches.flatten(2).transpose(1, 2)], dim=1), (height, width)


def eager_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(QK^T / sqrt(d)) V`` over ``[..., heads, tokens, head_dim]``; returns ``(output, weights)``."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * query.shape[-1] ** -0.5
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights, value), weights


def attend(
    module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, implementation: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention with ``implementation`` over ``[..., heads, tokens, head_dim]`` (any leading dims).

    ``"eager"`` is :func:`eager_attention` (weights returned); any other name dispatches through
    transformers' attention interface (``"sdpa"``: ``F.scaled_dot_product_attention``), without weights.
    """
    if implementation == "eager":
        return eager_attention(query, key, value)
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, None)
    lead = query.shape[:-3]
    flat = [t.reshape(-1, *t.shape[-3:]) for t in (query, key, value)]
    out, _ = interface(module, *flat, None, dropout=0.0, scaling=query.shape[-1] ** -0.5, is_causal=False)
    return out.transpose(1, 2).reshape(*lead, *query.shape[-3:]), None


class VideomtDinov2Attention(nn.Module):
    """timm's fused-qkv self-attention."""

    def __init__(self, config: VideomtConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self, x: torch.Tensor, position_embeddings: Rope | None = None, implementation: str = "sdpa"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        dim = x.shape[-1]
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, dim // self.num_heads))
        q, k, v = (t.transpose(-2, -3) for t in qkv.unbind(-3))
        out, weights = attend(self, q, k, v, implementation)
        return self.proj(out.transpose(-2, -3).flatten(-2)), weights


class VideomtDinov3Attention(nn.Module):
    """DINOv3 self-attention: separate projections (no key bias), RoPE on the patch tokens."""

    def __init__(self, config: VideomtConfig):
        super().__init__()
        dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim)
        self.o_proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, position_embeddings: Rope | None = None, implementation: str = "sdpa"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (self.num_heads, -1)).transpose(-2, -3)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        q, k = apply_rotary_pos_emb(q, k, *position_embeddings)
        out, weights = attend(self, q, k, v, implementation)
        return self.o_proj(out.transpose(-2, -3).flatten(-2)), weights


class VideomtLayerScale(nn.Module):
    """Per-channel scale; the parameter is ``gamma`` (timm) or ``lambda1`` (DINOv3)."""

    def __init__(self, dim: int, name: str = "gamma"):
        super().__init__()
        self.name = name
        self.register_parameter(name, nn.Parameter(torch.ones(dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * getattr(self, self.name)


class VideomtMlp(nn.Module):
    """DINOv3's two-layer GELU MLP (``up_proj`` / ``down_proj``)."""

    def __init__(self, config: VideomtConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.up_proj(x)))


class VideomtLayer(GradientCheckpointingLayer):
    """Pre-norm ViT block with LayerScale: timm's DINOv2 block or DINOv3's, by ``config.backbone_type``.

    Returns the new tokens and, on the eager path, the attention weights ``[..., heads, N, N]``.
    """

    def __init__(self, config: VideomtConfig):
        super().__init__()
        dim, dinov2 = config.hidden_size, config.backbone_type == "dinov2"
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = VideomtDinov2Attention(config) if dinov2 else VideomtDinov3Attention(config)
        self.layer_scale1 = VideomtLayerScale(dim, "gamma" if dinov2 else "lambda1")
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        if dinov2:
            self.fc1 = nn.Linear(dim, config.intermediate_size)
            self.fc2 = nn.Linear(config.intermediate_size, dim)
        else:
            self.mlp = VideomtMlp(config)
        self.layer_scale2 = VideomtLayerScale(dim, "gamma" if dinov2 else "lambda1")

    def forward(
        self, x: torch.Tensor, position_embeddings: Rope | None = None, implementation: str = "sdpa"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        mixed, weights = self.attention(self.norm1(x), position_embeddings, implementation)
        x = x + self.layer_scale1(mixed)
        hidden = self.norm2(x)
        hidden = self.mlp(hidden) if hasattr(self, "mlp") else self.fc2(F.gelu(self.fc1(hidden)))
        return x + self.layer_scale2(hidden), weights


def rope_config(config: VideomtConfig) -> DINOv3ViTConfig:
    """transformers' DINOv3 configuration for the RoPE tables of a ``dinov3`` VidEoMT."""
    return DINOv3ViTConfig(
        hidden_size=config.hidden_size,
        num_attention_heads=config.num_attention_heads,
        patch_size=config.patch_size,
        rope_theta=config.rope_theta,
    )


class VideomtLayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a [B, C, H, W] map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class VideomtScaleBlock(nn.Module):
    """2x upsampling: transposed conv, GELU, depthwise 3x3 conv, LayerNorm2d."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=False)
        self.norm = VideomtLayerNorm2d(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv2(F.gelu(self.conv1(x))))


@dataclass
class VideomtState:
    """What one call hands to the next: the queries that enter the next frame, [B, Q, C]."""

    queries: torch.Tensor
    frames_seen: int = 0


@torch.compiler.disable
def _advance(state: VideomtState, queries: torch.Tensor, frames: int) -> VideomtState:
    """The next call's state. Outside ``torch.compile``'s graph: a traced ``frames_seen`` would be a guarded
    constant, and a stream would recompile on every call."""
    return VideomtState(queries=queries, frames_seen=state.frames_seen + frames)


@dataclass
class VideomtSegmentationOutput(ModelOutput):
    """Outputs of :class:`VideomtForUniversalSegmentation`, in video layout.

    Args:
        class_queries_logits: per-frame class logits ``[B, T, Q, num_labels + 1]`` (last = no object).
        masks_queries_logits: per-frame mask logits at stride 4, ``[B, T, Q, H/4, W/4]``.
        state: carried queries for the next call (pass it back to continue the same videos).
        last_hidden_state: final-normed token sequence ``[B, T, Q + prefix + patches, C]``.
        propagated_queries: queries produced after each frame (the next frame's input), ``[B, T, Q, C]``.
        queries_in: queries that entered the first segmenter block of each frame, ``[B, T, Q, C]``.
        hidden_states: the embedding output, then every block's output, ``[B, T, N, C]`` each
            (``num_hidden_layers + 1`` entries, with ``output_hidden_states``; segmenter blocks include the
            queries first).
        attentions: every block's attention weights ``[B, T, heads, N, N]`` (with ``output_attentions``).
        auxiliary_logits: deep-supervision predictions before each segmenter block, as
            ``(class_logits, mask_logits)`` pairs in the layout above (with ``output_auxiliary_logits``).
        loss: with ``labels``, the sum of the weighted loss terms.
        loss_dict: with ``labels``, each weighted term by name (``loss_ce``, ``loss_mask``, ``loss_dice``, and
            ``loss_ce_0`` ... for the deep-supervision predictions).
    """

    class_queries_logits: torch.Tensor | None = None
    masks_queries_logits: torch.Tensor | None = None
    state: VideomtState | None = None
    last_hidden_state: torch.Tensor | None = None
    propagated_queries: torch.Tensor | None = None
    queries_in: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    auxiliary_logits: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None
    loss: torch.Tensor | None = None
    loss_dict: dict[str, torch.Tensor] | None = None


class VideomtPreTrainedModel(ReloadIdenticalMixin, PreTrainedModel):
    config_class = VideomtConfig
    config: VideomtConfig
    base_model_prefix = "videomt"
    main_input_name = "pixel_values"
    input_modalities = ("video",)
    _no_split_modules = ["VideomtLayer"]
    supports_gradient_checkpointing = True
    accepts_loss_kwargs = False  # the loss is normalised by the (track, frame) count, not by the trainer
    _supports_sdpa = True  # attention runs F.scaled_dot_product_attention unless weights are asked for
    is_deployed = False  # set by deploy()

    def _init_weights(self, module: nn.Module) -> None:
        """transformers' defaults, truncated-normal projections and tokens, LayerScale at
        ``layerscale_value``; RoPE frequencies recomputed (they are not saved)."""
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (VideomtDinov2Embeddings, VideomtDinov3Embeddings)):
            init.trunc_normal_(module.cls_token, mean=0.0, std=std)
            init.trunc_normal_(module.register_tokens, mean=0.0, std=std)
            if isinstance(module, VideomtDinov2Embeddings):
                init.trunc_normal_(module.position_embeddings, mean=0.0, std=std)
        elif isinstance(module, VideomtLayerScale):
            init.constant_(getattr(module, module.name), self.config.layerscale_value)
        elif isinstance(module, DINOv3ViTRopePositionEmbedding):
            init.copy_(module.inv_freq, rope_frequencies(module.head_dim, module.base))


def rope_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """DINOv3's RoPE inverse frequencies ``theta^-(4i / head_dim)``, ``head_dim / 4`` of them (float32)."""
    return 1 / theta ** torch.arange(0, 1, 4 / head_dim, dtype=torch.float32)


class VideomtForUniversalSegmentation(VideomtPreTrainedModel):
    """VidEoMT with class and mask heads; call it on clips ``[B, T, 3, H, W]`` or stream with ``state``."""

    def __init__(self, config: VideomtConfig):
        super().__init__(config)
        dim = config.hidden_size
        if config.backbone_type == "dinov2":
            self.embeddings = VideomtDinov2Embeddings(config)
            self.rope = None
        else:
            self.embeddings = VideomtDinov3Embeddings(config)
            self.rope = DINOv3ViTRopePositionEmbedding(rope_config(config))
        self.layers = nn.ModuleList(VideomtLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.query = nn.Embedding(config.num_queries, dim)
        self.query_updater = nn.Linear(dim, dim)
        self.class_head = nn.Linear(dim, config.num_labels + 1)
        self.mask_head = nn.Sequential(
            nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)
        )
        self.upscale = nn.Sequential(*(VideomtScaleBlock(dim) for _ in range(config.num_upscale_blocks)))
        self.num_prefix = 1 + config.num_register_tokens
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def deploy(self) -> VideomtForUniversalSegmentation:
        """Inference mode, in place; returns ``self`` (idempotent): SDPA attention, each LayerScale folded
        into the linear layer before it (``deploy_videomt``). Outputs equal the eval-mode model's up to
        float32 rounding; needs eval mode, and the deployed model refuses to run in training mode."""
        from .deploy_videomt import deploy_model

        return deploy_model(self)

    def initial_state(self, batch_size: int) -> VideomtState:
        """State of videos that have not started: the learned queries."""
        return VideomtState(queries=self.query.weight[None].expand(batch_size, -1, -1))

    def _predict(self, tokens: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        num_queries = self.config.num_queries
        queries = tokens[:, :num_queries]
        patches = tokens[:, num_queries + self.num_prefix :].transpose(1, 2)
        patches = patches.reshape(tokens.shape[0], -1, *grid)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_head(queries), self.upscale(patches))
        return self.class_head(queries), masks

    def forward(
        self,
        pixel_values: torch.Tensor,
        state: VideomtState | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        output_auxiliary_logits: bool = False,
        labels: list[dict[str, torch.Tensor]] | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VideomtSegmentationOutput | tuple:
        """Segment the frames of ``B`` videos.

        Args:
            pixel_values: ``[B, T, 3, H, W]`` normalised frames (H, W multiples of the patch size); a
                ``[B, 3, H, W]`` tensor is one frame per video.
            state: the ``state`` of the previous call on the same videos; ``None`` starts new videos.
            output_attentions: also return every block's attention weights (computed on the eager path).
            labels: one dict per video (clip) — ``class_labels`` ``[N]``, ``mask_labels`` ``[N, T, H, W]`` (the
                input size; empty where the track is absent), optionally ``present`` ``[N, T]`` — adds ``loss``
                and ``loss_dict``, the original training loss (``loss_videomt``).
        """
        config = self.config
        output_attentions, output_hidden_states = output_flags(
            config, output_attentions, output_hidden_states
        )
        implementation = "eager" if output_attentions else config._attn_implementation
        if isinstance(pixel_values, torch.Tensor) and pixel_values.ndim == 4:
            pixel_values = pixel_values[:, None]
        _validate_frames(pixel_values, self, config.patch_size)
        if labels is not None:
            check_labels(labels, pixel_values, config.num_labels)
            output_auxiliary_logits = True
        batch, frames = pixel_values.shape[:2]
        if state is None:
            state = self.initial_state(batch)
        elif state.queries.shape[0] != batch:
            raise ValueError(f"state holds {state.queries.shape[0]} videos but pixel_values has {batch}")
        flat = pixel_values.flatten(0, 1)
        tokens, grid = self.embeddings(flat)
        tokens = tokens.unflatten(0, (batch, frames))
        rope = self.rope(flat) if self.rope is not None else None  # the tables do not depend on the frame
        start, stop = config.segmenter_blocks[0], config.segmenter_blocks[-1] + 1
        hidden, attentions = [tokens], []
        for layer in self.layers[:start]:  # frames side by side: [B, T, N, C]
            tokens, weights = layer(tokens, position_embeddings=rope, implementation=implementation)
            hidden.append(tokens)
            attentions.append(weights)
        queries = state.queries
        outputs, entering, propagated, aux = [], [], [], []
        per_block: list[list[tuple]] = [[] for _ in range(stop - start)]
        for t in range(frames):
            entering.append(queries)
            x = torch.cat([queries, tokens[:, t]], dim=1)
            for j, layer in enumerate(self.layers[start:stop]):
                if output_auxiliary_logits:
                    aux.append((j, t, self._predict(self.norm(x) if config.norm_queries else x, grid)))
                x, weights = layer(x, position_embeddings=rope, implementation=implementation)
                per_block[j].append((x, weights))
            outputs.append(x)
            carried = self.norm(x) if config.norm_queries else x
            queries = self.query_updater(carried[:, : config.num_queries]) + self.query.weight[None]
            propagated.append(queries)
        for block in per_block:
            hidden.append(torch.stack([h for h, _ in block], dim=1) if output_hidden_states else None)
            attentions.append(torch.stack([w for _, w in block], dim=1) if output_attentions else None)
        sequence = self.norm(torch.stack(outputs, dim=1))
        class_logits, mask_logits = self._predict(sequence.flatten(0, 1), grid)
        output = VideomtSegmentationOutput(
            class_queries_logits=class_logits.unflatten(0, (batch, frames)),
            masks_queries_logits=mask_logits.unflatten(0, (batch, frames)),
            state=_advance(state, queries, frames),
            last_hidden_state=sequence,
            propagated_queries=torch.stack(propagated, dim=1),
            queries_in=torch.stack(entering, dim=1),
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            auxiliary_logits=self._stack_auxiliary(aux, stop - start, frames)
            if output_auxiliary_logits
            else None,
        )
        if labels is not None:
            output.loss_dict = VideomtCriterion(config)(
                (output.class_queries_logits, output.masks_queries_logits), output.auxiliary_logits, labels
            )
            output.loss = sum(output.loss_dict.values())
        return as_returned(output, config, return_dict)

    @staticmethod
    def _stack_auxiliary(
        aux: list, blocks: int, frames: int
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        result = []
        for j in range(blocks):
            per_frame = [pred for block, _, pred in aux if block == j]
            result.append(
                (torch.stack([c for c, _ in per_frame], dim=1), torch.stack([m for _, m in per_frame], dim=1))
            )
        return tuple(result)


def _validate_frames(pixel_values: torch.Tensor, model: nn.Module, multiple: int) -> None:
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
    if pixel_values.ndim != 5 or pixel_values.shape[2] != 3:
        raise ValueError(
            f"pixel_values must have shape [videos, frames, 3, height, width], got {list(pixel_values.shape)}"
        )
    if pixel_values.shape[0] == 0 or pixel_values.shape[1] == 0:
        raise ValueError(f"pixel_values holds no frames (shape {list(pixel_values.shape)})")
    check_pixel_dtype(pixel_values, model)
    height, width = pixel_values.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(f"frame height and width must be multiples of {multiple}, got {height}x{width}")
