"""Deploy mode (``Sam3LiteTextModel.deploy``): RepMixers fused, layer scales folded, SDPA text attention.

On every visible golden weights case the deployed model gives every compared output within the case's float32
tolerance of the undeployed model's and of the golden outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from golden import convert_case, golden_cases
from visionports.core.parity import compare_tensors
from visionports.core.registry import get_family
from visionports.models.sam3_lite_text.modeling_text_sam3_lite_text import Sam3LiteTextRepMixerLayer

CASES = [c for c in golden_cases("sam3_lite_text") if any(c.glob("checkpoint.*"))]
ADAPTER = get_family("sam3_lite_text").parity
Tensors = dict[str, torch.Tensor]


def _outputs(model: torch.nn.Module, inputs: Tensors, case: dict) -> Tensors:
    with torch.no_grad():
        return ADAPTER.run(model, inputs, case)


def _failures(got: Tensors, reference: Tensors, case: dict, inputs: Tensors) -> list[str]:
    got = ADAPTER.align(got, reference, inputs, case)  # as the parity tool compares
    atols, default_atol, rtol = ADAPTER.tolerance(case, "float32")
    names = [n for n in reference if n in got]
    checks = compare_tensors(got, {n: reference[n] for n in names}, names, atols, default_atol, set(), rtol)
    assert len(checks) > 10
    return [f"{c.name}: {c.max_abs} > {c.atol} {c.note}" for c in checks if not c.passed]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def deployed(request: pytest.FixtureRequest) -> tuple[dict, Tensors, Tensors, Tensors, torch.nn.Module]:
    case_dir: Path = request.param
    case = json.loads((case_dir / "case.json").read_text())
    inputs = load_file(str(case_dir / "inputs.safetensors"))
    model = convert_case("sam3_lite_text", case_dir)
    eager = _outputs(model, inputs, case)
    model.deploy()
    golden = load_file(str(case_dir / "outputs.safetensors"))
    return case, inputs, eager, golden, model


def test_deployed_matches_eager_and_golden(deployed) -> None:
    case, inputs, eager, golden, model = deployed
    got = _outputs(model, inputs, case)
    assert _failures(got, eager, case, inputs) == []
    assert _failures(got, golden, case, inputs) == []


def test_deployed_layout(deployed) -> None:
    *_, model = deployed
    text = getattr(model, "text_model", model)
    mixers = [layer for layer in text.layers if isinstance(layer, Sam3LiteTextRepMixerLayer)]
    assert len(mixers) == 2 and all(m.is_reparameterized and m.ffn_scale is None for m in mixers)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in text.modules())
    assert text.config._attn_implementation == "sdpa" and model.is_deployed
    assert model.deploy() is model  # idempotent


def test_deployed_is_for_inference_only(deployed, tmp_path: Path) -> None:
    *_, model = deployed
    with pytest.raises(RuntimeError, match="inference only"):
        model.train()
    with pytest.raises(RuntimeError, match="save the undeployed model"):
        model.save_pretrained(tmp_path / "out")


def test_deploy_needs_eval_mode() -> None:
    model = convert_case("sam3_lite_text", CASES[0]).train()
    with pytest.raises(RuntimeError, match="eval mode"):
        model.deploy()
