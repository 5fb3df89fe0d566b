"""What every visionports model adds to transformers' ``PreTrainedModel``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn
from transformers.utils import ModelOutput

ALIGNMENT = 64  # bytes; PyTorch's CPU allocator aligns every tensor it creates to this


class ModelCardMixin:
    """Every saved folder carries a visionports model card (``README.md``), and so does every Hub upload.

    ``save_pretrained`` writes the card (a user's own README.md is kept); ``push_to_hub`` (and
    ``save_pretrained(push_to_hub=True)``) uploads it in place of transformers' blank template, whose
    ``library_name: transformers`` would claim plain transformers loads the repo. ``card_provenance``
    (set by ``visionports convert``, read back by ``from_pretrained`` from the folder's card) is what the card
    records about the original checkpoint.
    """

    card_provenance: Any = None  # a visionports.core.model_card.Provenance

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        loaded = super().from_pretrained(*args, **kwargs)  # type: ignore[misc]
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if args:
            model.card_provenance = _saved_provenance(args[0], kwargs)
        return loaded

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        super().save_pretrained(save_directory, *args, **kwargs)  # type: ignore[misc]
        if kwargs.get("is_main_process", True) and Path(save_directory).is_dir():
            from .model_card import write_model_card

            write_model_card(save_directory, self, self.card_provenance)

    def _upload_modified_files(
        self, working_dir: str | os.PathLike, repo_id: str, *args: Any, **kwargs: Any
    ) -> Any:
        """transformers' upload, after our card replaced its blank template (a user's card on the Hub is kept)."""
        from .model_card import write_model_card

        write_model_card(working_dir, self, self.card_provenance, repo_id=repo_id)
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)  # type: ignore[misc]


def _saved_provenance(source: Any, kwargs: dict[str, Any]) -> Any:
    """The provenance recorded in the card of a folder (or a cached Hub repo) loaded from; ``None`` if none."""
    from .model_card import CARD_NAME, read_provenance

    if not isinstance(source, (str, os.PathLike)):
        return None
    folder = Path(source) / kwargs.get("subfolder", "")
    if folder.is_dir():
        return read_provenance(folder / CARD_NAME)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(source), CARD_NAME, cache_dir=kwargs.get("cache_dir"),
                                        revision=kwargs.get("revision"))  # fmt: skip
    except Exception:  # not a repo id, no cache: a card is optional
        return None
    return read_provenance(cached) if isinstance(cached, str) else None


class ReloadIdenticalMixin(ModelCardMixin):
    """``from_pretrained`` gives the numbers of the model that was saved, bit for bit.

    transformers maps safetensors files into memory and uses the mapped bytes as the weights; their
    addresses then follow the file layout, and CPU matrix kernels sum in an order that depends on the
    alignment of their operands (a 1-ulp difference in a ``Linear`` was measured). Weights that are not
    aligned as freshly allocated tensors are copied once after loading.
    """

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        loaded = super().from_pretrained(*args, **kwargs)  # type: ignore[misc]
        own_aligned_storage(loaded[0] if isinstance(loaded, tuple) else loaded)
        return loaded


def own_aligned_storage(module: nn.Module) -> int:
    """Copy every CPU parameter/buffer of ``module`` whose data is not ``ALIGNMENT``-aligned; returns the count.

    Parameters keep their identity (tied weights stay tied); only their storage changes.
    """
    copied = 0
    for sub in module.modules():
        for param in sub._parameters.values():
            if param is not None and _misaligned(param):
                param.data = param.data.clone()
                copied += 1
        for name, buffer in sub._buffers.items():
            if buffer is not None and _misaligned(buffer):
                sub._buffers[name] = buffer.clone()
                copied += 1
    return copied


def _misaligned(tensor: Any) -> bool:
    return tensor.device.type == "cpu" and tensor.numel() > 0 and tensor.data_ptr() % ALIGNMENT != 0


class EagerByDefaultMixin:
    """``attn_implementation`` defaults to ``"eager"``: the explicit attention the original computes (another
    implementation, e.g. ``"sdpa"``, is used when requested)."""

    def get_correct_attn_implementation(
        self, requested_attention: str | None, is_init_check: bool = False
    ) -> str:
        parent = super()
        return parent.get_correct_attn_implementation(requested_attention or "eager", is_init_check)  # type: ignore[misc]


def output_flags(
    config: Any, output_attentions: bool | None, output_hidden_states: bool | None
) -> tuple[bool, bool]:
    """``(output_attentions, output_hidden_states)`` of a call; each ``None`` takes the config's value."""
    attentions = config.output_attentions if output_attentions is None else output_attentions
    hidden = config.output_hidden_states if output_hidden_states is None else output_hidden_states
    return attentions, hidden


def as_returned(output: ModelOutput, config: Any, return_dict: bool | None) -> ModelOutput | tuple:
    """``output``, or ``output.to_tuple()`` when ``return_dict`` (``None``: the config's) is off."""
    return output if (config.return_dict if return_dict is None else return_dict) else output.to_tuple()
