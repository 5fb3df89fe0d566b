"""Deploy mode (``VideomtForUniversalSegmentation.deploy``) and ``torch.compile`` of VidEoMT.

On every visible golden case, the deployed model gives every compared output within the case's float32
tolerance of the undeployed model's and of the golden outputs; ``torch.compile`` streams like eager.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from golden import convert_case, golden_cases
from visionports.core.parity import compare_tensors
from visionports.core.registry import get_family
from visionports.models.videomt.deploy_videomt import FoldedLayerScale
from visionports.models.videomt.modeling_videomt import VideomtLayerScale

CASES = [
    c for c in golden_cases("videomt") if json.loads((c / "case.json").read_text()).get("kind") != "loss"
]
FAMILY = get_family("videomt")
ADAPTER = FAMILY.parity
Tensors = dict[str, torch.Tensor]


def _outputs(model: nn.Module, inputs: Tensors, case: dict) -> Tensors:
    """The parity tool's outputs: the streamed logits, and an end-to-end case's post-processed results."""
    processor = FAMILY.make_processor(model.config)
    with torch.no_grad():
        outputs = ADAPTER.run(model, inputs, case)
    return {**outputs, **ADAPTER.postprocess(processor, outputs, inputs, case)}


def _prepared(case_dir: Path, case: dict) -> Tensors:
    """The case's inputs plus what the processor makes of its raw frames (an end-to-end case's)."""
    inputs = load_file(str(case_dir / "inputs.safetensors"))
    processor = FAMILY.make_processor(convert_case("videomt", case_dir).config)
    return {**ADAPTER.preprocess(processor, inputs, case), **inputs}


def _golden_outputs(case_dir: Path, case: dict) -> Tensors:
    return {**load_file(str(case_dir / "outputs.safetensors")), **ADAPTER.case_tensors(case)}


def _failures(ours: Tensors, reference: Tensors, inputs: Tensors, case: dict) -> list[str]:
    aligned = ADAPTER.align(ours, reference, inputs, case)
    atols, default_atol, rtol = ADAPTER.tolerance(case, "float32")
    names = [name for name in reference if name in aligned]
    checks = compare_tensors(aligned, reference, names, atols, default_atol, set(), rtol)
    assert len(checks) == len(names) > 5
    return [f"{c.name}: {c.max_abs} > {c.atol} {c.note}" for c in checks if not c.passed]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c.parent.parent.name}-{c.name}")
def golden(request: pytest.FixtureRequest) -> tuple[Path, dict, Tensors, Tensors]:
    case_dir: Path = request.param
    case = json.loads((case_dir / "case.json").read_text())
    inputs = _prepared(case_dir, case)
    eager = _outputs(convert_case("videomt", case_dir), inputs, case)
    return case_dir, case, inputs, eager


def test_deployed_outputs_match_undeployed_and_golden(golden: tuple) -> None:
    case_dir, case, inputs, eager = golden
    model = convert_case("videomt", case_dir)
    model.config._attn_implementation = "eager"  # deploy() must switch it back to SDPA
    assert model.deploy() is model and model.is_deployed
    assert model.config._attn_implementation == "sdpa"
    deployed = _outputs(model, inputs, case)
    assert not _failures(deployed, eager, inputs, case)
    assert not _failures(deployed, _golden_outputs(case_dir, case), inputs, case)


def test_deploy_folds_every_layer_scale(golden: tuple) -> None:
    model = convert_case("videomt", golden[0])
    gamma = model.layers[0].layer_scale1.gamma.clone()
    proj = model.layers[0].attention.proj.weight.clone()
    assert not torch.allclose(gamma, torch.ones_like(gamma))
    keys = set(model.state_dict())
    model.deploy()
    scales = [m for m in model.modules() if isinstance(m, (VideomtLayerScale, FoldedLayerScale))]
    assert len(scales) == 2 * len(model.layers) and all(isinstance(m, FoldedLayerScale) for m in scales)
    assert set(model.state_dict()) == keys and torch.equal(
        model.layers[0].layer_scale1.gamma, torch.ones_like(gamma)
    )
    torch.testing.assert_close(model.layers[0].attention.proj.weight, proj * gamma[:, None], rtol=0, atol=0)
    assert not any(p.requires_grad for p in model.parameters())


def test_deploy_is_idempotent_and_saved_copy_reloads(golden: tuple, tmp_path: Path) -> None:
    from transformers import AutoModelForUniversalSegmentation

    case_dir, case, inputs, _ = golden
    model = convert_case("videomt", case_dir).deploy()
    first = _outputs(model, inputs, case)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.deploy()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(first[k], v) for k, v in _outputs(model, inputs, case).items())
    model.save_pretrained(tmp_path / "saved")  # same keys; scales of ones: an ordinary, equivalent model
    reloaded = AutoModelForUniversalSegmentation.from_pretrained(tmp_path / "saved").eval()
    assert not reloaded.is_deployed
    again = _outputs(reloaded, inputs, case)
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_training_mode_is_refused() -> None:
    model = convert_case("videomt", CASES[0])
    with pytest.raises(RuntimeError, match="eval mode"):
        model.train().deploy()
    assert not model.is_deployed and isinstance(model.layers[0].layer_scale1, VideomtLayerScale)
    model.eval().deploy().train()
    with pytest.raises(RuntimeError, match="inference only"):
        model(torch.zeros(1, 1, 3, 32, 32))


def test_torch_compile_streams_like_eager() -> None:
    model = convert_case("videomt", CASES[0])
    compiled = torch.compile(model, dynamic=False)
    frames = torch.randn(1, 3, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    state_eager = state_compiled = None
    with torch.inference_mode():
        for t in range(frames.shape[1]):
            want = model(frames[:, t], state=state_eager)
            got = compiled(frames[:, t], state=state_compiled)
            state_eager, state_compiled = want.state, got.state
            assert got.state.frames_seen == t + 1
            for name in ("class_queries_logits", "masks_queries_logits"):
                torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(got.state.queries, want.state.queries, rtol=1e-4, atol=1e-5)


def test_torch_compile_compiles_once_for_a_long_stream() -> None:
    from torch._dynamo.utils import counters

    eager = convert_case("videomt", CASES[0])
    model = torch.compile(convert_case("videomt", CASES[0]), dynamic=False)
    frames = torch.randn(1, 10, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    before = counters["stats"]["unique_graphs"]
    state = want_state = None
    with torch.inference_mode():
        for t in range(frames.shape[1]):  # frames_seen is kept out of the graph: no recompile per frame
            got, want = model(frames[:, t], state=state), eager(frames[:, t], state=want_state)
            state, want_state = got.state, want.state
            torch.testing.assert_close(
                got.masks_queries_logits, want.masks_queries_logits, rtol=1e-4, atol=1e-5
            )
    # one graph (+ the part after the state) for the first call (no state), the same for the second
    assert state.frames_seen == 10 and counters["stats"]["unique_graphs"] - before <= 4
    torch.testing.assert_close(state.queries, want_state.queries, rtol=1e-4, atol=1e-5)
