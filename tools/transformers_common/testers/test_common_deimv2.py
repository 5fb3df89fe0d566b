"""transformers' common model tests on DEIMv2 (a tiny HGNetV2 / lite-encoder detector and a tiny ViT + STA /
hybrid-encoder detector), and its configuration.

``ImageProcessingTestMixin`` is not used: it targets the torchvision/PIL backend classes of transformers 5
image processors (``image_processing_classes``, fast/slow equivalence), which ``Deimv2ImageProcessor`` (one
PIL implementation, as the original's evaluation pipeline) does not have; its standard arguments are tested
in tests/models/deimv2.
"""

from __future__ import annotations

import unittest

import torch

from visionports import Deimv2Config
from visionports.models.deimv2.modeling_deimv2 import Deimv2ForObjectDetection, Deimv2Model

from ..test_configuration_common import ConfigTester
from ..test_modeling_common import ModelTesterMixin, floats_tensor
from .skips import VisionInputSkips

IMAGE = 64

_VIT = dict(vit_hidden_size=32, vit_num_heads=2, vit_ffn_hidden_size=37, vit_depth=3, vit_out_indices=[0, 1, 2],
            sta_inplanes=4, backbone_hidden_dim=32, encoder_in_channels=[32, 32, 32], encoder_hidden_dim=32,
            encoder_ffn_dim=37, encoder_attention_heads=4)  # fmt: skip
_COMMON = dict(d_model=32, decoder_ffn_dim=37, decoder_layers=2, decoder_attention_heads=4, num_queries=8,
               num_denoising=4, eval_image_size=[IMAGE, IMAGE], num_labels=5)  # fmt: skip


class Deimv2ModelTester:
    """Tiny configuration and inputs ``pixel_values [B, 3, 64, 64]`` (+ detection targets as labels)."""

    def __init__(self, parent, preset: str, extra: dict):
        self.parent = parent
        self.preset, self.extra = preset, extra
        self.batch_size = 2
        self.num_channels = 3
        self.image_size = IMAGE
        self.is_training = True
        self.hidden_size = 32
        self.num_hidden_layers = 2
        self.num_attention_heads = 4
        self.num_labels = 5

    def get_config(self) -> Deimv2Config:
        return Deimv2Config.from_preset(self.preset, **_COMMON, **self.extra)

    def prepare_config_and_inputs_for_common(self):
        pixel_values = floats_tensor([self.batch_size, 3, IMAGE, IMAGE])
        return self.get_config(), {"pixel_values": pixel_values}

    def labels(self, device) -> list[dict]:
        generator = torch.Generator().manual_seed(0)
        return [
            {
                "class_labels": torch.randint(0, self.num_labels, (2,), generator=generator).to(device),
                "boxes": (torch.rand(2, 4, generator=generator) * 0.4 + 0.2).to(device),
            }
            for _ in range(self.batch_size)
        ]


class _Deimv2CommonTests(VisionInputSkips, ModelTesterMixin):
    all_model_classes = (Deimv2Model, Deimv2ForObjectDetection)
    pipeline_model_mapping = {}
    is_encoder_decoder = True
    test_resize_embeddings = False
    test_torch_exportable = False
    test_missing_keys = False
    has_attentions = True
    preset, extra = "atto", {}

    def setUp(self):
        self.model_tester = Deimv2ModelTester(self, self.preset, self.extra)
        self.config_tester = ConfigTester(self, config_class=Deimv2Config, has_text_modality=False)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs = dict(inputs_dict)
        if return_labels and model_class is Deimv2ForObjectDetection:
            inputs["labels"] = self.model_tester.labels(inputs["pixel_values"].device)
        return inputs

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_attention_outputs(self):
        """Our convention: encoder_attentions (AIFI), decoder_attentions (query self-attention), eager path."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class._from_config(config, attn_implementation="sdpa").eval()
            with torch.no_grad():
                out = model(**inputs, output_attentions=True)
            queries, heads = config.num_queries, config.decoder_attention_heads
            self.assertEqual(len(out.decoder_attentions), config.decoder_layers)
            self.assertEqual(out.decoder_attentions[0].shape, (2, heads, queries, queries))
            self.assertEqual(len(out.encoder_attentions), len(config.encoder_aifi_indices) * config.encoder_layers
                             if config.encoder_type == "hybrid" else 0)  # fmt: skip

    def test_hidden_states_output(self):
        """decoder_hidden_states: initial queries + one per layer; encoder/backbone: one map per level."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config).eval()
            with torch.no_grad():
                out = model(**inputs, output_hidden_states=True)
            self.assertEqual(len(out.decoder_hidden_states), config.decoder_layers + 1)
            self.assertEqual(out.decoder_hidden_states[0].shape, (2, config.num_queries, config.d_model))
            self.assertEqual(len(out.encoder_hidden_states), config.num_feature_levels)

    @unittest.skip(
        reason="the initial decoder queries are detached from the encoder, as in the original (no grad)"
    )
    def test_retain_grad_hidden_states_attentions(self):
        pass

    @unittest.skip(
        reason="the default attention is eager: it reproduces the original's nn.MultiheadAttention bit for bit; "
        "sdpa is used when requested (tests/models/deimv2/test_conventions_deimv2.py)"
    )
    def test_sdpa_can_dispatch_non_composite_models(self):
        pass


class Deimv2HGNetCommonTest(_Deimv2CommonTests, unittest.TestCase):
    preset, extra = "atto", {"encoder_hidden_dim": 32}


class Deimv2ViTCommonTest(_Deimv2CommonTests, unittest.TestCase):
    preset, extra = "s", _VIT
