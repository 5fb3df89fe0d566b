"""Shared test setup: a fixed seed, and models converted once per session from the golden checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def convert(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``convert(family, checkpoint, *options)``: the folder `visionports convert` writes."""
    from visionports.cli import main

    def run(family: str, checkpoint: Path, *options: str) -> Path:
        out = tmp_path_factory.mktemp(family) / "model"
        result = CliRunner().invoke(main, ["convert", family, str(checkpoint), str(out), *options])
        assert result.exit_code == 0, result.output
        return out

    return run
