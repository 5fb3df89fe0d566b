"""Point-sampled mask losses (PointRend-style): values of maps at random points in ``[0, 1]²`` coordinates."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(maps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``maps`` ``[N, C, H, W]`` at ``points`` ``[N, P, 2]`` (x, y in ``[0, 1]``, pixel
    corners at 0 and 1, zeros outside): ``[N, C, P]``."""
    grid = (2.0 * points - 1.0).unsqueeze(2)
    return F.grid_sample(maps, grid, align_corners=False).squeeze(3)


def uncertain_points(
    logits: torch.Tensor, num_points: int, oversample_ratio: float, importance_sample_ratio: float
) -> torch.Tensor:
    """``[N, num_points, 2]`` points per map of ``logits`` ``[N, 1, H, W]``: of ``oversample_ratio × num_points``
    uniform draws, the ``importance_sample_ratio`` share whose logits are closest to 0, then fresh uniform
    draws for the rest (float32 draws from torch's default generator, in that order)."""
    count = logits.shape[0]
    drawn = int(num_points * oversample_ratio)
    candidates = torch.rand(count, drawn, 2, device=logits.device)
    certainty = point_sample(logits, candidates)[:, 0].abs()
    keep = int(importance_sample_ratio * num_points)
    nearest = torch.topk(-certainty, k=keep, dim=1).indices
    chosen = candidates.gather(1, nearest[..., None].expand(-1, -1, 2))
    rest = num_points - keep
    if rest > 0:
        chosen = torch.cat([chosen, torch.rand(count, rest, 2, device=logits.device)], dim=1)
    return chosen


__all__ = ["point_sample", "uncertain_points"]
