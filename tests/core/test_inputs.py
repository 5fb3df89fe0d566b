from __future__ import annotations

import pytest
import torch

from visionports.core.inputs import check_pixel_dtype


def test_check_pixel_dtype_accepts_the_model_dtype_and_names_the_mismatch() -> None:
    model = torch.nn.Linear(2, 2).to(torch.float64)
    check_pixel_dtype(torch.zeros(1, 3, 4, 4, dtype=torch.float64), model)
    with pytest.raises(TypeError, match="floating tensor"):
        check_pixel_dtype(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), model)
    with pytest.raises(TypeError, match="dtype torch.float32 but the model is torch.float64"):
        check_pixel_dtype(torch.zeros(1, 3, 4, 4), model)
