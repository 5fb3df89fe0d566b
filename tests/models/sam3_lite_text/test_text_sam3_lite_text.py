"""SAM3-LiteText student text encoder and tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from golden import FIXTURES
from visionports.core.conversion import convert_checkpoint
from visionports.core.registry import get_family
from visionports.models.sam3_lite_text import (
    Sam3LiteTextTextConfig,
    Sam3LiteTextTextModel,
    Sam3LiteTextTokenizer,
)

TEXT_CASE = FIXTURES / "sam3_lite_text" / "s0_mct_reduced_ctx16"
TOKENIZER_CASE = FIXTURES / "sam3_lite_text" / "tokenizer_bpe16e6"


@pytest.mark.parametrize(("preset", "params"), [("s0", 42_541_312), ("s1", 63_528_192), ("l", 123_800_320)])
def test_presets_match_the_released_parameter_counts(preset: str, params: int) -> None:
    with torch.device("meta"):
        model = Sam3LiteTextTextModel(Sam3LiteTextTextConfig.from_preset(preset))
    assert sum(p.numel() for p in model.parameters()) == params  # README counts (16-row position table)


def test_tokenizer_matches_the_original_ids() -> None:
    case = json.loads((TOKENIZER_CASE / "case.json").read_text())
    tokenizers = {n: Sam3LiteTextTokenizer(n) for n in (16, 32, 77)}
    for item in case["cases"]:
        for n, tokenizer in tokenizers.items():
            assert tokenizer.encode(item["prompt"])[0] == item[f"input_ids_ctx{n}"], item["prompt"]


def test_tokenizer_rules() -> None:
    tokenizer = Sam3LiteTextTokenizer(16)
    assert tokenizer.encode("")[0][:3] == [49406, 49407, 0]
    ids, truncated = tokenizer.encode("word " * 40)
    assert truncated and ids[-1] == 49407 and len(ids) == 16
    assert tokenizer.encode("hello!")[0][2] == 256 and tokenizer.encode("!!")[0][1] == 748
    batch = tokenizer(["a cat", "a dog"])
    assert batch["input_ids"].shape == (2, 16) and batch["attention_mask"][0].tolist()[:5] == [1, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="empty list"):
        tokenizer([])
    with pytest.raises(TypeError, match="must be a string"):
        tokenizer.encode(3)


def test_converted_encoder_round_trip(tmp_path: Path) -> None:
    result = convert_checkpoint(get_family("sam3_lite_text"), TEXT_CASE / "checkpoint.pt", tmp_path / "text",
                                progress=False, config_overrides={"num_attention_heads": 8})  # fmt: skip
    assert result.report.complete and result.config.variant == "s0" and result.config.layout == "mct"
    loaded = AutoModel.from_pretrained(tmp_path / "text").eval()
    assert type(loaded) is Sam3LiteTextTextModel
    ids = Sam3LiteTextTokenizer(16)(["a cat", "person wearing a red hat"])["input_ids"]
    with torch.no_grad():
        assert torch.equal(loaded(ids).last_hidden_state, result.model(ids).last_hidden_state)


def test_padding_is_attended_by_the_encoder() -> None:
    model = Sam3LiteTextTextModel(Sam3LiteTextTextConfig.from_preset("s0", hidden_size=32, num_attention_heads=4,
                                                                     vocab_size=300)).eval()  # fmt: skip
    ids = torch.tensor([[1, 5, 6, 2] + [0] * 12])
    with torch.no_grad():
        before = model(ids).last_hidden_state[0, :4]
        # change only the padding embedding (not by a constant: LayerNorm would remove it)
        model.token_embedding.weight[0] += torch.linspace(-1, 1, 32)
        after = model(ids).last_hidden_state[0, :4]
    assert (before - after).abs().max() > 1e-3  # real tokens see the padding, as in the original


def test_bad_inputs() -> None:
    model = Sam3LiteTextTextModel(Sam3LiteTextTextConfig.from_preset("s1", hidden_size=32, num_attention_heads=4,
                                                                     num_transformer_layers=1, vocab_size=300))  # fmt: skip
    with pytest.raises(ValueError, match="context_length 16"):
        model(torch.zeros(1, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer tensor"):
        model(torch.zeros(1, 16))


def test_reparameterized_encoder_matches_and_round_trips(tmp_path: Path) -> None:
    result = convert_checkpoint(get_family("sam3_lite_text"), TEXT_CASE / "checkpoint.pt", progress=False,
                                config_overrides={"num_attention_heads": 8})  # fmt: skip
    model = result.model.eval()
    ids = Sam3LiteTextTokenizer(16)(["a cat", "person wearing a red hat", "", "a dog " * 10])["input_ids"]
    with torch.no_grad():
        reference = model(ids).last_hidden_state
        model.reparameterize()
        fused = model(ids).last_hidden_state
    assert model.config.reparameterized and not hasattr(model.layers[0], "mixer_conv")
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(ids).last_hidden_state, fused)


def test_overlong_prompts_are_truncated_and_said_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="visionports.sam3_lite_text"):
        ids = Sam3LiteTextTokenizer(16)(["a cat", "a very long prompt " * 8])["input_ids"]
    assert ids[1, -1] == 49407 and (ids[1] != 0).all()
    assert len(caplog.records) == 1 and "truncated" in caplog.records[0].getMessage()


def test_released_extras_are_skipped_by_name() -> None:
    from visionports.models.sam3_lite_text.configuration_sam3_lite_text import Sam3LiteTextConfig
    from visionports.models.sam3_lite_text.convert_sam3_lite_text import key_mapping

    mapping = key_mapping(Sam3LiteTextConfig.from_preset("s0"))
    extras = {
        "backbone.vision_backbone.sam2_convs.0.0.weight": torch.ones(1),
        "tracker.maskmem_tpos_enc": torch.ones(1),
    }
    out = mapping.apply(extras)
    assert not out.tensors and set(out.skipped) == set(extras)


def test_tokenizer_saves_and_loads_with_a_model_folder(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    written = Sam3LiteTextTokenizer(32).save_pretrained(tmp_path)
    assert json.loads(Path(written[0]).read_text()) == {
        "tokenizer_class": "Sam3LiteTextTokenizer",
        "context_length": 32,
    }
    loaded = Sam3LiteTextTokenizer.from_pretrained(tmp_path)
    prompts = ["a cat", "person wearing a red hat", "a dog " * 10]
    assert loaded.context_length == 32
    assert torch.equal(loaded(prompts)["input_ids"], Sam3LiteTextTokenizer(32)(prompts)["input_ids"])
    assert Sam3LiteTextTokenizer.from_pretrained(tmp_path, context_length=16).context_length == 16
    # AutoTokenizer finds the class by the saved name once it is registered (as the family registration does)
    AutoTokenizer.register(Sam3LiteTextTextConfig, tokenizer_class=Sam3LiteTextTokenizer, exist_ok=True)
    auto = AutoTokenizer.from_pretrained(tmp_path)
    assert type(auto) is Sam3LiteTextTokenizer and auto.context_length == 32
    with pytest.raises(OSError, match="tokenizer_config.json"):
        Sam3LiteTextTokenizer.from_pretrained(tmp_path / "missing")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CLIPTokenizer"}))
    with pytest.raises(ValueError, match="CLIPTokenizer"):
        Sam3LiteTextTokenizer.from_pretrained(tmp_path)
