"""Deploy mode (``Deimv2ForObjectDetection.deploy``): BatchNorm folding and RepVGG merging.

On every visible non-loss golden case, the deployed model (with and without channels-last weights) gives
every compared output within the case's float32 tolerance of the undeployed model's and of the golden outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from golden import convert_case, golden_cases
from visionports.core.fusion import count_batchnorms, fold_batchnorm
from visionports.core.parity import compare_tensors
from visionports.core.registry import get_family
from visionports.models.deimv2.encoder_deimv2 import Deimv2RepVggBlock

CASES = [c for c in golden_cases("deimv2") if "_loss_" not in c.name]  # loss cases run in training mode
ADAPTER = get_family("deimv2").parity
Tensors = dict[str, torch.Tensor]


def _outputs(model: nn.Module, inputs: Tensors, case: dict) -> Tensors:
    with torch.no_grad():
        return ADAPTER.run(model, inputs, case)


def _by_detection(ours: Tensors, reference: Tensors) -> Tensors:
    """Our ``post.*`` ordered like the reference's (another run of ours), matched by (query, class).

    Exact, unlike the parity adapter's matching of golden detections to queries by their boxes (ambiguous for
    near-equal boxes); the encoder must have selected the same queries in the same order.
    """
    assert torch.equal(ours["decoder.enc_topk_index"], reference["decoder.enc_topk_index"])
    classes = ours["pred_logits"].shape[-1]
    our_keys = ours["post.query_indices"] * classes + ours["post.labels"]
    ref_keys = reference["post.query_indices"] * classes + reference["post.labels"]
    perm = torch.stack([o.argsort()[r.argsort().argsort()] for o, r in zip(our_keys, ref_keys, strict=True)])
    assert torch.equal(our_keys.gather(1, perm), ref_keys)
    return {k: _take(v, perm) if k.startswith("post.") else v for k, v in ours.items()}


def _take(values: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``values`` [B, K, ...] reordered along K by ``perm`` [B, K]."""
    return values.gather(1, perm.reshape(*perm.shape, *[1] * (values.ndim - 2)).expand_as(values))


def _failures(ours: Tensors, reference: Tensors, inputs: Tensors, case: dict) -> list[str]:
    if "post.query_indices" in reference:  # our undeployed run
        aligned = _by_detection(ours, reference)
        aligned.pop("post.query_indices")
        reference = {k: v for k, v in reference.items() if k != "post.query_indices"}
    else:
        aligned = ADAPTER.align(ours, reference, inputs, case)
    atols, default_atol, rtol = ADAPTER.tolerance(case, "float32")
    checks = compare_tensors(aligned, reference, list(reference), atols, default_atol, set(), rtol)
    return [f"{c.name}: {c.max_abs} > {c.atol} {c.note}" for c in checks if not c.passed]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def golden(request: pytest.FixtureRequest) -> tuple[Path, dict, Tensors, Tensors]:
    case_dir: Path = request.param
    case = json.loads((case_dir / "case.json").read_text())
    inputs = load_file(str(case_dir / "inputs.safetensors"))
    eager = _outputs(convert_case("deimv2", case_dir), inputs, case)
    return case_dir, case, inputs, eager


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_deployed_outputs_match_undeployed_and_golden(golden: tuple, channels_last: bool) -> None:
    case_dir, case, inputs, eager = golden
    model = convert_case("deimv2", case_dir).deploy(channels_last=channels_last)
    deployed = _outputs(model, inputs, case)
    assert not _failures(deployed, eager, inputs, case)
    # Detections with near-tied scores (gaps below float32 noise, see the case's checks) may swap places;
    # in the undeployed run's order, the parity adapter matches them to the golden ones as it does for it.
    reference = load_file(str(case_dir / "outputs.safetensors"))
    assert not _failures(_by_detection(deployed, eager), reference, inputs, case)


def test_deploy_folds_every_batchnorm_and_merges_repvgg(golden: tuple) -> None:
    model = convert_case("deimv2", golden[0])
    body = model.model
    assert count_batchnorms(body.backbone) + count_batchnorms(body.encoder) > 0
    blocks = [m for m in body.encoder.modules() if isinstance(m, Deimv2RepVggBlock)]
    assert model.deploy() is model and model.is_deployed and body.is_deployed
    assert count_batchnorms(model) == 0
    assert blocks and all(b.fused is not None and b.conv1 is None and b.conv2 is None for b in blocks)
    assert not any(p.requires_grad for p in body.encoder.parameters())


def test_deploy_is_idempotent(golden: tuple) -> None:
    case_dir, case, inputs, _ = golden
    model = convert_case("deimv2", case_dir).deploy()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = _outputs(model, inputs, case)
    model.deploy()
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    second = _outputs(model, inputs, case)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_training_mode_and_saving_are_refused(tmp_path: Path) -> None:
    model = convert_case("deimv2", CASES[0])
    with pytest.raises(RuntimeError, match="eval mode"):
        model.train().deploy()
    assert count_batchnorms(model) > 0  # nothing was folded
    model.eval().deploy()
    with pytest.raises(RuntimeError, match="inference only"):
        model.train()
    with pytest.raises(RuntimeError, match="save the undeployed model"):
        model.save_pretrained(tmp_path / "deployed")
    with pytest.raises(RuntimeError, match="save the undeployed model"):
        model.model.save_pretrained(tmp_path / "body")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("bias", [False, True])
def test_fold_batchnorm_equals_conv_then_norm(bias: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=bias).double()
    norm = nn.BatchNorm2d(6).double().eval()
    with torch.no_grad():
        for tensor in (norm.weight, norm.bias, norm.running_mean):
            tensor.copy_(torch.randn(6, generator=generator, dtype=torch.float64))
        norm.running_var.copy_(torch.rand(6, generator=generator, dtype=torch.float64) + 0.1)
        x = torch.randn(2, 4, 5, 5, generator=generator, dtype=torch.float64)
        expected = norm(conv(x))
        fold_batchnorm(conv, norm)
        torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-12)
    with pytest.raises(RuntimeError, match="eval mode"):
        fold_batchnorm(conv, norm.train())
