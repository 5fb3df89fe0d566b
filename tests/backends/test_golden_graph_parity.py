"""Graph backends on every visible golden case: each family's exported graphs, run in onnxruntime and OpenVINO on
the case's own inputs, agree with the eager model within the backend's validation tolerances (the bounds that
``--backend`` refuses a graph beyond). Loss cases hold training batches, not inference inputs, and are skipped."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from golden import convert_case, golden_cases
from visionports.backends.runtimes import open_graph
from visionports.backends.validation import compare

pytest.importorskip("onnxscript")
RUNTIMES = [name for name in ("onnxruntime", "openvino") if importlib.util.find_spec(name) is not None]
CASES = [
    pytest.param(family, case, id=f"{family}/{case.name}")
    for family in ("deimv2", "sam3_lite_text", "videomt")
    for case in golden_cases(family)
    if any(p.name.startswith("checkpoint.") for p in case.iterdir())
    # the exported graphs are the text and image encoders: loss, geometry, point/box and video cases add nothing
    and json.loads((case / "case.json").read_text()).get("kind")
    not in ("loss", "geometry", "interactive", "video")
]
Tensors = dict[str, torch.Tensor]


def _deimv2(model: torch.nn.Module, case: Path, folder: Path) -> list[tuple[Path, Tensors, Tensors, dict]]:
    from visionports.backends.deimv2 import TOLERANCES
    from visionports.models.deimv2.export_deimv2 import export_onnx

    pixels = load_file(str(case / "inputs.safetensors"))["pixel_values"]
    path = export_onnx(model, folder / "model.onnx", image_size=tuple(pixels.shape[-2:]))
    out = model(pixel_values=pixels)
    return [
        (path, {"pixel_values": pixels}, {"logits": out.logits, "pred_boxes": out.pred_boxes}, TOLERANCES)
    ]


def _sam3(model: torch.nn.Module, case: Path, folder: Path) -> list[tuple[Path, Tensors, Tensors, dict]]:
    from visionports.backends.sam3_lite_text import _tolerances
    from visionports.models.sam3_lite_text.export_sam3_lite_text import export_image, export_text

    inputs = load_file(str(case / "inputs.safetensors"))
    ids = inputs["input_ids"]
    text_model = getattr(model, "text_model", model)
    text = {"text_features": text_model(ids).last_hidden_state}
    found = [
        (export_text(text_model, folder / "text.onnx"), {"input_ids": ids}, text, _tolerances(tuple(text)))
    ]
    if "pixel_values" in inputs:
        vision = model.get_image_features(inputs["pixel_values"])
        want = {f"fpn_{i}": t for i, t in enumerate(vision.fpn_hidden_states[:3])}
        want |= {f"fpn_pos_{i}": t for i, t in enumerate(vision.fpn_position_encoding[:3])}
        path = export_image(model, folder / "image.onnx")
        found.append((path, {"pixel_values": inputs["pixel_values"]}, want, _tolerances(tuple(want))))
    return found


def _videomt_frames(case: Path) -> torch.Tensor:
    """The case's model input ``[B, T, 3, H, W]`` (an end-to-end case's: the golden processed frames)."""
    inputs = load_file(str(case / "inputs.safetensors"))
    if "pixel_values" in inputs:
        return inputs["pixel_values"]
    return load_file(str(case / "outputs.safetensors"))["padded_pixel_values"][None]


def _videomt(
    model: torch.nn.Module, case: Path, folder: Path
) -> list[tuple[Path, list[Tensors], Tensors, dict]]:
    from visionports.backends.videomt import TOLERANCES
    from visionports.models.videomt.export_videomt import export_step_onnx, initial_queries

    video = _videomt_frames(case)
    path = export_step_onnx(model, folder / "step.onnx", tuple(video.shape[-2:]))
    eager = model(video)
    want = {"class_queries_logits": eager.class_queries_logits, "masks_queries_logits": eager.masks_queries_logits,
            "next_queries": eager.propagated_queries}  # fmt: skip
    feed = [video[:, t] for t in range(video.shape[1])]  # stepped below, the graph fed its own state
    return [(path, feed, want, TOLERANCES | {"initial": initial_queries(model, video.shape[0])})]


def _stream(session, frames: list[torch.Tensor], initial: torch.Tensor) -> Tensors:
    queries, steps = initial, []
    for frame in frames:
        step = session(pixel_values=frame, queries=queries)
        queries = step["next_queries"]
        steps.append(step)
    return {name: torch.stack([s[name] for s in steps], dim=1) for name in steps[0]}


GRAPHS = {"deimv2": _deimv2, "sam3_lite_text": _sam3, "videomt": _videomt}


@pytest.mark.skipif(not RUNTIMES, reason="neither onnxruntime nor openvino is installed")
@pytest.mark.parametrize(("family", "case"), CASES)
def test_graphs_match_eager_on_the_case_inputs(family: str, case: Path, tmp_path: Path) -> None:
    model = convert_case(family, case)
    with torch.inference_mode():
        graphs = GRAPHS[family](model, case, tmp_path)
    assert graphs
    for path, feed, want, tolerances in graphs:
        tolerances = dict(tolerances)
        initial = tolerances.pop("initial", None)
        for runtime in RUNTIMES:
            session = open_graph(path, runtime, "cpu")
            got = _stream(session, feed, initial) if initial is not None else session(**feed)
            figures = compare(got, want, tolerances, f"{runtime} {path.name} on {case.name}")  # raises beyond
            assert {f"{name}_max_abs_diff" for name in want} <= figures.keys()  # every output was compared
