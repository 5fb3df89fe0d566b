"""transformers' common model tests on the SAM3-LiteText student text encoder (S0 "mct" layout: RepMixer,
Transformer blocks, RepMixer; S1 / MobileCLIP2-L "base" layout: Transformer blocks only) and its configuration.

Conventions the mixins read from the tester: ``hidden_states`` counts every block plus the embeddings
(``expected_num_hidden_layers``), ``attentions`` holds one entry per Transformer block (``num_hidden_layers``
here; RepMixer blocks have no attention).

The full model (``Sam3LiteTextModel``) has no tester yet: its ``text_config`` is a plain dict, not a registered
sub-config, which the mixins' composite-model tests require; its conventions are tested in
tests/models/sam3_lite_text/test_conventions_sam3_lite_text.py.
"""

from __future__ import annotations

import unittest

from visionports.models.sam3_lite_text import Sam3LiteTextTextConfig, Sam3LiteTextTextModel

from ..test_configuration_common import ConfigTester
from ..test_modeling_common import ModelTesterMixin, ids_tensor

NO_INPUTS_EMBEDS = (
    "the SAM3-LiteText text encoder reads token ids only (the end token is found by argmax over the ids, as in "
    "the original); no inputs_embeds"
)
NO_LOSS = (
    "SAM3-LiteText computes no training loss (the port covers inference); gradients under gradient "
    "checkpointing are tested in tests/models/sam3_lite_text"
)
NOT_GENERATIVE = "the text encoder has no language-model head: nothing to tie"

CONTEXT = 7
VOCAB = 99


class Sam3LiteTextTextModelTester:
    """Tiny encoder (width 32, 4 heads, 2 Transformer blocks, context 7, vocabulary 99); ``input_ids [2, 7]``."""

    def __init__(self, parent, layout: str):
        self.parent = parent
        self.layout = layout
        self.batch_size = 2
        self.seq_length = CONTEXT
        self.vocab_size = VOCAB
        self.hidden_size = 32
        self.num_attention_heads = 4
        self.num_hidden_layers = 2  # Transformer blocks: one attention each
        self.expected_num_hidden_layers = self.get_config().num_hidden_layers + 1  # every block + embeddings
        self.is_training = True

    def get_config(self) -> Sam3LiteTextTextConfig:
        return Sam3LiteTextTextConfig(
            layout=self.layout, vocab_size=VOCAB, hidden_size=self.hidden_size,
            num_attention_heads=self.num_attention_heads, num_transformer_layers=self.num_hidden_layers,
            context_length=CONTEXT, projection_dim=16, repmixer_kernel_size=3,
        )  # fmt: skip

    def prepare_config_and_inputs_for_common(self):
        return self.get_config(), {"input_ids": ids_tensor([self.batch_size, CONTEXT], VOCAB)}


class _TextCommonTests(ModelTesterMixin):
    all_model_classes = (Sam3LiteTextTextModel,)
    pipeline_model_mapping = {}
    test_resize_embeddings = True
    test_torch_exportable = True
    test_can_init_all_missing_weights_before_2023 = True
    has_attentions = True
    layout = "mct"

    def setUp(self):
        self.model_tester = Sam3LiteTextTextModelTester(self, self.layout)
        self.config_tester = ConfigTester(
            self, config_class=Sam3LiteTextTextConfig, hidden_size=32, layout=self.layout
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(reason=NO_INPUTS_EMBEDS)
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason=NO_INPUTS_EMBEDS)
    def test_inputs_embeds_matches_input_ids(self):
        pass

    @unittest.skip(reason=NOT_GENERATIVE)
    def test_tie_model_weights(self):
        pass

    @unittest.skip(reason=NO_LOSS)
    def test_training(self):
        pass

    @unittest.skip(
        reason="the default attention is eager: it reproduces the original's float32 softmax; sdpa is used when "
        "requested (tests/models/sam3_lite_text/test_conventions_sam3_lite_text.py)"
    )
    def test_sdpa_can_dispatch_non_composite_models(self):
        pass


class Sam3LiteTextTextMctCommonTest(_TextCommonTests, unittest.TestCase):
    layout = "mct"


class Sam3LiteTextTextBaseCommonTest(_TextCommonTests, unittest.TestCase):
    layout = "base"
