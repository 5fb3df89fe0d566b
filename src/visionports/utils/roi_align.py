"""ROI-align without torchvision, with the semantics of ``torchvision.ops.roi_align``.

Every output bin averages a ``grid_h × grid_w`` set of bilinear samples (``sampling_ratio`` per side, or
``ceil(roi_size / output_size)`` when it is not positive). Bilinear sampling is separable, so each box's samples
become two small interpolation matrices, ``Wy`` ``[out_h, H]`` and ``Wx`` ``[out_w, W]``, and the output is
``Wy · F · Wxᵀ`` per channel. That costs ``O(out · (H + W))`` per box whatever the grid, and the border rules
are torchvision's: a sample more than one pixel outside the map contributes zero but still counts in the mean,
coordinates in ``[-1, 0]`` clamp to 0, and samples past the last row or column read it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MAX_SAMPLES_PER_BIN_SIDE = 4096
"""More samples per bin side than any box inside a feature map of this size needs: a bound on the work."""


def roi_align(
    features: torch.Tensor,
    boxes: torch.Tensor | Sequence[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """``[K, C, out_h, out_w]`` features pooled from ``features`` ``[N, C, H, W]`` inside ``boxes``.

    ``boxes``: ``[K, 5]`` rows ``(image index, x1, y1, x2, y2)``, or one ``[L_n, 4]`` tensor of ``x1, y1, x2, y2``
    per image (as torchvision takes them); coordinates in input pixels, multiplied by ``spatial_scale``.
    """
    rois = _as_rois(boxes, features)
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if features.ndim != 4:
        raise ValueError(f"features must be [N, C, H, W], got {list(features.shape)}")
    if not torch.isfinite(rois).all():
        raise ValueError("boxes must be finite")
    if len(rois) == 0:
        return features.new_zeros(0, features.shape[1], out_h, out_w)
    index = rois[:, 0].long()
    if index.min() < 0 or index.max() >= features.shape[0]:
        raise ValueError(
            f"box image indices must lie in [0, {features.shape[0]}), got {index.unique().tolist()}"
        )
    offset = 0.5 if aligned else 0.0
    coords = rois[:, 1:].to(torch.float64 if features.dtype == torch.float64 else torch.float32)
    coords = coords * spatial_scale - offset
    weights_y = _axis_weights(coords[:, 1], coords[:, 3], out_h, features.shape[2], sampling_ratio, aligned)
    weights_x = _axis_weights(coords[:, 0], coords[:, 2], out_w, features.shape[3], sampling_ratio, aligned)
    counts = (weights_y.samples * weights_x.samples).clamp(min=1).to(coords.dtype)
    rows = torch.einsum("kph,kchw->kcpw", weights_y.matrix, features[index].to(coords.dtype))
    pooled = torch.einsum("kcpw,kqw->kcpq", rows, weights_x.matrix) / counts[:, None, None, None]
    return pooled.to(features.dtype)


class _AxisWeights:
    """Interpolation matrix ``[K, out, size]`` (sums of bilinear weights) and samples per bin ``[K]`` of one axis."""

    def __init__(self, matrix: torch.Tensor, samples: torch.Tensor):
        self.matrix, self.samples = matrix, samples


def _axis_weights(
    start: torch.Tensor, end: torch.Tensor, bins: int, size: int, sampling_ratio: int, aligned: bool
) -> _AxisWeights:
    """One axis of every box: where its samples fall and how they split between the two nearest pixels."""
    length = end - start
    if not aligned:
        length = length.clamp(min=1.0)
    bin_size = length / bins
    if sampling_ratio > 0:
        samples = torch.full_like(start, sampling_ratio, dtype=torch.long)
    else:
        samples = torch.ceil(length / bins).long()
    grid = int(samples.max()) if len(samples) else 0
    if grid > MAX_SAMPLES_PER_BIN_SIDE:
        raise ValueError(
            f"a box spans {grid} samples per bin side (more than {MAX_SAMPLES_PER_BIN_SIDE}): boxes must lie near "
            "the feature map"
        )
    step = torch.arange(max(grid, 1), dtype=start.dtype, device=start.device)
    bin_index = torch.arange(bins, dtype=start.dtype, device=start.device)
    # positions [K, bins, grid], in torchvision's order of operations
    positions = (
        start[:, None, None]
        + bin_index[None, :, None] * bin_size[:, None, None]
        + (step[None, None, :] + 0.5)
        * bin_size[:, None, None]
        / samples[:, None, None].clamp(min=1).to(start.dtype)
    )
    used = step[None, None, :] < samples[:, None, None]
    inside = used & (positions >= -1.0) & (positions <= size)
    positions = torch.where(inside, positions, 0.0).clamp(min=0.0)
    low = positions.long().clamp(max=size - 1)
    last = low >= size - 1
    positions = torch.where(last, low.to(positions.dtype), positions)
    high = torch.where(last, low, low + 1)
    frac = positions - low.to(positions.dtype)
    zero = torch.zeros((), dtype=positions.dtype, device=positions.device)
    matrix = torch.zeros(len(start), bins, size, dtype=start.dtype, device=start.device)
    matrix.scatter_add_(2, low, torch.where(inside, 1.0 - frac, zero))
    matrix.scatter_add_(2, high, torch.where(inside, frac, zero))
    return _AxisWeights(matrix, samples)


def _as_rois(boxes: torch.Tensor | Sequence[torch.Tensor], features: torch.Tensor) -> torch.Tensor:
    """``[K, 5]`` rows ``(image index, x1, y1, x2, y2)`` from either box layout."""
    if isinstance(boxes, torch.Tensor):
        if boxes.ndim != 2 or boxes.shape[1] != 5:
            raise ValueError(f"boxes as one tensor must be [K, 5] (image index, x1, y1, x2, y2), got "
                             f"{list(boxes.shape)}")  # fmt: skip
        return boxes
    rows = []
    for image, per_image in enumerate(boxes):
        if per_image.ndim != 2 or per_image.shape[1] != 4:
            raise ValueError(f"boxes[{image}] must be [L, 4] (x1, y1, x2, y2), got {list(per_image.shape)}")
        index = torch.full((len(per_image), 1), image, dtype=per_image.dtype, device=per_image.device)
        rows.append(torch.cat([index, per_image], dim=1))
    if not rows:
        return features.new_zeros(0, 5)
    return torch.cat(rows)
