"""Common tests our testers skip, shared, each with the reason upstream states for models of the same kind."""

from __future__ import annotations

import unittest

NO_TOKENS = "a vision model: no token ids, so no inputs_embeds and no token embeddings to swap, resize or tie"
NO_LOSS = (
    "computes no training loss (upstream skips these for models without one); gradients under gradient "
    "checkpointing are compared in our own tests (tests/models/<family>/test_conventions_*.py)"
)


class VisionInputSkips:
    """Skips of the token-embedding tests for models that read pixels."""

    @unittest.skip(reason=NO_TOKENS)
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason=NO_TOKENS)
    def test_inputs_embeds_matches_input_ids(self):
        pass

    @unittest.skip(reason=NO_TOKENS)
    def test_model_get_set_embeddings(self):
        pass

    @unittest.skip(reason=NO_TOKENS)
    def test_tie_model_weights(self):
        pass


class NoLossSkips:
    """Skips of the training tests for models that compute no loss."""

    @unittest.skip(reason=NO_LOSS)
    def test_training(self):
        pass

    @unittest.skip(reason=NO_LOSS)
    def test_training_gradient_checkpointing(self):
        pass

    @unittest.skip(reason=NO_LOSS)
    def test_training_gradient_checkpointing_use_reentrant_false(self):
        pass

    @unittest.skip(reason=NO_LOSS)
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass
