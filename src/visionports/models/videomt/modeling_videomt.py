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
from transformers.models.dinov3_vit.modeling_dinov3_vit import DINOv3ViTLayer, DINOv3ViTRopePositionEmbedding
from transformers.utils import ModelOutput

from ...images import check_pixel_dtype
from .configuration_videomt import VideomtConfig


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


class VideomtDinov2Attention(nn.Module):
    def __init__(self, config: VideomtConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class VideomtLayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class VideomtDinov2Layer(nn.Module):
    """Pre-norm ViT block of timm's DINOv2 (fused qkv, LayerScale, GELU MLP)."""

    def __init__(self, config: VideomtConfig):
        super().__init__()
        dim = config.hidden_size
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = VideomtDinov2Attention(config)
        self.layer_scale1 = VideomtLayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(dim, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, dim)
        self.layer_scale2 = VideomtLayerScale(dim)

    def forward(self, x: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None):
        x = x + self.layer_scale1(self.attention(self.norm1(x)))
        return x + self.layer_scale2(self.fc2(F.gelu(self.fc1(self.norm2(x)))))


def dinov3_layer_config(config: VideomtConfig) -> DINOv3ViTConfig:
    """transformers' DINOv3 configuration matching the layers of a ``dinov3`` VidEoMT."""
    layer_config = DINOv3ViTConfig(
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        patch_size=config.patch_size,
        num_register_tokens=config.num_register_tokens,
        layer_norm_eps=config.layer_norm_eps,
        rope_theta=config.rope_theta,
        query_bias=True,
        key_bias=False,
        value_bias=True,
        proj_bias=True,
        mlp_bias=True,
        use_gated_mlp=False,
        hidden_act="gelu",
    )
    layer_config._attn_implementation = "sdpa"
    return layer_config


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
        hidden_states: every block's output ``[B, T, N, C]`` (with ``output_hidden_states``).
        auxiliary_logits: deep-supervision predictions before each segmenter block, as
            ``(class_logits, mask_logits)`` pairs in the layout above (with ``output_auxiliary_logits``).
    """

    class_queries_logits: torch.Tensor | None = None
    masks_queries_logits: torch.Tensor | None = None
    state: VideomtState | None = None
    last_hidden_state: torch.Tensor | None = None
    propagated_queries: torch.Tensor | None = None
    queries_in: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    auxiliary_logits: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None


class VideomtPreTrainedModel(PreTrainedModel):
    config_class = VideomtConfig
    config: VideomtConfig
    base_model_prefix = "videomt"
    main_input_name = "pixel_values"
    input_modalities = ("video",)
    _no_split_modules = ["VideomtDinov2Layer", "DINOv3ViTLayer"]


class VideomtForUniversalSegmentation(VideomtPreTrainedModel):
    """VidEoMT with class and mask heads; call it on clips ``[B, T, 3, H, W]`` or stream with ``state``."""

    def __init__(self, config: VideomtConfig):
        super().__init__(config)
        dim = config.hidden_size
        if config.backbone_type == "dinov2":
            self.embeddings = VideomtDinov2Embeddings(config)
            self.layers = nn.ModuleList(VideomtDinov2Layer(config) for _ in range(config.num_hidden_layers))
            self.rope = None
        else:
            layer_config = dinov3_layer_config(config)
            self.embeddings = VideomtDinov3Embeddings(config)
            self.layers = nn.ModuleList(DINOv3ViTLayer(layer_config) for _ in range(config.num_hidden_layers))
            self.rope = DINOv3ViTRopePositionEmbedding(layer_config)
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
        output_hidden_states: bool = False,
        output_auxiliary_logits: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VideomtSegmentationOutput | tuple:
        """Segment the frames of ``B`` videos.

        Args:
            pixel_values: ``[B, T, 3, H, W]`` normalised frames (H, W multiples of the patch size); a
                ``[B, 3, H, W]`` tensor is one frame per video.
            state: the ``state`` of the previous call on the same videos; ``None`` starts new videos.
        """
        if isinstance(pixel_values, torch.Tensor) and pixel_values.ndim == 4:
            pixel_values = pixel_values[:, None]
        _validate_frames(pixel_values, self, self.config.patch_size)
        batch, frames = pixel_values.shape[:2]
        if state is None:
            state = self.initial_state(batch)
        elif state.queries.shape[0] != batch:
            raise ValueError(f"state holds {state.queries.shape[0]} videos but pixel_values has {batch}")
        flat = pixel_values.flatten(0, 1)
        tokens, grid = self.embeddings(flat)
        rope = self.rope(flat) if self.rope is not None else None
        start, stop = self.config.segmenter_blocks[0], self.config.segmenter_blocks[-1] + 1
        hidden: list[torch.Tensor] = []
        for layer in self.layers[:start]:
            tokens = layer(tokens, position_embeddings=rope)
            if output_hidden_states:
                hidden.append(tokens)
        tokens = tokens.unflatten(0, (batch, frames))
        queries = state.queries
        outputs, entering, propagated, aux = [], [], [], []
        query_hidden: list[list[torch.Tensor]] = [[] for _ in range(stop - start)]
        for t in range(frames):
            entering.append(queries)
            x = torch.cat([queries, tokens[:, t]], dim=1)
            for j, layer in enumerate(self.layers[start:stop]):
                if output_auxiliary_logits:
                    aux.append((j, t, self._predict(self.norm(x) if self.config.norm_queries else x, grid)))
                x = layer(x, position_embeddings=rope)  # RoPE tables do not depend on the frame
                query_hidden[j].append(x)
            outputs.append(x)
            carried = self.norm(x) if self.config.norm_queries else x
            queries = self.query_updater(carried[:, : self.config.num_queries]) + self.query.weight[None]
            propagated.append(queries)
        sequence = self.norm(torch.stack(outputs, dim=1))
        class_logits, mask_logits = self._predict(sequence.flatten(0, 1), grid)
        output = VideomtSegmentationOutput(
            class_queries_logits=class_logits.unflatten(0, (batch, frames)),
            masks_queries_logits=mask_logits.unflatten(0, (batch, frames)),
            state=VideomtState(queries=queries, frames_seen=state.frames_seen + frames),
            last_hidden_state=sequence,
            propagated_queries=torch.stack(propagated, dim=1),
            queries_in=torch.stack(entering, dim=1),
            hidden_states=self._video_hidden_states(hidden, query_hidden, batch, frames)
            if output_hidden_states
            else None,
            auxiliary_logits=self._stack_auxiliary(aux, stop - start, frames)
            if output_auxiliary_logits
            else None,
        )
        return output if return_dict is not False else output.to_tuple()

    @staticmethod
    def _video_hidden_states(
        before: list[torch.Tensor], during: list[list[torch.Tensor]], batch: int, frames: int
    ):
        states = [h.unflatten(0, (batch, frames)) for h in before]
        states += [torch.stack(per_frame, dim=1) for per_frame in during]
        return tuple(states)

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
