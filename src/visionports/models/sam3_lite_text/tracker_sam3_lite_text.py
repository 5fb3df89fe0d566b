"""The SAM3-LiteText video tracker, one frame at a time: the original ``Sam3TrackerPredictor`` arithmetic on
transformers' ``Sam3TrackerVideoModel`` modules.

A :class:`TrackerState` holds the objects admitted on one frame (the original batches them in one inference
state) and only the memories the original's selection rules can still read when frames arrive in order:

* conditioning entries: the ``max_cond_frames_in_attn`` most recent ones. Going forward in time every
  conditioning frame lies at or before the current frame, so the closest ones are the most recent ones; the older
  ones are never attended and are never among the frames memory selection returns (it only scans
  non-conditioning entries, and the frame just before the current one is always the most recent conditioning
  frame when it is one).
* non-conditioning entries: with memory selection (the released setting) the ``min(T, 16) - 1`` most recent
  entries whose score passes ``memory_selection_threshold`` (frame 0 is never a candidate), plus the newest
  entry (always included as "the previous frame"); without it, the last ``max(num_maskmem, max_obj_ptrs) - 1``.

Only the newest entry and the conditioning entries keep their low-resolution masks (read again when a frame is
revisited or consolidated); older entries keep the memory features (bfloat16), the object pointer and scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

NO_OBJECT_LOGIT = -1024.0  # the original's NO_OBJ_SCORE: "no object here" in low-resolution mask logits
MASK_LOGIT_SCALE, MASK_LOGIT_BIAS = 20.0, -10.0  # a binary mask as logits: 1 -> +10, 0 -> -10


@dataclass
class FrameFeatures:
    """The tracker's view of one frame (batch 1): ``high_res`` = the 4x and 2x neck levels after ``conv_s0`` /
    ``conv_s1``; ``embedding`` = the 1x level [1, C, g, g]; ``position`` = its sine position encoding. The neck
    levels are rounded to bfloat16 first, as the original does before caching them."""

    high_res: tuple[torch.Tensor, torch.Tensor]
    embedding: torch.Tensor
    position: torch.Tensor


@dataclass
class MemoryEntry:
    """One frame of a state, rows = the state's objects. ``iou_score`` keeps the original's shape ([B] from the
    decoder, [B, 1] after consolidation): the memory-selection score depends on it (see :func:`selection_score`)."""

    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor
    iou_score: torch.Tensor
    pred_masks: torch.Tensor | None = None
    maskmem_features: torch.Tensor | None = None
    selection_score: float | None = None  # None: not a memory-selection candidate (conditioning output)


@dataclass
class TrackerState:
    """Objects admitted together, with their bounded memory (see the module docstring)."""

    obj_ids: list[int]
    cond: dict[int, MemoryEntry] = field(default_factory=dict)
    non_cond: dict[int, MemoryEntry] = field(default_factory=dict)
    input_frames: dict[int, set[int]] = field(default_factory=dict)  # object id -> frames with a mask input
    consolidated: set[int] = field(default_factory=set)  # conditioning frames whose outputs are reused


def selection_score(object_score_logits: torch.Tensor, iou_score: torch.Tensor) -> float:
    """Memory-selection score of a frame: the product ``normalised object score x IoU`` averaged. With ``iou_score``
    of shape [B] against object scores [B, 1] this broadcasts to [B, B] (the mean of one times the mean of the
    other), exactly as the original computes it."""
    present = object_score_logits > 0
    norm = torch.where(present, object_score_logits.sigmoid() * 2 - 1, torch.zeros_like(object_score_logits))
    return float((norm * iou_score).mean())


def pixelwise_non_overlap(masks: torch.Tensor) -> torch.Tensor:
    """Each pixel keeps only its highest-scoring object; the others are clamped to at most -10 ([N, 1, H, W])."""
    if masks.shape[0] == 1:
        return masks
    winner = masks.argmax(dim=0, keepdim=True)
    mine = winner == torch.arange(masks.shape[0], device=masks.device)[:, None, None, None]
    return torch.where(mine, masks, masks.clamp(max=-10.0))


def suppress_shrunk(masks: torch.Tensor, threshold: float) -> torch.Tensor:
    """Objects that lose more than ``1 - threshold`` of their area to the pixel-wise non-overlap are switched off
    (clamped to at most -10); the others are left untouched ([N, 1, H, W] logits)."""
    before = (masks > 0).sum(dim=(-1, -2)).clamp(min=1)
    after = (pixelwise_non_overlap(masks) > 0).sum(dim=(-1, -2))
    kept = (after / before) >= threshold
    return torch.where(kept[..., None, None], masks, masks.clamp(max=-10.0))


def closest_cond_frames(frame: int, frames: list[int], limit: int) -> tuple[list[int], list[int]]:
    """(attended, others): up to ``limit`` conditioning frames nearest to ``frame`` (the nearest before, the
    nearest at/after, then by distance), in the order the original assembles them."""
    if limit == -1 or len(frames) <= limit:
        return list(frames), []
    chosen = []
    before = [f for f in frames if f < frame]
    after = [f for f in frames if f >= frame]
    if before:
        chosen.append(max(before))
    if after:
        chosen.append(min(after))
    rest = sorted((f for f in frames if f not in chosen), key=lambda f: abs(f - frame))
    chosen += rest[: limit - len(chosen)]
    return chosen, [f for f in frames if f not in chosen]


def sine_encoding(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sine/cosine encoding [len, dim] of (normalised) positions."""
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=positions.device)
    scale = temperature ** (2 * (exponent // 2) / half)
    angles = positions[:, None] / scale
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TrackerCore:
    """The per-state tracker computations on transformers' tracker modules (``model.tracker``)."""

    def __init__(self, tracker: torch.nn.Module, settings: Any, num_frames: int | None):
        self.tracker = tracker
        self.settings = settings
        self.hidden = tracker.hidden_dim
        self.mem_dim = tracker.mem_dim
        self.image_size = tracker.config.image_size
        self.low_res = tuple(tracker.prompt_encoder.mask_input_size)  # 4 x grid
        self.mask_size = (4 * self.low_res[0], 4 * self.low_res[1])  # the original input_mask_size
        limit = settings.max_obj_ptrs_in_encoder
        self.max_ptrs = limit if num_frames is None else min(num_frames, limit)
        self._memory_position: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------------ SAM heads
    def sam_heads(self, image: torch.Tensor, features: FrameFeatures, mask_prompt: torch.Tensor | None,
                  multimask: bool) -> dict[str, torch.Tensor]:  # fmt: skip
        """Prompt encoder (one empty point, optional mask prompt) + mask decoder on ``image`` [B, C, g, g]: the
        best mask (object-absent rows set to NO_OBJECT_LOGIT), its IoU, the object pointer and score."""
        tracker, batch = self.tracker, image.shape[0]
        points = torch.zeros(batch, 1, 1, 2, dtype=image.dtype, device=image.device)
        labels = -torch.ones(batch, 1, 1, dtype=torch.int32, device=image.device)
        sparse, dense = tracker.prompt_encoder(input_points=points, input_labels=labels, input_boxes=None,
                                               input_masks=mask_prompt)  # fmt: skip
        positions = tracker.get_image_wide_positional_embeddings().repeat(batch, 1, 1, 1)
        high = [h.expand(batch, -1, -1, -1) for h in features.high_res]
        masks, ious, tokens, scores = tracker.mask_decoder(
            image_embeddings=image, image_positional_embeddings=positions, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=multimask, high_resolution_features=high,
        )  # fmt: skip
        masks, ious, tokens, scores = (
            masks[:, 0],
            ious[:, 0],
            tokens[:, 0],
            scores[:, 0],
        )  # one prompt per image
        present = scores > 0  # [B, 1]
        masks = torch.where(present[:, :, None, None], masks, NO_OBJECT_LOGIT).float()
        rows = torch.arange(batch, device=image.device)
        token = tokens[:, 0]
        if multimask:
            best = ious.argmax(dim=-1)
            best_mask = masks[rows, best][:, None]
            if tokens.shape[1] > 1:
                token = tokens[rows, best]
        else:
            best_mask = masks[:, :1]
        pointer = tracker.object_pointer_proj(token)
        weight = present.float()
        pointer = weight * pointer + (1 - weight) * tracker.no_object_pointer
        return {"masks": best_mask, "ious": ious, "obj_ptr": pointer, "object_score_logits": scores}

    def mask_as_output(self, features: FrameFeatures, mask: torch.Tensor) -> MemoryEntry:
        """A binary mask [1, 1, 4*low, 4*low] taken as the object's output (the original ``_use_mask_as_output``):
        score +-10 from its area, IoU 1, the pointer from the decoder prompted with the downsampled mask."""
        mask = mask.float()
        prompt = self.tracker.mask_downsample(mask)
        heads = self.sam_heads(features.embedding, features, prompt, multimask=False)
        present = (mask.flatten(1) > 0).any(dim=1, keepdim=True).float()
        pointer = present * heads["obj_ptr"] + (1 - present) * self.tracker.no_object_pointer
        score = MASK_LOGIT_SCALE * present + MASK_LOGIT_BIAS
        return MemoryEntry(obj_ptr=pointer, object_score_logits=score, iou_score=mask.new_ones(1, 1))

    # ------------------------------------------------------------------------------------------------ memory
    def encode_memory(self, features: FrameFeatures, masks: torch.Tensor, object_score_logits: torch.Tensor,
                      binarize: bool) -> torch.Tensor:  # fmt: skip
        """Memory features (bfloat16, [B, mem_dim, g, g]) of mask logits [B, 1, h, w]: binarised (mask inputs) or
        sigmoid (predictions), mapped to +-10, resized (antialiased bilinear) to 4x the low-res size, fused with
        the frame; the "occluded" embedding is added where the object score is <= 0."""
        batch = masks.shape[0]
        weights = (masks > 0).float() if binarize else torch.sigmoid(masks)
        weights = weights * self.settings.sigmoid_scale_for_mem_enc + self.settings.sigmoid_bias_for_mem_enc
        if tuple(weights.shape[-2:]) != self.mask_size:
            weights = F.interpolate(weights.float(), size=self.mask_size, mode="bilinear", align_corners=False,
                                    antialias=True)  # fmt: skip
        pixels = features.embedding.expand(batch, -1, -1, -1)
        memory, position = self.tracker.memory_encoder(pixels, weights)
        if self._memory_position is None:
            self._memory_position = position[:1].clone()
        occluded = self.tracker.occlusion_spatial_embedding_parameter
        if occluded is not None:
            absent = 1 - (object_score_logits > 0).float()
            memory = memory + absent[..., None, None] * occluded[..., None, None].expand(*memory.shape)
        return memory.to(torch.bfloat16)

    def memory_position(self) -> torch.Tensor:
        """The memory encoder's sine position map [1, mem_dim, g, g] (the same for every frame and object; known
        once a memory was encoded, which every state does on its first frame)."""
        if self._memory_position is None:
            raise RuntimeError("no memory has been encoded yet")
        return self._memory_position

    # ------------------------------------------------------------------------------------------------ selection
    def selected_frames(self, state: TrackerState, frame: int) -> list[int]:
        """Past non-conditioning frames memory may read, oldest first (the original ``frame_filter`` /
        fixed window)."""
        settings = self.settings
        if not settings.use_memory_selection:
            return [f for f in range(max(frame - settings.num_maskmem + 1, 0), frame)]
        if frame == 0:
            return []
        wanted = self.max_ptrs - 1
        chosen: list[int] = []
        for f in sorted((f for f in state.non_cond if 0 < f < frame), reverse=True):
            score = state.non_cond[f].selection_score
            if score is not None and score > settings.memory_selection_threshold:
                chosen.insert(0, f)
            if len(chosen) >= wanted:
                break
        if frame - 1 not in chosen:
            chosen.append(frame - 1)
        return chosen

    def prune(self, state: TrackerState, frame: int) -> None:
        """Drop what the selection rules can no longer reach once ``frame`` is the newest frame."""
        settings = self.settings
        if len(state.cond) > settings.max_cond_frames_in_attn > 0:
            for f in sorted(state.cond)[: len(state.cond) - settings.max_cond_frames_in_attn]:
                del state.cond[f]
                state.consolidated.discard(f)
        if settings.use_memory_selection:
            keep = set(self.selected_frames(state, frame + 1))
            keep.add(frame)
        else:
            depth = max(settings.num_maskmem, self.max_ptrs) - 1
            keep = set(range(frame - depth + 1, frame + 1))
        for f in [f for f in state.non_cond if f not in keep]:
            del state.non_cond[f]
        for f, entry in state.non_cond.items():
            if f != frame:
                entry.pred_masks = None

    # ------------------------------------------------------------------------------------------------ one step
    def condition_on_memory(self, state: TrackerState, frame: int, features: FrameFeatures,
                            record: Any = None) -> torch.Tensor:  # fmt: skip
        """The frame's 1x features attended to the state's memories and object pointers [B, C, g, g]."""
        tracker, settings, batch = self.tracker, self.settings, len(state.obj_ids)
        grid = features.embedding.shape[-2:]
        chosen, others = closest_cond_frames(frame, list(state.cond), settings.max_cond_frames_in_attn)
        others_map = {f: state.cond[f] for f in others}
        tpos = tracker.memory_temporal_positional_encoding  # [num_maskmem, 1, 1, mem_dim]
        spatial = self.memory_position().flatten(2).permute(2, 0, 1)  # [g*g, 1, mem_dim]
        memories, positions = [], []

        def add(entry: MemoryEntry, t_pos: int) -> None:
            memories.append(entry.maskmem_features.float().flatten(2).permute(2, 0, 1))
            positions.append((spatial + tpos[settings.num_maskmem - t_pos - 1]).expand(-1, batch, -1))

        for f in chosen:
            add(state.cond[f], 0)
        selected = self.selected_frames(state, frame)
        for t_pos in range(1, settings.num_maskmem):
            back = settings.num_maskmem - t_pos
            if back > len(selected):
                continue
            entry = state.non_cond.get(selected[-back], others_map.get(selected[-back]))
            if entry is not None:
                add(entry, t_pos)
        offsets, pointers = [], []
        for f in chosen:
            if f <= frame:
                offsets.append(frame - f)
                pointers.append(state.cond[f].obj_ptr)
        for back in range(1, self.max_ptrs):
            if back >= len(selected):
                break
            entry = state.non_cond.get(selected[-back], others_map.get(selected[-back]))
            if entry is not None:
                offsets.append(back)
                pointers.append(entry.obj_ptr)
        pointer_tokens = 0
        if pointers:
            stacked = torch.stack(pointers, dim=0)  # [P, B, C]
            scale = torch.tensor(offsets, dtype=torch.float32, device=stacked.device) / (self.max_ptrs - 1)
            encoding = tracker.temporal_positional_encoding_projection_layer(
                sine_encoding(scale, self.hidden)
            )
            encoding = encoding[:, None].expand(-1, batch, -1)
            if self.mem_dim < self.hidden:
                splits = self.hidden // self.mem_dim
                stacked = stacked.reshape(-1, batch, splits, self.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
                encoding = encoding.repeat_interleave(splits, dim=0)
            memories.append(stacked)
            positions.append(encoding)
            pointer_tokens = stacked.shape[0]
        if record is not None:
            record("memory_frames", torch.tensor(selected, dtype=torch.long))
        current = features.embedding.expand(batch, -1, -1, -1).flatten(2).permute(2, 0, 1)
        current_pos = features.position.expand(batch, -1, -1, -1).flatten(2).permute(2, 0, 1)
        out = tracker.memory_attention(
            current_vision_features=current, current_vision_position_embeddings=current_pos,
            memory=torch.cat(memories, dim=0), memory_posision_embeddings=torch.cat(positions, dim=0),
            num_object_pointer_tokens=pointer_tokens,
        )  # fmt: skip
        # [1, B, g*g, C] (batch first inside the layers) -> [B, C, g, g]
        out = out.reshape(batch, grid[0] * grid[1], self.hidden)
        return out.permute(0, 2, 1).reshape(batch, self.hidden, *grid)

    def track(self, state: TrackerState, frame: int, features: FrameFeatures,
              record: Any = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Propagate a state to ``frame`` (no memory encoding yet): low-res mask logits [B, 1, h, w] and object
        score logits [B, 1]. A frame that received mask inputs reuses its stored outputs."""
        if frame in state.consolidated and frame in state.cond:
            entry = state.cond[frame]
            return entry.pred_masks, entry.object_score_logits
        image = self.condition_on_memory(state, frame, features, record)
        heads = self.sam_heads(image, features, None, multimask=self.settings.multimask_output_for_tracking)
        iou = heads["ious"].max(dim=-1).values  # [B]
        entry = MemoryEntry(obj_ptr=heads["obj_ptr"], object_score_logits=heads["object_score_logits"],
                            iou_score=iou, pred_masks=heads["masks"],
                            selection_score=selection_score(heads["object_score_logits"], iou))  # fmt: skip
        state.non_cond[frame] = entry
        if record is not None:
            record("pix_feat_with_mem", image)
            record("iou_score", iou)
            record("obj_ptr", heads["obj_ptr"])
            record("eff_iou_score", torch.tensor([entry.selection_score]))
        return entry.pred_masks, entry.object_score_logits

    # ------------------------------------------------------------------------------------------------ inputs
    def add_masks(self, state: TrackerState, frame: int, features: FrameFeatures, obj_ids: list[int],
                  masks: torch.Tensor, video_size: tuple[int, int]) -> None:  # fmt: skip
        """Give objects of ``state`` binary masks [K, 4*low, 4*low] on ``frame`` and make it a conditioning frame
        of the whole state (the original ``add_new_mask`` per object, then the preflight consolidation: masks
        round-tripped through the video resolution, later objects win overlaps, memory from the binarised
        consolidated masks)."""
        inputs: dict[int, tuple[MemoryEntry, torch.Tensor]] = {}
        for obj_id, mask in zip(obj_ids, masks, strict=True):
            mask = mask[None, None].float()
            if tuple(mask.shape[-2:]) != self.mask_size:
                mask = F.interpolate(
                    mask, size=self.mask_size, mode="bilinear", align_corners=False, antialias=True
                )
            video = mask
            if tuple(mask.shape[-2:]) != tuple(video_size):
                video = F.interpolate(
                    mask, size=video_size, mode="bilinear", align_corners=False, antialias=True
                )
            video = video > 0.5
            entry = self.mask_as_output(features, mask)
            for other, (_, other_video) in inputs.items():
                inputs[other] = (inputs[other][0], torch.where(video, NO_OBJECT_LOGIT, other_video))
            inputs[obj_id] = (entry, torch.where(video, -NO_OBJECT_LOGIT, NO_OBJECT_LOGIT))
            state.input_frames.setdefault(obj_id, set()).add(frame)
        batch = len(state.obj_ids)
        low = torch.full((batch, 1, *self.low_res), NO_OBJECT_LOGIT)
        pointers = torch.full((batch, self.hidden), NO_OBJECT_LOGIT)
        scores = torch.full((batch, 1), 10.0)
        ious = torch.zeros(batch, 1)
        previous = state.cond.get(frame, state.non_cond.get(frame))
        for row, obj_id in enumerate(state.obj_ids):
            if obj_id in inputs:
                entry, video = inputs[obj_id]
                mask = video
                if tuple(video.shape[-2:]) != self.low_res:
                    mask = F.interpolate(video, size=self.low_res, mode="bilinear", align_corners=False,
                                         antialias=True)  # fmt: skip
            elif previous is not None:
                entry = MemoryEntry(obj_ptr=previous.obj_ptr[row : row + 1],
                                    object_score_logits=previous.object_score_logits[row : row + 1],
                                    iou_score=previous.iou_score[row : row + 1])  # fmt: skip
                mask = previous.pred_masks[row : row + 1]
            else:
                raise RuntimeError(f"object {obj_id} has no output on frame {frame} to consolidate")
            low[row : row + 1] = mask
            pointers[row : row + 1] = entry.obj_ptr
            scores[row : row + 1] = entry.object_score_logits
            ious[row : row + 1] = entry.iou_score
        full = F.interpolate(
            low, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        full = pixelwise_non_overlap(full)
        memory = self.encode_memory(features, full, scores, binarize=True)
        state.cond[frame] = MemoryEntry(obj_ptr=pointers, object_score_logits=scores, iou_score=ious,
                                        pred_masks=low, maskmem_features=memory)  # fmt: skip
        state.non_cond.pop(frame, None)
        state.consolidated.add(frame)

    def remove_object(self, state: TrackerState, obj_id: int) -> None:
        """Drop an object's rows from every stored entry (frames where only it had a mask input stop being
        conditioning frames; selection scores are recomputed, as the original does)."""
        row = state.obj_ids.index(obj_id)
        keep = [i for i in range(len(state.obj_ids)) if i != row]
        own = state.input_frames.pop(obj_id, set())
        others = set().union(*state.input_frames.values()) if state.input_frames else set()
        for f in sorted(own - others):
            entry = state.cond.pop(f, None)
            state.consolidated.discard(f)
            if entry is not None:
                state.non_cond[f] = entry
        state.obj_ids = [state.obj_ids[i] for i in keep]
        for entries in (state.cond, state.non_cond):
            for entry in entries.values():
                entry.obj_ptr = entry.obj_ptr[keep]
                entry.object_score_logits = entry.object_score_logits[keep]
                entry.iou_score = entry.iou_score[keep]
                if entry.pred_masks is not None:
                    entry.pred_masks = entry.pred_masks[keep]
                if entry.maskmem_features is not None:
                    entry.maskmem_features = entry.maskmem_features[keep]
                entry.selection_score = selection_score(entry.object_score_logits, entry.iou_score)
