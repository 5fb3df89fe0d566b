"""transformers' common model tests on VidEoMT (tiny DINOv2-style and DINOv3-style backbones) and its config.

Inputs are clips ``pixel_values [B, T, 3, H, W]``; outputs keep the video layout, so hidden states and
attentions are ``[B, T, tokens, C]`` / ``[B, T, heads, tokens, tokens]`` and the mixins' ``seq_length`` is the
token count of a frame before the queries join (class token + registers + patches).
"""

from __future__ import annotations

import unittest

from visionports.models.videomt import VideomtConfig, VideomtForUniversalSegmentation

from ..test_configuration_common import ConfigTester
from ..test_modeling_common import ModelTesterMixin, floats_tensor
from .skips import NoLossSkips, VisionInputSkips


class VideomtModelTester:
    """Tiny config and inputs: 2 videos of 2 frames, 16x16 pixels, patch 4 (16 patches + 1 cls + 2 registers)."""

    def __init__(self, parent, backbone: str):
        self.parent = parent
        self.backbone = backbone
        self.batch_size = 2
        self.num_frames = 2
        self.image_size = 16
        self.patch_size = 4
        self.num_channels = 3
        self.hidden_size = 32
        self.num_hidden_layers = 2
        self.num_attention_heads = 4
        self.num_register_tokens = 2
        self.num_queries = 5
        self.num_labels = 3
        self.is_training = True
        self.seq_length = 1 + self.num_register_tokens + (self.image_size // self.patch_size) ** 2

    def get_config(self) -> VideomtConfig:
        extra = (
            {"position_grid_size": 4}
            if self.backbone == "dinov2"
            else {"position_grid_size": None, "layer_norm_eps": 1e-5}
        )
        return VideomtConfig(
            backbone_type=self.backbone,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=37,
            patch_size=self.patch_size,
            num_register_tokens=self.num_register_tokens,
            num_queries=self.num_queries,
            segmenter_blocks=[1],
            id2label={i: str(i) for i in range(self.num_labels)},
            **extra,
        )

    def prepare_config_and_inputs_for_common(self):
        shape = [self.batch_size, self.num_frames, self.num_channels, self.image_size, self.image_size]
        return self.get_config(), {"pixel_values": floats_tensor(shape)}


class _VideomtCommonTests(VisionInputSkips, NoLossSkips, ModelTesterMixin):
    all_model_classes = (VideomtForUniversalSegmentation,)
    pipeline_model_mapping = {}
    test_resize_embeddings = False
    test_torch_exportable = False
    has_attentions = True
    backbone = "dinov2"

    def setUp(self):
        self.model_tester = VideomtModelTester(self, self.backbone)
        self.config_tester = ConfigTester(self, config_class=VideomtConfig, has_text_modality=False)

    def test_config(self):
        self.config_tester.run_common_tests()


class VideomtDinov2CommonTest(_VideomtCommonTests, unittest.TestCase):
    backbone = "dinov2"


class VideomtDinov3CommonTest(_VideomtCommonTests, unittest.TestCase):
    backbone = "dinov3"
