"""VidEoMT on an ONNX runtime: the single-step streaming graph, exported once per frame size, validated.

``load_segmenter(model_dir, backend)`` returns a :class:`GraphSegmenter`, called like the eager model:
``segmenter(pixel_values [B, T, 3, H, W], state=None)`` -> class and mask logits ``[B, T, ...]`` and the
``state`` to pass back. Frames run one at a time through the step graph of
:func:`~visionports.models.videomt.export_videomt.export_step_onnx`, the carried queries in and out; a new
video starts from the learned queries (saved beside the graph). The graph's frame size is fixed, so the
first call at a size exports (or reuses from the cache beside the model folder) the graph for that size,
after stepping :data:`VALIDATION_FRAMES` deterministic random frames through it and through the eager
model and comparing every step (the figures are in ``validation.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .runtimes import GraphSession, check_backend, open_graph
from .validation import GOLDEN_SEED, compare, require_model_type, validated_graphs, validation_figures

# Refusal bounds of the validation (max abs difference graph - eager float32, over every step of
# VALIDATION_FRAMES random frames, the graph fed its own state). Measured in onnxruntime / OpenVINO: the
# golden tiny DINOv2 case (64x96 and 64x128 frames, |masks| up to 11): class 1.2e-6, masks 1.5e-5,
# queries 3.6e-6; ViT-S/16 at default init (224x224 and 224x320): class 2.8e-6, masks 3.7e-6, queries
# 1.0e-6. Float32 round-off grows with the logits' scale (real checkpoints' mask logits reach O(100)), so
# the bounds are ~30-80x the largest figure, still far below what a wrong graph gives (O(0.1-1): before
# the position table was fixed at export, OpenVINO's own antialiased resize gave masks 2.5e-3 on ViT-S).
TOLERANCES = {"class_queries_logits": 1e-4, "masks_queries_logits": 5e-4, "next_queries": 1e-4}
VALIDATION_FRAMES = 3
INITIAL_FILE = "initial_queries.safetensors"


def golden_frames(frame_size: tuple[int, int], frames: int = VALIDATION_FRAMES) -> torch.Tensor:
    """Deterministic random normalised frames ``[1, T, 3, H, W]`` (the validation input)."""
    generator = torch.Generator().manual_seed(GOLDEN_SEED)
    return torch.randn(1, frames, 3, *frame_size, generator=generator)


def validate(
    session: GraphSession, model: Any, initial: torch.Tensor, frame_size: tuple[int, int], backend: str
) -> dict[str, float]:
    """Max abs differences graph - eager over the steps of :func:`golden_frames`; raises beyond
    :data:`TOLERANCES`. The graph is fed its own state, as in use."""
    video = golden_frames(frame_size)
    with torch.inference_mode():
        eager = model(video)
    queries, got, want = initial, [], []
    for t in range(video.shape[1]):
        step = session(pixel_values=video[:, t], queries=queries)
        queries = step["next_queries"]
        got.append(step)
        want.append({"class_queries_logits": eager.class_queries_logits[:, t],
                     "masks_queries_logits": eager.masks_queries_logits[:, t],
                     "next_queries": eager.propagated_queries[:, t]})  # fmt: skip
    stacked = [{name: torch.stack([s[name] for s in steps]) for name in TOLERANCES} for steps in (got, want)]
    return compare(*stacked, TOLERANCES, f"the {backend} graph")


def _check_family(model_dir: Path, backend: str) -> None:
    from ..models.videomt.configuration_videomt import VideomtConfig

    require_model_type(model_dir, VideomtConfig.model_type, backend, "VidEoMT", "segment-video")


def _entry(model_dir: Path, backend: str, frame_size: tuple[int, int]) -> Path:
    """The cache entry (``step.onnx``, ``initial_queries.safetensors``) for ``frame_size`` frames."""
    settings = {"family": "videomt", "graph": "step-dynamic-batch", "input_size": list(frame_size),
                "dtype": "float32"}  # fmt: skip
    built: dict[str, Any] = {}

    def export(folder: Path) -> dict[str, Path]:
        from transformers import AutoModelForUniversalSegmentation

        from ..models.videomt.export_videomt import export_step_onnx, initial_queries

        model = AutoModelForUniversalSegmentation.from_pretrained(model_dir).eval()
        built["eager"], built["initial"] = model, initial_queries(model)
        save_file({"queries": built["initial"][0].contiguous()}, str(folder / INITIAL_FILE))
        return {"step": export_step_onnx(model, folder / "step.onnx", frame_size)}

    def check(sessions: dict[str, GraphSession]) -> dict[str, float]:
        return validate(sessions["step"], built["eager"], built["initial"], frame_size, backend)

    return validated_graphs(model_dir, backend, settings, export, check)


@dataclass
class GraphSegmenter:
    """A VidEoMT running in an ONNX runtime, called like the eager model (one step graph per frame size)."""

    model_dir: Path
    backend: str
    device: torch.device
    config: Any
    sessions: dict[tuple[int, int], tuple[GraphSession, torch.Tensor]] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)

    def session(self, frame_size: tuple[int, int]) -> tuple[GraphSession, torch.Tensor]:
        """The step graph and initial queries ``[Q, C]`` for ``frame_size``, exported on first use."""
        if frame_size not in self.sessions:
            entry = _entry(self.model_dir, self.backend, frame_size)
            initial = load_file(str(entry / INITIAL_FILE))["queries"]
            self.sessions[frame_size] = open_graph(entry / "step.onnx", self.backend, self.device), initial
            self.validation = validation_figures(entry)
        return self.sessions[frame_size]

    def __call__(self, pixel_values: torch.Tensor, state: Any = None) -> Any:
        """Like ``VideomtForUniversalSegmentation(pixel_values, state=state)`` (logits and ``state`` only)."""
        from ..models.videomt.modeling_videomt import VideomtSegmentationOutput, VideomtState

        if pixel_values.ndim == 4:
            pixel_values = pixel_values[:, None]
        pixel_values = pixel_values.float().cpu()
        batch, frames = pixel_values.shape[:2]
        graph, initial = self.session(tuple(pixel_values.shape[-2:]))
        queries = initial.expand(batch, -1, -1) if state is None else state.queries
        classes, masks = [], []
        for t in range(frames):
            step = graph(pixel_values=pixel_values[:, t], queries=queries)
            queries = step["next_queries"]
            classes.append(step["class_queries_logits"])
            masks.append(step["masks_queries_logits"])
        seen = 0 if state is None else state.frames_seen
        return VideomtSegmentationOutput(
            class_queries_logits=torch.stack(classes, dim=1),
            masks_queries_logits=torch.stack(masks, dim=1),
            state=VideomtState(queries=queries, frames_seen=seen + frames),
        )


def load_segmenter(
    model_dir: str | Path,
    backend: str = "onnxruntime",
    device: str | None = "cpu",
    dtype: str | None = "float32",
) -> GraphSegmenter:
    """The ``backend`` (onnxruntime / openvino) segmenter of a converted VidEoMT folder; each frame size's
    graph is exported and validated on first use (then cached beside the folder)."""
    from transformers import AutoConfig

    model_dir = Path(model_dir)
    where = check_backend(backend, device, dtype)
    _check_family(model_dir, backend)
    return GraphSegmenter(model_dir, backend, where, AutoConfig.from_pretrained(model_dir))
