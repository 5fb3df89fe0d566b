"""DEIMv2 on an ONNX runtime: export once into a cache beside the model folder, validate, then reuse.

``load_detector(model_dir, backend)`` returns a :class:`GraphDetector`; calling it on PIL images gives the
same detections as the eager model (same image processor before, same ``post_process_object_detection``
after; only the network runs in the runtime). The first load exports the raw graph (``logits`` /
``pred_boxes``, dynamic batch) with :func:`~visionports.models.deimv2.export_deimv2.export_onnx`, checks it
against the eager model on a fixed random image and records the differences in ``validation.json``; later
loads of the same folder content and settings reuse it without exporting or validating again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import PreTrainedModel

from ..models.deimv2.configuration_deimv2 import Deimv2Config
from ..models.deimv2.modeling_deimv2 import Deimv2ObjectDetectionOutput
from ..tasks.detect import _detections
from ..utils.drawing import Detection
from .runtimes import GraphSession, check_backend, open_graph
from .validation import compare, golden_image, require_model_type, validated_graphs, validation_figures

# Refusal bounds of the validation (max abs difference, graph - eager float32, golden input). Measured on the
# golden Atto and DINOv3-S checkpoints (docs/models/deimv2.md): up to 1.4e-3 on logits (O(4)) and 1.6e-4 on
# normalised boxes — float32 round-off, below eager float32's own distance to float64. These are the bounds
# tests/models/deimv2/test_export_deimv2.py holds the export to: ~3.5x and ~6x the measured figures, far
# below what a wrong graph gives (O(1)).
TOLERANCES = {"logits": 5e-3, "pred_boxes": 1e-3}


def validate(session: GraphSession, model: Any, processor: Any, backend: str) -> dict[str, float]:
    """Max abs differences graph - eager on the golden image; raises beyond :data:`TOLERANCES`."""
    size = processor.size
    pixels = processor(golden_image(size["height"], size["width"]), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        eager = model(pixel_values=pixels)
    want = {"logits": eager.logits, "pred_boxes": eager.pred_boxes}
    return compare(session(pixel_values=pixels), want, TOLERANCES, f"the {backend} graph")


def _check_family(model_dir: Path, backend: str) -> None:
    require_model_type(model_dir, Deimv2Config.model_type, backend, "DEIMv2", "detect")


def _entry(model_dir: Path, backend: str, processor: Any) -> Path:
    size = processor.size
    image_size = (size["height"], size["width"])
    settings = {
        "family": "deimv2",
        "graph": "raw-dynamic-batch",
        "input_size": list(image_size),
        "dtype": "float32",
    }
    model: dict[str, Any] = {}

    def export(folder: Path) -> dict[str, Path]:
        from transformers import AutoModelForObjectDetection

        from ..models.deimv2.export_deimv2 import export_onnx

        model["eager"] = AutoModelForObjectDetection.from_pretrained(model_dir).eval()
        path = export_onnx(model["eager"], folder / "model.onnx", dynamic_batch=True, image_size=image_size)
        return {"model": path}

    return validated_graphs(
        model_dir,
        backend,
        settings,
        export,
        lambda s: validate(s["model"], model["eager"], processor, backend),
    )


@dataclass
class GraphDetector:
    """A DEIMv2 detector running in an ONNX runtime; ``detector(images, threshold)`` -> detections per image."""

    session: GraphSession
    processor: Any
    config: Deimv2Config
    validation: dict[str, Any]

    @property
    def id2label(self) -> dict[int, str]:
        return {int(i): str(name) for i, name in self.config.id2label.items()}

    def raw(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """``logits`` and ``pred_boxes`` for ``images`` (preprocessed by the saved image processor)."""
        pixels = self.processor(images, return_tensors="pt")["pixel_values"].float()
        return self.session(pixel_values=pixels)

    def __call__(self, images: list[Image.Image], threshold: float = 0.5) -> list[list[Detection]]:
        outputs = self.raw(images)
        sizes = [(im.height, im.width) for im in images]
        found = self.processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=sizes)
        return [_detections(det, self.id2label) for det in found]

    def pipeline(self, **kwargs: Any) -> Any:
        """A transformers ``object-detection`` pipeline whose network is this graph (``kwargs`` go to
        :func:`transformers.pipeline`); its results equal the eager pipeline's within the validation bounds."""
        from transformers import pipeline
        from transformers.utils import logging

        model = Deimv2GraphForObjectDetection(self.config, self.session).eval()
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()  # its "model ... is not supported" check knows registered classes only
        try:
            return pipeline("object-detection", model=model, image_processor=self.processor, **kwargs)
        finally:
            logging.set_verbosity(verbosity)


class Deimv2GraphForObjectDetection(PreTrainedModel):
    """A ``PreTrainedModel`` whose forward runs a graph session: what transformers' pipelines expect."""

    config_class = Deimv2Config
    main_input_name = "pixel_values"

    def __init__(self, config: Deimv2Config, session: GraphSession | None = None) -> None:
        super().__init__(config)
        self.session = session
        self.placeholder = torch.nn.Parameter(torch.empty(0), requires_grad=False)  # device / dtype probes
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, **unused: Any) -> Deimv2ObjectDetectionOutput:
        out = self.session(pixel_values=pixel_values.float())
        return Deimv2ObjectDetectionOutput(logits=out["logits"], pred_boxes=out["pred_boxes"])


def load_detector(
    model_dir: str | Path,
    backend: str = "onnxruntime",
    device: str | None = "cpu",
    dtype: str | None = "float32",
) -> GraphDetector:
    """The ``backend`` (onnxruntime / openvino) detector of a converted DEIMv2 folder, exported and validated
    on first use."""
    from transformers import AutoConfig, AutoImageProcessor

    model_dir = Path(model_dir)
    where = check_backend(backend, device, dtype)
    _check_family(model_dir, backend)
    processor = AutoImageProcessor.from_pretrained(model_dir)
    entry = _entry(model_dir, backend, processor)
    session = open_graph(entry / "model.onnx", backend, where)
    return GraphDetector(session, processor, AutoConfig.from_pretrained(model_dir), validation_figures(entry))
