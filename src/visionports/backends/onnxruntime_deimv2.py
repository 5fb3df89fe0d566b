"""DEIMv2 on onnxruntime: export once into a cache beside the model folder, validate, then reuse.

``load_detector(model_dir)`` returns a :class:`OrtDetector`; calling it on PIL images gives the same
detections as the eager model (same image processor before, same ``post_process_object_detection`` after;
only the network runs in onnxruntime). The first load exports the raw graph (``logits``/``pred_boxes``,
dynamic batch) with :func:`~visionports.models.deimv2.export_deimv2.export_onnx`, checks it against the eager
model on a fixed random image and records the differences in ``validation.json`` next to ``model.onnx``;
later loads of the same folder content and settings reuse it without exporting or validating again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..core.devices import resolve_device, resolve_dtype
from ..core.errors import MissingExtraError, ModelFolderError, VisionportsError
from ..core.files import atomic_write
from ..tasks.detect import _detections
from ..utils.drawing import Detection
from .cache import cache_key, cached_entry

# Refusal bounds of the validation (max abs difference, ONNX - eager float32, golden input). Measured on the
# golden Atto and DINOv3-S checkpoints (docs/models/deimv2.md): up to 1.4e-3 on logits (O(4)) and 1.6e-4 on
# normalised boxes — float32 round-off, below eager float32's own distance to float64. These are the bounds
# tests/models/deimv2/test_export_deimv2.py holds the export to: ~3.5x and ~6x the measured figures, far
# below what a wrong graph gives (O(1)).
LOGITS_TOLERANCE = 5e-3
BOXES_TOLERANCE = 1e-3
GOLDEN_SEED = 0


class OnnxValidationError(VisionportsError, RuntimeError):
    """An exported graph whose outputs disagree with the eager model beyond the tolerance."""


class BackendOptionError(VisionportsError, ValueError):
    """A ``--backend`` combined with a device or dtype it cannot serve."""


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingExtraError(
            "--backend onnxruntime needs onnxruntime: pip install 'visionports[export]'"
        ) from None
    return onnxruntime


def providers(device: str | None, dtype: str | None) -> list[Any]:
    """The execution providers for ``device``; refuses devices and dtypes onnxruntime cannot serve here.

    ``auto``: CUDA when onnxruntime has its provider and torch sees a GPU, else the CPU.
    """
    available = _ort().get_available_providers()
    if resolve_dtype(dtype) != torch.float32:
        raise BackendOptionError(
            f"--backend onnxruntime runs float32 only, got --dtype {dtype}: use --dtype float32 "
            "(or --backend torch for half precision)"
        )
    name = (device or "auto").strip().lower()
    has_cuda = "CUDAExecutionProvider" in available
    if name == "auto":
        name = "cuda" if has_cuda and torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not has_cuda:
        raise BackendOptionError(
            f"--backend onnxruntime --device {device}: this onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu or use --device cpu"
        )
    where = resolve_device(name)
    if where.type == "cuda":
        return [("CUDAExecutionProvider", {"device_id": where.index or 0}), "CPUExecutionProvider"]
    if where.type != "cpu":
        raise BackendOptionError(
            f"--backend onnxruntime: --device {device} is not supported (use cpu or cuda)"
        )
    return ["CPUExecutionProvider"]


def _golden_image(height: int, width: int) -> Image.Image:
    """A deterministic random RGB image at the processor's size."""
    generator = torch.Generator().manual_seed(GOLDEN_SEED)
    pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy(), "RGB")


def _session(path: Path, provider_list: list) -> Any:
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=provider_list)


def _run(session: Any, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    logits, boxes = session.run(["logits", "pred_boxes"], {"pixel_values": pixel_values.numpy()})
    return {"logits": torch.from_numpy(logits), "pred_boxes": torch.from_numpy(boxes)}


def validate(session: Any, model: Any, processor: Any) -> dict[str, float]:
    """Max abs differences ONNX - eager on the golden image; raises :class:`OnnxValidationError` beyond bounds."""
    size = processor.size
    pixels = processor(_golden_image(size["height"], size["width"]), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        eager = model(pixel_values=pixels)
    got = _run(session, pixels)
    figures = {
        "logits_max_abs_diff": float((got["logits"] - eager.logits).abs().max()),
        "boxes_max_abs_diff": float((got["pred_boxes"] - eager.pred_boxes).abs().max()),
        "logits_tolerance": LOGITS_TOLERANCE,
        "boxes_tolerance": BOXES_TOLERANCE,
    }
    bad = not (figures["logits_max_abs_diff"] <= LOGITS_TOLERANCE)
    bad = bad or not (figures["boxes_max_abs_diff"] <= BOXES_TOLERANCE)
    if bad:
        raise OnnxValidationError(
            "the ONNX export disagrees with the eager model on the validation image: max |diff| "
            f"logits {figures['logits_max_abs_diff']:.3g} (tolerance {LOGITS_TOLERANCE:g}), boxes "
            f"{figures['boxes_max_abs_diff']:.3g} (tolerance {BOXES_TOLERANCE:g}); use --backend torch"
        )
    return figures


def _settings(processor: Any) -> dict[str, object]:
    from importlib.metadata import version

    from ..tasks.runner import package_version

    size = processor.size
    return {
        "backend": "onnxruntime",
        "graph": "raw-dynamic-batch",
        "input_size": [size["height"], size["width"]],
        "dtype": "float32",
        "visionports": package_version(),
        "onnxruntime": _ort().__version__,
        "torch": version("torch"),
    }


def _export_and_validate(model_dir: Path, processor: Any) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        from ..models.deimv2.export_deimv2 import export_onnx

        model = _eager(model_dir)
        size = processor.size
        image_size = (size["height"], size["width"])
        path = export_onnx(model, folder / "model.onnx", dynamic_batch=True, image_size=image_size)
        figures = validate(_session(path, ["CPUExecutionProvider"]), model, processor)
        text = json.dumps({**figures, **_settings(processor)}, indent=2) + "\n"
        atomic_write(folder / "validation.json", lambda tmp: tmp.write_text(text))

    return build


def _eager(model_dir: Path) -> Any:
    from transformers import AutoModelForObjectDetection

    return AutoModelForObjectDetection.from_pretrained(model_dir).eval()


def _check_family(model_dir: Path) -> None:
    config = model_dir / "config.json"
    model_type = json.loads(config.read_text()).get("model_type") if config.is_file() else None
    from ..models.deimv2.configuration_deimv2 import Deimv2Config

    if model_type != Deimv2Config.model_type:
        raise ModelFolderError(
            f"--backend onnxruntime serves DEIMv2 folders only; {model_dir} holds model_type {model_type!r}"
        )


@dataclass
class OrtDetector:
    """A DEIMv2 detector running in onnxruntime; ``detector(images, threshold)`` -> detections per image."""

    session: Any
    processor: Any
    id2label: dict[int, str]
    onnx_path: Path
    validation: dict[str, Any]

    def raw(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """``logits`` and ``pred_boxes`` for ``images`` (preprocessed by the saved image processor)."""
        pixels = self.processor(images, return_tensors="pt")["pixel_values"].float()
        return _run(self.session, pixels)

    def __call__(self, images: list[Image.Image], threshold: float = 0.5) -> list[list[Detection]]:
        outputs = self.raw(images)
        sizes = [(im.height, im.width) for im in images]
        found = self.processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=sizes)
        return [_detections(det, self.id2label) for det in found]


def load_detector(
    model_dir: str | Path, device: str | None = "cpu", dtype: str | None = "float32"
) -> OrtDetector:
    """The onnxruntime detector of a converted DEIMv2 folder, exported and validated on first use."""
    from transformers import AutoConfig, AutoImageProcessor

    model_dir = Path(model_dir)
    provider_list = providers(device, dtype)
    _check_family(model_dir)
    processor = AutoImageProcessor.from_pretrained(model_dir)
    key = cache_key(model_dir, _settings(processor))
    entry = cached_entry(model_dir, key, _export_and_validate(model_dir, processor))
    id2label = {int(i): str(n) for i, n in AutoConfig.from_pretrained(model_dir).id2label.items()}
    validation = json.loads((entry / "validation.json").read_text())
    session = _session(entry / "model.onnx", provider_list)
    return OrtDetector(session, processor, id2label, entry / "model.onnx", validation)
