"""Minimum-cost one-to-one assignment (the Hungarian matching of set-prediction losses), through scipy."""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import MissingExtraError


def linear_sum_assignment(cost: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the minimum-cost assignment of a ``[rows, columns]`` cost matrix (scipy's solver)."""
    try:
        from scipy.optimize import linear_sum_assignment as solve
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            "training needs scipy for Hungarian matching: pip install 'visionports[train]'"
        ) from error
    return solve(cost.detach().cpu())


__all__ = ["linear_sum_assignment"]
