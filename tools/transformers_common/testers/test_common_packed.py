"""transformers' common model tests on the packed encoders (AIMv2 native, SigLIP2 naflex, DINOv3).

Inputs are packed: ``hidden_states [N, p*p*C]`` (the patches of three images of different grids, one after
the other) and ``grid_thw [3, 3]``. There is no batch dimension: outputs are ``[N_out, hidden]``, so the
mixins' ``seq_length`` is the number of packed rows and their ``batch_size`` the number of images.
"""

from __future__ import annotations

import unittest

import torch
from parameterized import parameterized
from torch import nn
from transformers import Aimv2VisionConfig, DINOv3ViTConfig, Siglip2VisionConfig

from visionports import Aimv2PackedVisionModel, Dinov3PackedVisionModel, Siglip2PackedVisionModel

from ..test_configuration_common import ConfigTester
from ..test_modeling_common import (
    TEST_EAGER_MATCHES_SDPA_INFERENCE_PARAMETERIZATION,
    ModelTesterMixin,
    floats_tensor,
)
from .skips import NoLossSkips

GRIDS = [(2, 3), (3, 2), (1, 4)]  # non-square both ways, and 1 x n
PATCH = 2
CHANNELS = 3
NO_BATCH = "packed inputs have no batch dimension (images are concatenated along the rows)"


class PackedModelTester:
    """Tiny config + packed inputs of three images; ``prefix`` rows per image are added by the model."""

    def __init__(self, parent, config_class, extra: dict, prefix: int = 0):
        self.parent = parent
        self.config_class = config_class
        self.extra = extra
        self.batch_size = len(GRIDS)
        self.hidden_size = 32
        self.num_hidden_layers = 2
        self.num_attention_heads = 4
        self.is_training = True
        self.seq_length = sum(prefix + h * w for h, w in GRIDS)

    def get_config(self):
        return self.config_class(
            hidden_size=self.hidden_size,
            intermediate_size=37,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_channels=CHANNELS,
            patch_size=PATCH,
            **self.extra,
        )

    def prepare_config_and_inputs_for_common(self):
        rows = sum(h * w for h, w in GRIDS)
        inputs = {
            "hidden_states": floats_tensor([rows, PATCH * PATCH * CHANNELS]),
            "grid_thw": torch.tensor([(1, h, w) for h, w in GRIDS], dtype=torch.int64),
        }
        return self.get_config(), inputs


class _PackedCommonTests(NoLossSkips, ModelTesterMixin):
    """Shared skips (reasons of the kind upstream states for vision encoders without token ids or batches)."""

    test_resize_embeddings = False
    test_torch_exportable = False
    has_attentions = True
    _is_composite = False
    test_resize_embeddings = False
    test_torch_exportable = False
    has_attentions = True

    @unittest.skip(reason=NO_BATCH + "; an image alone equals it inside a pack: tests/models/packed")
    def test_batching_equivalence(self):
        pass

    @parameterized.expand(TEST_EAGER_MATCHES_SDPA_INFERENCE_PARAMETERIZATION)
    @unittest.skip(
        reason=NO_BATCH + ": the test pads a batch of the main input with a mask; eager == sdpa on packs is "
        "tested in tests/models/packed"
    )
    def test_eager_matches_sdpa_inference(self, *args):
        pass

    @unittest.skip(
        reason="a folder without the encoder's weights is refused (ValueError) instead of loaded with random "
        "weights and a warning; the refusal is tested in tests/models/packed"
    )
    def test_model_weights_reload_no_missing_tied_weights(self):
        pass

    def test_model_get_set_embeddings(self):
        # vision encoder: the input embedding is the patch projection (a Conv2d or Linear), not an nn.Embedding
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            embedding = model.get_input_embeddings()
            self.assertIsInstance(embedding, (nn.Conv2d, nn.Linear))
            self.assertEqual(embedding.weight.shape[0], self.model_tester.hidden_size)
            self.assertIsNone(model.get_output_embeddings())


class Aimv2PackedModelTest(_PackedCommonTests, unittest.TestCase):
    all_model_classes = (Aimv2PackedVisionModel,)

    def setUp(self):
        extra = {"image_size": 8, "is_native": True, "use_head": True}
        self.model_tester = PackedModelTester(self, Aimv2VisionConfig, extra)
        self.config_tester = ConfigTester(self, config_class=Aimv2VisionConfig, has_text_modality=False)

    def test_config(self):
        self.config_tester.run_common_tests()


class Siglip2PackedModelTest(_PackedCommonTests, unittest.TestCase):
    all_model_classes = (Siglip2PackedVisionModel,)

    def setUp(self):
        self.model_tester = PackedModelTester(self, Siglip2VisionConfig, {"num_patches": 9})
        self.config_tester = ConfigTester(self, config_class=Siglip2VisionConfig, has_text_modality=False)

    def test_config(self):
        self.config_tester.run_common_tests()


class Dinov3PackedModelTest(_PackedCommonTests, unittest.TestCase):
    all_model_classes = (Dinov3PackedVisionModel,)

    def setUp(self):
        extra = {"image_size": 8, "num_register_tokens": 2, "layerscale_value": 0.5}
        self.model_tester = PackedModelTester(self, DINOv3ViTConfig, extra, prefix=3)
        self.config_tester = ConfigTester(self, config_class=DINOv3ViTConfig, has_text_modality=False)

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(
        reason="base_model_prefix 'model' is upstream DINOv3ViTModel's (its key renaming needs it) and names the "
        "layer container, which here is a plain nn.Module without save_pretrained"
    )
    def test_correct_missing_keys(self):
        pass
