"""SAM3-LiteText segmenters for ``segment``: eager torch (optionally deployed / compiled) or ONNX graphs.

Both give what the ``text-prompted-segmentation`` pipeline gives (same image processor, same tokenizer, same
torch detector head, same ``post_process_per_image``); each prompt list is encoded once per run and reused for
every image. ``load_segmenter(model_dir, backend)`` with ``onnxruntime`` / ``openvino`` runs the text encoder and
the image encoder as two graphs (:mod:`~visionports.models.sam3_lite_text.export_sam3_lite_text`), exported and
validated against eager once per folder content and settings, then cached beside the folder; the detector head
stays in torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.devices import place, resolve_device, resolve_dtype, to_model
from .runtimes import GraphSession, check_backend, open_graph
from .validation import compare, golden_image, require_model_type, validated_graphs, validation_figures

# Refusal bounds of the validation (max abs difference, graph - eager float32, validation input). Measured on
# the tiny golden detector (tests/backends/test_sam3_lite_text_backends.py), onnxruntime / OpenVINO, batch 1
# and 3: text features 1.3e-6 .. 2.3e-6 (O(1)); FPN levels 1.1e-5 .. 2.1e-5 on features reaching |x| ~ 23 (32 ViT
# blocks of float32 round-off); position encodings 6e-8. The bounds are ~10x the measured figures, far below
# what a wrong graph gives (O(1)).
TOLERANCES = {"text_features": 2e-5, "fpn": 2e-4, "fpn_pos": 1e-6}
VALIDATION_PROMPTS = ("a cat", "person wearing a red hat", "")


def _tolerances(names: tuple[str, ...]) -> dict[str, float]:
    return {name: TOLERANCES[name.rstrip("0123456789").rstrip("_")] for name in names}


@dataclass
class Segmenter:
    """``segmenter(image, prompts, threshold)`` -> the pipeline's instances; text features cached per prompts."""

    model: Any  # Sam3LiteTextModel: the detector head (and, on torch, the encoders)
    processor: Any
    tokenizer: Any
    encode_text: Callable[[torch.Tensor], Any]  # input_ids -> text_outputs
    encode_image: Callable[[torch.Tensor], Any]  # pixel_values -> vision_outputs
    validation: dict[str, Any] | None = None
    texts: dict[tuple[str, ...], Any] = field(default_factory=dict)

    def text_features(self, prompts: list[str]) -> Any:
        """The prompts' ``text_outputs``, encoded on first use and then reused."""
        key = tuple(prompts)
        if key not in self.texts:
            ids = self.tokenizer(list(prompts))["input_ids"]
            with torch.inference_mode():
                self.texts[key] = self.encode_text(to_model({"input_ids": ids}, self.model)["input_ids"])
        return self.texts[key]

    def __call__(
        self,
        image: Any,
        prompts: list[str],
        threshold: float | None = None,
        mask_threshold: float | None = None,
        deferred_masks: bool = True,
        **geometry: Any,
    ) -> list[dict]:
        """``geometry``: ``input_boxes`` / ``input_points`` (pixels) and their labels, as the pipeline takes them;
        with them ``prompts`` may be empty (the query then reads ``"visual"``)."""
        from ..models.sam3_lite_text.pipeline_sam3_lite_text import GEOMETRY, _as_rgb, query_prompts

        prompts = query_prompts(prompts, geometry)
        rgb = _as_rgb(image)
        batch = to_model(self.processor(rgb, return_tensors="pt", **geometry), self.model)
        text = self.text_features(prompts)
        with torch.inference_mode():
            out = self.model(text_outputs=text, vision_outputs=self.encode_image(batch["pixel_values"]),
                             **{k: v for k, v in batch.items() if k in GEOMETRY})  # fmt: skip
        return self.processor.post_process_per_image(
            out, prompts, threshold=threshold, mask_threshold=mask_threshold,
            target_sizes=[(rgb.height, rgb.width)], deferred_masks=deferred_masks,
        )[0]  # fmt: skip

    def pipeline(self, **kwargs: Any) -> Any:
        """A ``text-prompted-segmentation`` pipeline whose text and image encoders are this segmenter's (graphs on
        a graph backend; ``kwargs`` go to :func:`transformers.pipeline`)."""
        import copy

        from transformers import pipeline

        model = copy.copy(self.model)  # shares the modules; its two encoder methods become ours
        model.get_text_features = lambda input_ids, **_: self.encode_text(input_ids)
        model.get_image_features = lambda pixel_values, **_: self.encode_image(pixel_values)
        return pipeline("text-prompted-segmentation", model=model, image_processor=self.processor, **kwargs)


def _parts(model_dir: Path) -> tuple[Any, Any, Any]:
    from transformers import AutoImageProcessor

    from ..models.sam3_lite_text import Sam3LiteTextTokenizer
    from ..models.sam3_lite_text.modeling_sam3_lite_text import Sam3LiteTextModel

    model = Sam3LiteTextModel.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    return model, processor, Sam3LiteTextTokenizer(model.config.text.context_length)


def load_torch_segmenter(
    model_dir: str | Path,
    device: str | None = "auto",
    dtype: str | None = "float32",
    deploy: bool = False,
    compile_model: bool = False,
) -> Segmenter:
    """The eager segmenter; ``deploy``: :meth:`Sam3LiteTextModel.deploy`; ``compile_model``: the text and image
    encoders under ``torch.compile`` (one graph per input shape; the head's shapes vary with the prompts)."""
    model, processor, tokenizer = _parts(Path(model_dir))
    model = place(model, resolve_device(device), resolve_dtype(dtype))
    if deploy:
        model.deploy()
    text_encoder, image_encoder = model.text_model, model.detector.vision_encoder
    if compile_model:
        text_encoder.forward = torch.compile(text_encoder.forward, dynamic=False)
        image_encoder.forward = torch.compile(image_encoder.forward, dynamic=False)
    return Segmenter(model, processor, tokenizer, model.get_text_features, model.get_image_features)


def _check_family(model_dir: Path, backend: str) -> None:
    from ..models.sam3_lite_text.configuration_sam3_lite_text import Sam3LiteTextConfig

    require_model_type(model_dir, Sam3LiteTextConfig.model_type, backend, "SAM3-LiteText", "segment")


def validation_inputs(model: Any, processor: Any, tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic ``input_ids`` and ``pixel_values`` the graphs are validated on."""
    ids = tokenizer(list(VALIDATION_PROMPTS))["input_ids"]
    size = model.config.image_size
    return ids, processor(golden_image(size, size), return_tensors="pt")["pixel_values"].float()


def validate(sessions: dict[str, GraphSession], model: Any, processor: Any, tokenizer: Any,
             backend: str) -> dict[str, float]:  # fmt: skip
    """Max abs differences graph - eager of both graphs; raises beyond :data:`TOLERANCES`."""
    ids, pixels = validation_inputs(model, processor, tokenizer)
    with torch.inference_mode():
        text = model.get_text_features(ids).last_hidden_state
        vision = model.get_image_features(pixels)
    want = {"text_features": text}
    figures = compare(
        sessions["text"](input_ids=ids), want, _tolerances(tuple(want)), f"the {backend} text graph"
    )
    want = {f"fpn_{i}": t for i, t in enumerate(vision.fpn_hidden_states[:3])}
    want.update({f"fpn_pos_{i}": t for i, t in enumerate(vision.fpn_position_encoding[:3])})
    got = sessions["image"](pixel_values=pixels)
    return {**figures, **compare(got, want, _tolerances(tuple(want)), f"the {backend} image graph")}


def _entry(model_dir: Path, backend: str, model: Any, processor: Any, tokenizer: Any) -> Path:
    settings = {"family": "sam3_lite_text", "graph": "text+image-dynamic-batch", "dtype": "float32",
                "image_size": model.config.image_size, "context_length": model.config.text.context_length}  # fmt: skip

    def export(folder: Path) -> dict[str, Path]:
        from ..models.sam3_lite_text.export_sam3_lite_text import export_onnx

        return export_onnx(model, folder)

    return validated_graphs(
        model_dir, backend, settings, export, lambda s: validate(s, model, processor, tokenizer, backend)
    )


def load_segmenter(
    model_dir: str | Path,
    backend: str = "onnxruntime",
    device: str | None = "cpu",
    dtype: str | None = "float32",
) -> Segmenter:
    """The ``backend`` (onnxruntime / openvino) segmenter of a converted SAM3-LiteText folder: text and image
    encoders as graphs (exported and validated on first use), the detector head in torch float32."""
    from ..models.sam3_lite_text.export_sam3_lite_text import text_outputs, vision_outputs

    model_dir = Path(model_dir)
    where = check_backend(backend, device, dtype)
    _check_family(model_dir, backend)
    model, processor, tokenizer = _parts(model_dir)
    entry = _entry(model_dir, backend, model, processor, tokenizer)
    text, image = (open_graph(entry / f"{name}.onnx", backend, where) for name in ("text", "image"))
    model = model.to(where)

    def encode_text(ids: torch.Tensor) -> Any:
        return text_outputs(text(input_ids=ids)["text_features"].to(where), ids)

    def encode_image(pixels: torch.Tensor) -> Any:
        return vision_outputs({k: v.to(where) for k, v in image(pixel_values=pixels).items()})

    return Segmenter(model, processor, tokenizer, encode_text, encode_image, validation_figures(entry))
