"""Model families and their registration with transformers' Auto classes."""

from __future__ import annotations


def register_all() -> None:
    """Register every family's config and models with the Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoModel, AutoModelForObjectDetection

    from .deimv2 import Deimv2Config, Deimv2ForObjectDetection, Deimv2Model

    try:
        AutoConfig.register(Deimv2Config.model_type, Deimv2Config)
    except ValueError:  # already registered
        return
    # exist_ok: upstream transformers has classes of the same names; ours are registered by class object,
    # so each config class still resolves to its own models.
    AutoModel.register(Deimv2Config, Deimv2Model, exist_ok=True)
    AutoModelForObjectDetection.register(Deimv2Config, Deimv2ForObjectDetection, exist_ok=True)
