"""ONNX export of SAM3-LiteText as two graphs, so that prompts and images are encoded once and reused.

* ``text``: ``input_ids`` ``[P, context_length]`` (int64, zero-padded) -> ``text_features`` ``[P, ctx, d_model]``,
  the projected per-token features the detector reads. The padding mask is ``input_ids != 0`` (the encoder
  attends to padding, as the original; only the detector masks it), so it is not a graph input.
* ``image``: ``pixel_values`` ``[B, 3, S, S]`` -> ``fpn_0`` .. ``fpn_2`` and ``fpn_pos_0`` .. ``fpn_pos_2``,
  the FPN levels (4x, 2x, 1x of the ViT grid) and their position encodings; the 0.5x level, which the detector
  never reads, is left out.

The detector head (geometry prompt, DETR encoder/decoder, scoring, mask decoder) stays in torch and takes these
through :func:`text_outputs` / :func:`vision_outputs`. Both graphs have a dynamic batch axis.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...core.onnx_export import DEFAULT_OPSET, write_onnx
from .modeling_text_sam3_lite_text import Sam3LiteTextTextOutput

TEXT_OUTPUTS = ("text_features",)
LEVELS = 3  # FPN levels the detector reads
IMAGE_OUTPUTS = tuple(f"fpn_{i}" for i in range(LEVELS)) + tuple(f"fpn_pos_{i}" for i in range(LEVELS))


class TextExport(nn.Module):
    """``input_ids`` -> the text encoder's projected features (``last_hidden_state``)."""

    def __init__(self, text_model: nn.Module):
        super().__init__()
        self.text_model = text_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_model(input_ids, return_dict=True).last_hidden_state


class ImageExport(nn.Module):
    """``pixel_values`` -> the three FPN levels the detector reads, then their position encodings."""

    def __init__(self, vision_encoder: nn.Module):
        super().__init__()
        self.vision_encoder = vision_encoder

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.vision_encoder(pixel_values, return_dict=True)
        return (*out.fpn_hidden_states[:LEVELS], *out.fpn_position_encoding[:LEVELS])


def text_outputs(features: torch.Tensor, input_ids: torch.Tensor) -> Sam3LiteTextTextOutput:
    """The ``text_outputs`` the model takes, from the text graph's features."""
    return Sam3LiteTextTextOutput(last_hidden_state=features, attention_mask=(input_ids != 0).long())


def vision_outputs(outputs: dict[str, torch.Tensor]) -> object:
    """The ``vision_outputs`` the model takes, from the image graph's outputs (no 0.5x level: not read)."""
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    fpn = tuple(outputs[f"fpn_{i}"] for i in range(LEVELS))
    pos = tuple(outputs[f"fpn_pos_{i}"] for i in range(LEVELS))
    return Sam3VisionEncoderOutput(fpn_hidden_states=(*fpn, None), fpn_position_encoding=(*pos, None))


def text_inputs(text_config: Any, batch: int = 2) -> torch.Tensor:
    """Deterministic example ``input_ids`` (random tokens, the last three padding) at the context length."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, text_config.vocab_size, (batch, text_config.context_length), generator=generator)
    ids[:, -3:] = 0
    return ids


def image_inputs(model: nn.Module, batch: int = 2) -> torch.Tensor:
    """Deterministic example ``pixel_values`` in [-1, 1] at the model's input size."""
    size = model.config.image_size
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def export_text(text_model: nn.Module, output_path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """The text graph of a ``Sam3LiteTextTextModel`` (alone or a full model's ``text_model``)."""
    return _write(
        TextExport(text_model), text_inputs(text_model.config), "input_ids", TEXT_OUTPUTS, output_path, opset
    )


def export_image(model: nn.Module, output_path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """The image graph of a ``Sam3LiteTextModel``."""
    wrapper = ImageExport(model.detector.vision_encoder)
    return _write(wrapper, image_inputs(model), "pixel_values", IMAGE_OUTPUTS, output_path, opset)


def _write(wrapper: nn.Module, example: torch.Tensor, input_name: str, output_names: tuple[str, ...],
           output_path: str | os.PathLike, opset: int) -> Path:  # fmt: skip
    """``optimize=False``: onnxscript's optimiser took 48 s of the image graph's 110 s export (tiny detector, two
    cores), and the runtimes optimise the graph when they load it."""
    return write_onnx(wrapper, (example,), output_path, input_names=[input_name], output_names=output_names,
                      opset=opset, optimize=False)  # fmt: skip


def export_onnx(model: nn.Module, folder: str | os.PathLike, opset: int = DEFAULT_OPSET) -> dict[str, Path]:
    """Both graphs of a ``Sam3LiteTextModel`` into ``folder`` (``text.onnx``, ``image.onnx``), by name."""
    folder = Path(folder)
    return {
        "text": export_text(model.text_model, folder / "text.onnx", opset),
        "image": export_image(model, folder / "image.onnx", opset),
    }
