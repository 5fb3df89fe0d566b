"""What every visionports model adds to transformers' ``PreTrainedModel``."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers.utils import ModelOutput

ALIGNMENT = 64  # bytes; PyTorch's CPU allocator aligns every tensor it creates to this


class ReloadIdenticalMixin:
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
