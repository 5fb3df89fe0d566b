"""transformers' common model tests on the SAM3-LiteText student text encoder (S0 "mct" layout: RepMixer,
Transformer blocks, RepMixer; S1 / MobileCLIP2-L "base" layout: Transformer blocks only) and its configuration.

Conventions the mixins read from the tester: ``hidden_states`` counts every block plus the embeddings
(``expected_num_hidden_layers``), ``attentions`` holds one entry per Transformer block (``num_hidden_layers``
here; RepMixer blocks have no attention).

The full model (``Sam3LiteTextModel``: text encoder + tiny SAM3 detector, mct and base text layouts) is a
composite model: ``text_config`` is a registered sub-config, the detector widths a dict. Its outputs name every
part's hidden states and attentions, so the mixin tests reading ``hidden_states`` / ``attentions`` are replaced by
tests over every part.
"""

from __future__ import annotations

import copy
import unittest

import torch

from visionports.models.sam3_lite_text import (
    Sam3LiteTextConfig,
    Sam3LiteTextModel,
    Sam3LiteTextTextConfig,
    Sam3LiteTextTextModel,
)

from ..test_configuration_common import ConfigTester
from ..test_modeling_common import ModelTesterMixin, floats_tensor, ids_tensor

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


# tiny SAM3 detector (the original builder's names): 112 px images, 8x8 ViT grid, 2 ViT blocks (windowed, global)
DETECTOR = dict(d_model=32, ffn_dim=64, n_heads=8, num_queries=20, image_size=112, patch_size=14,
                pretrain_img_size=56, vit_embed_dim=32, vit_depth=2, vit_heads=2, vit_window_size=4,
                vit_global_att_blocks=[1], vit_mlp_ratio=4.625)  # fmt: skip
# transformers' SAM3 DETR encoder / decoder depth (not one of the original builder's detector widths)
DETR_LAYERS = 6
TEXT_FEATURES = (
    "get_text_features returns the text encoder's own output, whose last_hidden_state is the per-token features "
    "projected to the detector's d_model (what forward's text_outputs reads; the encoder width is in "
    "encoder_last_hidden_state, the CLIP embedding in pooled_output); no pooler_output"
)


class Sam3LiteTextModelTester:
    """Tiny full model: the tiny text encoder + the tiny SAM3 detector; ``pixel_values [2, 3, 112, 112]`` and
    ``input_ids [2, 7]`` (image b with prompt b: two queries).

    ``num_hidden_layers`` / ``expected_num_hidden_layers`` describe the ViT trunk (``get_image_features``);
    ``text_model_tester`` the text encoder (``get_text_features``)."""

    def __init__(self, parent, layout: str):
        self.parent = parent
        self.layout = layout
        self.batch_size = 2
        self.image_size = DETECTOR["image_size"]
        self.text_model_tester = Sam3LiteTextTextModelTester(parent, layout)
        self.num_hidden_layers = DETECTOR["vit_depth"]
        self.expected_num_hidden_layers = DETECTOR["vit_depth"] + 1
        self.is_training = True

    def get_config(self) -> Sam3LiteTextConfig:
        text = self.text_model_tester.get_config()
        text.projection_dim = DETECTOR["d_model"]
        return Sam3LiteTextConfig(text_config=text, detector=dict(DETECTOR))

    def prepare_config_and_inputs_for_common(self):
        pixels = floats_tensor([self.batch_size, 3, self.image_size, self.image_size])
        ids = ids_tensor([self.batch_size, CONTEXT], VOCAB)
        return self.get_config(), {"pixel_values": pixels, "input_ids": ids}


class _FullCommonTests(ModelTesterMixin):
    """The composite output has no single ``hidden_states`` / ``attentions``: it names every part's
    (``text_``, ``vision_``, ``encoder_``, ``decoder_``), so the three tests that read those two names are
    replaced by ones that check every part (counts from the configuration, shapes, gradients)."""

    all_model_classes = (Sam3LiteTextModel,)
    pipeline_model_mapping = {}
    additional_model_inputs = ["input_ids"]
    _is_composite = True  # text_config sub-config + the detector
    has_attentions = True
    test_resize_embeddings = True
    # the ViT width is the detector's vit_embed_dim (no vision_config for the mixin to read); the shape
    # [B, grid², vit_embed_dim] is asserted in tests/models/sam3_lite_text/test_conventions_sam3_lite_text.py
    skip_test_image_features_output_shape = True
    layout = "mct"

    def setUp(self):
        self.model_tester = Sam3LiteTextModelTester(self, self.layout)
        self.config_tester = ConfigTester(
            self, config_class=Sam3LiteTextConfig, has_text_modality=False, detector=dict(DETECTOR)
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def _counts(self, config) -> dict[str, int]:
        text = config.text_config
        return {
            "text_hidden_states": text.num_hidden_layers + 1,
            "vision_hidden_states": DETECTOR["vit_depth"] + 1,
            "encoder_hidden_states": DETR_LAYERS + 1,
            "text_attentions": text.num_transformer_layers,
            "vision_attentions": DETECTOR["vit_depth"],
            "encoder_attentions": 2 * DETR_LAYERS,  # self-attention, cross-attention to the prompt
            # self-attention, cross-attention to the prompt and to the image
            "decoder_attentions": 3 * DETR_LAYERS,
        }

    def _run(self, config, inputs, **flags):
        model = Sam3LiteTextModel._from_config(config, attn_implementation="eager").eval()
        with torch.no_grad():
            return model(**inputs, **flags)

    def test_hidden_states_output(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        batch, grid = self.model_tester.batch_size, DETECTOR["image_size"] // DETECTOR["patch_size"]
        width = self.model_tester.text_model_tester.hidden_size
        names = [name for name in self._counts(config) if name.endswith("hidden_states")]
        self.assertTrue(all(getattr(self._run(config, inputs), name) is None for name in names))
        config.output_hidden_states = True
        for out in (self._run(copy.deepcopy(config), inputs), self._run(self.model_tester.get_config(), inputs,
                                                                        output_hidden_states=True)):  # fmt: skip
            for name in names:
                self.assertEqual(len(getattr(out, name)), self._counts(config)[name], name)
            self.assertEqual(out.text_hidden_states[0].shape, (batch, CONTEXT, width))
            self.assertEqual(
                out.vision_hidden_states[-1].shape, (batch, grid, grid, DETECTOR["vit_embed_dim"])
            )
            self.assertEqual(out.encoder_hidden_states[-1].shape, (batch, grid * grid, DETECTOR["d_model"]))

    def test_attention_outputs(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        batch, grid = self.model_tester.batch_size, DETECTOR["image_size"] // DETECTOR["patch_size"]
        names = [name for name in self._counts(config) if name.endswith("attentions")]
        self.assertTrue(all(getattr(self._run(config, inputs), name) is None for name in names))
        config.output_attentions = True
        for out in (self._run(copy.deepcopy(config), inputs), self._run(self.model_tester.get_config(), inputs,
                                                                        output_attentions=True)):  # fmt: skip
            for name in names:
                self.assertEqual(len(getattr(out, name)), self._counts(config)[name], name)
            self.assertEqual(out.text_attentions[0].shape, (batch, 4, CONTEXT, CONTEXT))
            tokens, queries = grid * grid, DETECTOR["num_queries"] + 1  # + the presence token
            self.assertEqual(out.vision_attentions[-1].shape, (batch, DETECTOR["vit_heads"], tokens, tokens))
            self.assertEqual(out.encoder_attentions[0].shape, (batch, DETECTOR["n_heads"], tokens, tokens))
            self.assertEqual(out.decoder_attentions[0].shape, (batch, DETECTOR["n_heads"], queries, queries))
            for attention in out.text_attentions + out.encoder_attentions[::2]:  # softmax rows
                torch.testing.assert_close(attention.sum(-1), torch.ones_like(attention.sum(-1)))

    def test_retain_grad_hidden_states_attentions(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        config.output_hidden_states = config.output_attentions = True
        model = Sam3LiteTextModel._from_config(config, attn_implementation="eager")
        out = model(**inputs)
        kept = [out[name][0] for name in self._counts(config)]
        for tensor in kept:
            tensor.retain_grad()
        (out.pred_logits.sum() + out.pred_masks.sum()).backward()
        for name, tensor in zip(self._counts(config), kept, strict=True):
            self.assertIsNotNone(tensor.grad, name)

    @unittest.skip(reason=TEXT_FEATURES)
    def test_get_text_features_output_0(self):
        pass

    @unittest.skip(reason=TEXT_FEATURES)
    def test_get_text_features_output_2(self):
        pass

    def test_model_outputs_equivalence(self):
        """``return_dict=False`` gives ``to_tuple()`` of the dict output, nested outputs included, every tensor
        equal (the mixin's version cannot report on the detector's boolean ``prompt_mask``)."""

        def check(a, b):
            if isinstance(a, dict):
                self.assertEqual(list(a), list(b))
                a, b = tuple(a.values()), tuple(b.values())
            if isinstance(a, (tuple, list)):
                self.assertEqual(len(a), len(b))
                for x, y in zip(a, b, strict=True):
                    check(x, y)
            else:
                self.assertTrue(torch.equal(a, b))

        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = Sam3LiteTextModel(config).eval()
        for flags in ({}, {"output_hidden_states": True}, {"output_attentions": True}):
            with torch.no_grad():
                as_tuple = model(**inputs, return_dict=False, **flags)
                as_dict = model(**inputs, return_dict=True, **flags)
            self.assertIsInstance(as_tuple, tuple)
            check(as_tuple, as_dict.to_tuple())

    @unittest.skip(reason=NO_INPUTS_EMBEDS)
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason=NO_INPUTS_EMBEDS)
    def test_inputs_embeds_matches_input_ids(self):
        pass

    @unittest.skip(reason=NO_LOSS)
    def test_training(self):
        pass


class Sam3LiteTextModelMctCommonTest(_FullCommonTests, unittest.TestCase):
    layout = "mct"

    @unittest.skip(
        reason="the mixin expects one text attention per hidden-state layer; RepMixer blocks have none (S0: hidden "
        "states for every block, attentions for the Transformer blocks only); run by the base-layout tester"
    )
    def test_get_text_features_attentions(self):
        pass


class Sam3LiteTextModelBaseCommonTest(_FullCommonTests, unittest.TestCase):
    layout = "base"
