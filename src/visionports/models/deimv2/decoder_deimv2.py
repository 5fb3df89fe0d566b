"""DEIMv2 decoder: query selection from encoder memory, deformable cross-attention and fine-grained
distribution refinement (FDR) of box edges."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .configuration_deimv2 import Deimv2Config
from .denoising_deimv2 import DenoisingGroups, inverse_sigmoid, make_denoising_groups
from .layers_deimv2 import (
    REDUCED_PRECISION,
    Deimv2Gate,
    Deimv2MLP,
    Deimv2RMSNorm,
    Deimv2SelfAttention,
    Deimv2SwiGLUFFN,
    upcast,
)


def weighting_function(max_num_bins: int, up: torch.Tensor, reg_scale: torch.Tensor) -> torch.Tensor:
    """Non-uniform bin values W(n) of the edge-offset distribution ([max_num_bins + 1])."""
    bound1 = abs(up[0]) * abs(reg_scale)
    bound2 = abs(up[0]) * abs(reg_scale) * 2
    step = (bound1 + 1) ** (2 / (max_num_bins - 2))
    left = [-((step) ** i) + 1 for i in range(max_num_bins // 2 - 1, 0, -1)]
    right = [(step) ** i - 1 for i in range(1, max_num_bins // 2)]
    return torch.cat([-bound2, *left, torch.zeros_like(up[0][None]), *right, bound2], 0)


def distribution_to_offsets(corners: torch.Tensor, project: torch.Tensor) -> torch.Tensor:
    """Expected edge offsets of per-edge bin logits [..., 4 * (bins + 1)] -> [..., 4]."""
    shape = corners.shape
    probs = F.softmax(corners.reshape(-1, project.shape[0]), dim=1)
    return F.linear(probs, project).reshape(-1, 4).reshape(list(shape[:-1]) + [-1])


def refine_boxes(
    initial_boxes: torch.Tensor, corners: torch.Tensor, project: torch.Tensor, reg_scale: torch.Tensor
) -> torch.Tensor:
    """FDR: the boxes given by the edge distributions ``corners`` around ``initial_boxes``.

    In float32 for float16/bfloat16 inputs (``project`` then float32), as the softmax integral and the box
    arithmetic need its precision; other dtypes run unchanged.
    """
    offsets = distribution_to_offsets(upcast(corners), project)
    return distance_to_box(upcast(initial_boxes), offsets, upcast(reg_scale))


def distance_to_box(points: torch.Tensor, distance: torch.Tensor, reg_scale: torch.Tensor) -> torch.Tensor:
    """Boxes (cx, cy, w, h) from reference boxes and edge distances."""
    reg_scale = abs(reg_scale)
    x1 = points[..., 0] - (0.5 * reg_scale + distance[..., 0]) * (points[..., 2] / reg_scale)
    y1 = points[..., 1] - (0.5 * reg_scale + distance[..., 1]) * (points[..., 3] / reg_scale)
    x2 = points[..., 0] + (0.5 * reg_scale + distance[..., 2]) * (points[..., 2] / reg_scale)
    y2 = points[..., 1] + (0.5 * reg_scale + distance[..., 3]) * (points[..., 3] / reg_scale)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def generate_anchors(
    spatial_shapes: list[tuple[int, int]], grid_size: float, eps: float, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level grid anchors as logits [1, sum(HW), 4] (+inf where invalid) and their validity mask, float32."""
    anchors = []
    for level, (h, w) in enumerate(spatial_shapes):
        grid_y, grid_x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        grid_xy = (torch.stack([grid_x, grid_y], dim=-1).unsqueeze(0) + 0.5) / torch.tensor(
            [w, h], dtype=torch.float32
        )
        wh = torch.ones_like(grid_xy) * grid_size * (2.0**level)
        anchors.append(torch.cat([grid_xy, wh], dim=-1).reshape(-1, h * w, 4))
    anchors = torch.cat(anchors, dim=1)
    valid = ((anchors > eps) * (anchors < 1 - eps)).all(-1, keepdim=True)
    logits = torch.where(valid, torch.log(anchors / (1 - anchors)), torch.inf)
    return logits.to(device), valid.to(device)


class Deimv2DeformableAttention(nn.Module):
    """Multi-scale deformable attention sampling around reference boxes (no value/output projection).

    The sampling (attention softmax, locations, ``grid_sample``, weighted sum) runs in float32 for float16 and
    bfloat16 models, as autocast runs it for the original: the CPU ``grid_sample`` kernel reads the strided
    per-level values wrongly in half precision (NaN or garbage samples, varying between calls), and bfloat16
    locations have 1/256 of the map as resolution. float32 and float64 models run the same ops unchanged.
    """

    def __init__(self, config: Deimv2Config):
        super().__init__()
        self.num_heads = config.decoder_attention_heads
        self.points = list(config.decoder_n_points)
        self.offset_scale = config.decoder_offset_scale
        total = self.num_heads * sum(self.points)
        self.sampling_offsets = nn.Linear(config.d_model, total * 2)
        self.attention_weights = nn.Linear(config.d_model, total)
        scale = [1 / n for n in self.points for _ in range(n)]
        self.register_buffer("num_points_scale", torch.tensor(scale, dtype=torch.float32), persistent=False)

    def forward(
        self,
        query: torch.Tensor,
        reference_boxes: torch.Tensor,
        values: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """``values``: the memory split into heads, ``[B, heads, head_dim, sum(HW)]`` (levels concatenated)."""
        batch, num_queries = query.shape[:2]
        heads, total = self.num_heads, sum(self.points)
        offsets = upcast(self.sampling_offsets(query)).reshape(batch, num_queries, heads, total, 2)
        weights = F.softmax(
            upcast(self.attention_weights(query)).reshape(batch, num_queries, heads, total), dim=-1
        )
        boxes = upcast(reference_boxes)
        offset = offsets * self._points_scale(offsets.dtype) * boxes[:, :, None, :, 2:] * self.offset_scale
        locations = boxes[:, :, None, :, :2] + offset
        out = self._sample(upcast(values), locations, weights, spatial_shapes)
        return out.to(query.dtype)

    def _points_scale(self, dtype: torch.dtype) -> torch.Tensor:
        """``1 / n_points`` per point, ``[total, 1]``: the float32 values when the buffer was cast to half."""
        scale = self.num_points_scale
        if scale.dtype in REDUCED_PRECISION:
            scale = torch.tensor([1 / n for n in self.points for _ in range(n)], device=scale.device)
        return scale.to(dtype=dtype).unsqueeze(-1)

    def _sample(
        self,
        values: torch.Tensor,
        locations: torch.Tensor,
        weights: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """Bilinear samples of every level at ``locations`` (normalised x, y), summed with ``weights``."""
        batch, num_queries, heads, total = weights.shape
        values = values.split([h * w for h, w in spatial_shapes], dim=-1)
        channels = values[0].shape[2]
        grids = (2 * locations - 1).permute(0, 2, 1, 3, 4).flatten(0, 1).split(self.points, dim=-2)
        samples = []
        for (h, w), value, grid in zip(spatial_shapes, values, grids, strict=True):
            value = value.reshape(batch * heads, channels, h, w)
            samples.append(
                F.grid_sample(value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            )
        weights = weights.permute(0, 2, 1, 3).reshape(batch * heads, 1, num_queries, total)
        out = (torch.cat(samples, dim=-1) * weights).sum(-1).reshape(batch, heads * channels, num_queries)
        return out.permute(0, 2, 1)


class Deimv2DecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: Deimv2Config):
        super().__init__()
        dim = config.d_model
        self.self_attn = Deimv2SelfAttention(dim, config.decoder_attention_heads, config)
        self.norm1 = Deimv2RMSNorm(dim)
        self.cross_attn = Deimv2DeformableAttention(config)
        self.gateway = Deimv2Gate(dim) if config.use_gateway else None
        self.norm2 = None if config.use_gateway else Deimv2RMSNorm(dim)
        self.ffn = Deimv2SwiGLUFFN(dim, config.decoder_ffn_dim // 2)
        self.norm3 = Deimv2RMSNorm(dim)

    def forward(
        self,
        hidden: torch.Tensor,
        query_pos: torch.Tensor,
        reference_boxes: torch.Tensor,
        values: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The updated queries and, on the eager path, the self-attention weights ``[B, heads, Q, Q]``."""
        update, weights = self.self_attn(hidden + query_pos, hidden, attention_mask, output_attentions)
        hidden = self.norm1(hidden + update)
        update = self.cross_attn(hidden + query_pos, reference_boxes, values, spatial_shapes)
        hidden = self.gateway(hidden, update) if self.gateway is not None else self.norm2(hidden + update)
        hidden = hidden + self.ffn(hidden)
        return self.norm3(hidden.clamp(min=-65504, max=65504)), weights


class Deimv2LQE(nn.Module):
    """Location quality estimator: adds a score from the sharpness of the edge distributions."""

    def __init__(self, config: Deimv2Config):
        super().__init__()
        self.top_k = config.lqe_top_k
        self.bins = config.max_num_bins + 1
        self.reg_conf = Deimv2MLP(
            4 * (self.top_k + 1), config.lqe_hidden_dim, 1, 2, config.decoder_activation
        )

    def forward(self, scores: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        batch, length, _ = corners.shape
        # the distribution statistics in float32 for half-precision models
        probs = F.softmax(upcast(corners).reshape(batch, length, 4, self.bins), dim=-1)
        top, _ = probs.topk(self.top_k, dim=-1)
        stats = torch.cat([top, top.mean(dim=-1, keepdim=True)], dim=-1)
        return scores + self.reg_conf(stats.reshape(batch, length, -1).to(scores.dtype))


@dataclass
class Deimv2Predictions:
    """One prediction head's outputs as the criterion reads them (boxes normalised cx, cy, w, h)."""

    logits: torch.Tensor
    boxes: torch.Tensor
    corners: torch.Tensor | None = None
    reference_boxes: torch.Tensor | None = None
    teacher_corners: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None


@dataclass
class Deimv2TrainingOutputs:
    """Everything the training criterion needs from one decoder pass.

    ``final`` is the last layer; ``auxiliary`` the earlier layers (distilled from the last one);
    ``first_layer`` the plain box head after layer 0; ``encoder`` the selected encoder proposals;
    ``denoising`` / ``denoising_first_layer`` the same for the denoising queries (all layers), when used.
    The targets are not part of it: the criterion receives them as an argument.
    """

    final: Deimv2Predictions
    auxiliary: list[Deimv2Predictions]
    first_layer: Deimv2Predictions
    encoder: list[Deimv2Predictions]
    up: torch.Tensor
    reg_scale: torch.Tensor
    denoising: list[Deimv2Predictions] | None = None
    denoising_first_layer: Deimv2Predictions | None = None
    denoising_positive_indices: tuple[torch.Tensor, ...] | None = None
    denoising_num_groups: int = 0


def _layer_predictions(
    logits: list[torch.Tensor],
    boxes: list[torch.Tensor],
    corners: list[torch.Tensor],
    refs: list[torch.Tensor],
) -> list[Deimv2Predictions]:
    """Per-layer predictions, each distilled from the last layer's corners and logits."""
    return [
        Deimv2Predictions(s, b, c, r, teacher_corners=corners[-1], teacher_logits=logits[-1])
        for s, b, c, r in zip(logits, boxes, corners, refs, strict=True)
    ]


@dataclass
class _QuerySelection:
    """The encoder's proposals: token scores, the selected tokens and their reference boxes."""

    enc_logits: torch.Tensor
    topk: torch.Tensor
    queries: torch.Tensor
    reference_logits: torch.Tensor
    proposal_logits: torch.Tensor

    def encoder_predictions(self) -> Deimv2Predictions:
        """The selected proposals as predictions, for the criterion's encoder terms."""
        index = self.topk.unsqueeze(-1).expand(-1, -1, self.enc_logits.shape[-1])
        return Deimv2Predictions(self.enc_logits.gather(1, index), F.sigmoid(self.proposal_logits))


@dataclass
class _LayerOutputs:
    """What the layer loop produces: every run layer's states and each kept layer's predictions."""

    hidden_states: list[torch.Tensor]
    attentions: list[torch.Tensor | None] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)
    boxes: list[torch.Tensor] = field(default_factory=list)
    corners: list[torch.Tensor] = field(default_factory=list)
    refs: list[torch.Tensor] = field(default_factory=list)
    pre_boxes: torch.Tensor | None = None
    pre_logits: torch.Tensor | None = None


def _prepend_denoising(
    queries: torch.Tensor, ref_logits: torch.Tensor, denoising: DenoisingGroups | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The decoder's input queries, reference logits and attention mask, denoising queries first."""
    if denoising is None:
        return queries, ref_logits, None
    hidden = torch.cat([denoising.content.to(queries.dtype), queries], dim=1)
    references = torch.cat([denoising.reference_logits.to(ref_logits.dtype), ref_logits], dim=1)
    return hidden, references, denoising.attention_mask


def _split_training_outputs(
    layers: _LayerOutputs,
    encoder: Deimv2Predictions,
    denoising: DenoisingGroups | None,
    up: torch.Tensor,
    reg_scale: torch.Tensor,
) -> Deimv2TrainingOutputs:
    """Separate the denoising queries (first ``denoising.num_queries``) from the matching ones."""
    split = denoising.num_queries if denoising is not None else 0

    def part(tensors: list[torch.Tensor], dn: bool) -> list[torch.Tensor]:
        return [t[:, :split] if dn else t[:, split:] for t in tensors]

    def predictions(dn: bool) -> list[Deimv2Predictions]:
        return _layer_predictions(
            part(layers.logits, dn), part(layers.boxes, dn), part(layers.corners, dn), part(layers.refs, dn)
        )

    matching = predictions(False)
    last = matching[-1]
    out = Deimv2TrainingOutputs(
        final=Deimv2Predictions(last.logits, last.boxes, last.corners, last.reference_boxes),
        auxiliary=matching[:-1],
        first_layer=Deimv2Predictions(layers.pre_logits[:, split:], layers.pre_boxes[:, split:]),
        encoder=[encoder],
        up=up,
        reg_scale=reg_scale,
    )
    if denoising is not None:
        out.denoising = predictions(True)
        out.denoising_first_layer = Deimv2Predictions(
            layers.pre_logits[:, :split], layers.pre_boxes[:, :split]
        )
        out.denoising_positive_indices = denoising.positive_indices
        out.denoising_num_groups = denoising.num_groups
    return out


@dataclass
class Deimv2DecoderResult:
    logits: torch.Tensor
    pred_boxes: torch.Tensor
    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]
    attentions: tuple[torch.Tensor, ...]
    enc_outputs_logits: torch.Tensor
    enc_topk_indices: torch.Tensor
    initial_queries: torch.Tensor
    initial_reference_logits: torch.Tensor
    pre_boxes: torch.Tensor
    training: Deimv2TrainingOutputs | None = None


def _decoder_result(
    selection: _QuerySelection, layers: _LayerOutputs, training: Deimv2TrainingOutputs | None, split: int
) -> Deimv2DecoderResult:
    """The decoder's outputs; with ``training`` only the matching queries (after the first ``split``)."""
    hidden_states, attentions, pre_boxes = layers.hidden_states, layers.attentions, layers.pre_boxes
    logits, boxes = layers.logits[-1], layers.boxes[-1]
    if training is not None:
        hidden_states = [h[:, split:] for h in hidden_states]
        attentions = [a[:, :, split:, split:] if a is not None else None for a in attentions]
        logits, boxes = training.final.logits, training.final.boxes
        pre_boxes = pre_boxes[:, split:]
    return Deimv2DecoderResult(
        logits=logits,
        pred_boxes=boxes,
        last_hidden_state=hidden_states[-1],
        hidden_states=tuple(hidden_states),
        attentions=tuple(attentions),
        enc_outputs_logits=selection.enc_logits,
        enc_topk_indices=selection.topk,
        initial_queries=selection.queries,
        initial_reference_logits=selection.reference_logits,
        pre_boxes=pre_boxes,
        training=training,
    )


class Deimv2Decoder(nn.Module):
    def __init__(self, config: Deimv2Config):
        super().__init__()
        dim, act = config.d_model, config.decoder_activation
        self.config = config
        self.eval_idx = config.resolved_eval_idx
        self.register_buffer("up", torch.tensor([config.up]))
        self.register_buffer("reg_scale", torch.tensor([config.reg_scale]))
        self.layers = nn.ModuleList(Deimv2DecoderLayer(config) for _ in range(config.decoder_layers))
        self.lqe_layers = nn.ModuleList(Deimv2LQE(config) for _ in range(config.decoder_layers))
        self.denoising_class_embed = nn.Embedding(config.num_labels + 1, dim, padding_idx=config.num_labels)
        self.enc_score_head = nn.Linear(dim, config.num_labels)
        self.enc_bbox_head = Deimv2MLP(dim, dim, 4, 3, act)
        self.query_pos_head = Deimv2MLP(4, dim, dim, 3, act)
        self.pre_bbox_head = Deimv2MLP(dim, dim, 4, 3, act)
        self.dec_score_head = nn.ModuleList(
            nn.Linear(dim, config.num_labels) for _ in range(config.decoder_layers)
        )
        num_bbox_heads = 1 if config.share_bbox_head else config.decoder_layers
        bins = 4 * (config.max_num_bins + 1)
        self.dec_bbox_head = nn.ModuleList(Deimv2MLP(dim, dim, bins, 3, act) for _ in range(num_bbox_heads))

    def bbox_head(self, index: int) -> nn.Module:
        return self.dec_bbox_head[0 if len(self.dec_bbox_head) == 1 else index]

    def forward(
        self,
        features: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]] | None = None,
        output_attentions: bool = False,
    ) -> Deimv2DecoderResult:
        """Decode the encoder maps.

        ``hidden_states`` holds the initial queries then each run layer's output; ``attentions`` each run
        layer's self-attention weights (eager path). With ``targets`` (``[{"labels", "boxes"}]``) every
        layer's predictions are kept for the criterion (``result.training``), and in training mode the
        contrastive denoising queries are added.
        """
        spatial_shapes = [(f.shape[2], f.shape[3]) for f in features]
        memory = torch.cat([f.flatten(2).permute(0, 2, 1) for f in features], dim=1)
        self._check_memory(memory)
        denoising = self._denoising_groups(targets)
        selection = self._select_queries(memory, spatial_shapes)
        hidden, ref_logits, attention_mask = _prepend_denoising(
            selection.queries, selection.reference_logits, denoising
        )
        layers = self._run_layers(
            hidden, ref_logits, memory, spatial_shapes, attention_mask, output_attentions, targets is not None
        )
        if targets is None:
            return _decoder_result(selection, layers, None, 0)
        training = _split_training_outputs(
            layers, selection.encoder_predictions(), denoising, self.up, self.reg_scale
        )
        split = denoising.num_queries if denoising is not None else 0
        return _decoder_result(selection, layers, training, split)

    def _check_memory(self, memory: torch.Tensor) -> None:
        config = self.config
        if memory.shape[1] < config.num_queries:
            raise ValueError(
                f"the input is too small: its feature maps give {memory.shape[1]} anchors but the model selects "
                f"num_queries={config.num_queries}; use a larger image (default {config.eval_image_size})"
            )

    def _denoising_groups(self, targets: list[dict[str, torch.Tensor]] | None) -> DenoisingGroups | None:
        """The contrastive denoising queries of ``targets`` (training mode only)."""
        if targets is None or not self.training:
            return None
        config = self.config
        return make_denoising_groups(
            [t["labels"] for t in targets],
            [t["boxes"] for t in targets],
            config.num_labels,
            config.num_queries,
            self.denoising_class_embed,
            num_denoising=config.num_denoising,
            label_noise_ratio=config.label_noise_ratio,
            box_noise_scale=config.box_noise_scale,
        )

    def _select_queries(self, memory: torch.Tensor, spatial_shapes: list[tuple[int, int]]) -> _QuerySelection:
        """Score every valid anchor's token and keep the ``num_queries`` best as initial queries."""
        config = self.config
        batch, _, dim = memory.shape
        anchors, valid = generate_anchors(
            spatial_shapes, config.anchor_grid_size, config.anchor_eps, memory.device
        )
        anchors = anchors.to(memory.dtype)
        masked = valid.to(memory.dtype) * memory
        enc_logits = self.enc_score_head(masked)
        _, topk = torch.topk(enc_logits.max(-1).values, config.num_queries, dim=-1)
        selected = masked.gather(1, topk.unsqueeze(-1).expand(-1, -1, dim))
        topk_anchors = anchors.expand(batch, -1, -1).gather(1, topk.unsqueeze(-1).expand(-1, -1, 4))
        proposal_logits = self.enc_bbox_head(selected) + topk_anchors
        return _QuerySelection(enc_logits, topk, selected.detach(), proposal_logits.detach(), proposal_logits)

    def _run_layers(
        self,
        hidden: torch.Tensor,
        ref_logits: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        attention_mask: torch.Tensor | None,
        output_attentions: bool,
        all_layers: bool,
    ) -> _LayerOutputs:
        """The decoder layers with FDR box refinement; stops after ``eval_idx`` unless ``all_layers``."""
        config = self.config
        batch, length, dim = memory.shape
        heads = config.decoder_attention_heads
        values = memory.reshape(batch, length, heads, dim // heads).permute(0, 2, 3, 1)
        # Box geometry (reference boxes, FDR) stays float32 for float16/bfloat16 models, cast back on output.
        dtype = hidden.dtype
        project = weighting_function(config.max_num_bins, upcast(self.up), upcast(self.reg_scale))
        ref_boxes = F.sigmoid(upcast(ref_logits))
        query_pos = self.query_pos_head(ref_boxes.to(dtype)).clamp(min=-10, max=10)
        previous_hidden: torch.Tensor | int = 0
        previous_corners: torch.Tensor | int = 0
        out = _LayerOutputs(hidden_states=[hidden])
        for index, layer in enumerate(self.layers):
            hidden, weights = layer(
                hidden,
                query_pos,
                ref_boxes.unsqueeze(2),
                values,
                spatial_shapes,
                attention_mask,
                output_attentions,
            )
            out.hidden_states.append(hidden)
            out.attentions.append(weights)
            if index == 0:
                pre_boxes = F.sigmoid(upcast(self.pre_bbox_head(hidden)) + inverse_sigmoid(ref_boxes))
                out.pre_boxes = pre_boxes.to(dtype)
                out.pre_logits = self.dec_score_head[0](hidden) if all_layers else None
                initial_boxes = pre_boxes.detach()
            corners = self.bbox_head(index)(hidden + previous_hidden) + previous_corners
            boxes = refine_boxes(initial_boxes, corners, project, self.reg_scale)
            if all_layers or index == self.eval_idx:
                out.logits.append(self.lqe_layers[index](self.dec_score_head[index](hidden), corners))
                out.boxes.append(boxes.to(dtype))
                out.corners.append(corners)
                out.refs.append(initial_boxes.to(dtype))
                if not all_layers:
                    break
            previous_corners = corners
            ref_boxes = boxes.detach()
            previous_hidden = hidden.detach()
        return out
