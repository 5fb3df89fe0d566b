"""Shared test helpers: golden-case discovery and tiny model configurations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


def golden_cases(model: str) -> list[Path]:
    """Case folders under tests/fixtures/<model>/ and, when set, $VISIONPORTS_FIXTURES/<model>/."""
    roots = [FIXTURES / model]
    extra = os.environ.get("VISIONPORTS_FIXTURES")
    if extra:
        roots.append(Path(extra) / model)
    cases = []
    for root in roots:
        if root.is_dir():
            cases += sorted(p for p in root.iterdir() if p.is_dir())
    return cases


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
