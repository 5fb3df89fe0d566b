"""A converted SAM3-LiteText folder carries its tokenizer: AutoTokenizer loads it, with the encoder's context."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from transformers import AutoTokenizer

from golden import FIXTURES
from visionports.cli import main
from visionports.models.sam3_lite_text import Sam3LiteTextTokenizer


@pytest.mark.parametrize(
    ("case", "extra"),
    [("s0_mct_reduced_ctx16", []), ("tiny_detector_s0_mct_seed5", ["--set", "num_attention_heads=8"])],
)
def test_converted_folder_loads_its_tokenizer(case: str, extra: list[str], tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = CliRunner().invoke(
        main,
        [
            "convert",
            "sam3-lite-text",
            str(FIXTURES / "sam3_lite_text" / case / "checkpoint.pt"),
            str(out),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert isinstance(tokenizer, Sam3LiteTextTokenizer) and tokenizer.context_length == 16
    expected = Sam3LiteTextTokenizer(16)(["a cat", "person wearing a red hat"])["input_ids"]
    assert tokenizer(["a cat", "person wearing a red hat"])["input_ids"].tolist() == expected.tolist()
