"""Models converted once per session from the golden checkpoints, for the task (CLI verb) tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from visionports.cli import main


@pytest.fixture(scope="session")
def convert(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``convert(family, checkpoint, *options)``: the folder `visionports convert` writes."""

    def run(family: str, checkpoint: Path, *options: str) -> Path:
        out = tmp_path_factory.mktemp(family) / "model"
        result = CliRunner().invoke(main, ["convert", family, str(checkpoint), str(out), *options])
        assert result.exit_code == 0, result.output
        return out

    return run
