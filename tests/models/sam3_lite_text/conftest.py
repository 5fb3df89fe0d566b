"""The tiny SAM3-LiteText golden detector converted once per session with `visionports convert` (read only)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from golden import FIXTURES
from visionports.cli import main

DETECTOR_CASE = FIXTURES / "sam3_lite_text" / "tiny_detector_s0_mct_seed5"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sam3") / "model"
    result = CliRunner().invoke(main, ["convert", "sam3-lite-text", str(DETECTOR_CASE / "checkpoint.pt"), str(out),
                                       "--set", "num_attention_heads=8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "missing 0 / unexpected 0 / mis-shaped 0" in result.output
    return out
