"""Fine-tuning across processes (torchrun, gloo on CPU), the criterion's process-averaged box count, resuming,
and the options that depend on the machine (mixed precision, SyncBatchNorm).

What the two-process run is compared with: one process at the same global batch *with the same BatchNorm
batches*, i.e. ``--batch-size 1 --gradient-accumulation-steps 2`` against 2 processes x ``--batch-size 1``
(each micro-batch / process normalises its BatchNorm over one image in both; a single batch of 2 would not, and
SyncBatchNorm does not run on CPU). Every image holds one box, so the per-micro-batch box count of gradient
accumulation equals the process-averaged count of the distributed run; the data set is the 2 images of one
step, so which process gets which image does not matter. Denoising is off: its noise is drawn per process.
Under these conditions the logged loss of every step and the trained parameters must agree.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from visionports.cli import main
from visionports.data.synthetic_coco import make_synthetic_coco
from visionports.models.deimv2 import Deimv2Config, Deimv2ForObjectDetection, Deimv2ImageProcessor
from visionports.training import distributed

SIZE = 96
FLAT = [
    "--batch-size",
    "1",
    "--ema-warmups",
    "1",
    "--warmup-steps",
    "0",
    "--flat-epochs",
    "10",
    "--no-evaluate",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_coco(tmp_path_factory.mktemp("shapes"), 2, 1, (SIZE, SIZE), 1, seed=1)


@pytest.fixture(scope="module")
def start_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("atto")
    config = Deimv2Config.from_preset("atto", num_queries=20, num_denoising=0)
    Deimv2ForObjectDetection(config).save_pretrained(folder)
    Deimv2ImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(folder)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(_free_port()), "-m", "visionports.cli", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)


def _train(args: list[str]) -> None:
    """``visionports train`` in this process, on one thread like each torchrun process (same float sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(main, ["train", *args])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output


def _losses(checkpoint: Path) -> list[float]:
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def _parameters(folder: Path) -> dict[str, torch.Tensor]:
    """The saved weights less BatchNorm's running statistics (DDP keeps the main process's, by design)."""
    weights = load_file(folder / "model.safetensors")
    return {k: v for k, v in weights.items() if "running_" not in k and "num_batches_tracked" not in k}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    worst = max(a, key=lambda k: (a[k].float() - b[k].float()).abs().max().item())
    assert torch.allclose(a[worst].float(), b[worst].float(), atol=atol), (
        f"{worst}: {(a[worst].float() - b[worst].float()).abs().max().item():.3g}"
    )


def test_two_processes_match_one_and_write_once(data: Path, start_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    out.mkdir()
    (out / "stale.txt").write_text("replaced by --overwrite")
    common = ["--model", str(start_model), "--data", str(data), "--max-steps", "2", *FLAT]
    run = _torchrun(["train", *common, "--output", str(out), "--overwrite"])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("fine-tuned: 2 steps on 2 images") == 1, run.stdout
    assert "Error" not in run.stdout + run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # no partial / old / lock siblings left
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    checkpoint = out / "checkpoints" / "checkpoint-2"
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in checkpoint.iterdir()}  # both trained

    single = tmp_path / "single"
    _train([*common, "--output", str(single), "--gradient-accumulation-steps", "2"])
    reference = single / "checkpoints" / "checkpoint-2"
    assert _losses(checkpoint) == pytest.approx(_losses(reference), rel=1e-5) and len(_losses(reference)) == 2
    _assert_same(_parameters(checkpoint), _parameters(reference))  # the trained weights
    _assert_same(_parameters(out), _parameters(single))  # the EMA model saved at the end


def test_resume_latest_continues_to_the_same_weights(data: Path, start_model: Path, tmp_path: Path) -> None:
    common = ["--model", str(start_model), "--data", str(data), *FLAT]
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    _train([*common, "--output", str(resumed), "--max-steps", "2", "--save-steps", "2"])
    first = (resumed / "checkpoints" / "checkpoint-2" / "model.safetensors").read_bytes()
    _train([*common, "--output", str(resumed), "--max-steps", "4", "--save-steps", "2", "--resume", "latest"])
    _train([*common, "--output", str(straight), "--max-steps", "4", "--save-steps", "2"])
    # the resumed run's checkpoint left as it was; the trainer's history runs on from it
    assert (resumed / "checkpoints" / "checkpoint-2" / "model.safetensors").read_bytes() == first
    last, reference = resumed / "checkpoints" / "checkpoint-4", straight / "checkpoints" / "checkpoint-4"
    assert _losses(last) == pytest.approx(_losses(reference), rel=1e-5) and len(_losses(reference)) == 4
    _assert_same(_parameters(last), _parameters(reference))
    _assert_same(_parameters(resumed), _parameters(straight))  # EMA, restored from checkpoint-2/ema


def test_resume_and_precision_refusals(data: Path, start_model: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["train", "--model", str(start_model), "--data", str(data), "--max-steps", "1"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for extra, message in [
        (
            ["--output", str(tmp_path / "new"), "--resume", "latest"],
            "--resume latest: no checkpoint-N folder",
        ),
        (["--output", str(tmp_path / "new"), "--resume", str(tmp_path)], "not a trainer checkpoint folder"),
        (
            ["--output", str(other), "--resume", "latest", "--overwrite"],
            "cannot be combined with --overwrite",
        ),
        (["--output", str(other), "--resume", "latest"], "holds no checkpoints/"),
        (["--output", str(tmp_path / "new"), "--bf16", "--fp16"], "--bf16 and --fp16 exclude each other"),
        (["--output", str(data), "--overwrite"], "holds"),  # would delete the --data folder: refused
    ]:
        result = runner.invoke(main, [*base, *extra])
        assert result.exit_code == 1 and message in result.output, (extra, result.output)
    assert not (tmp_path / "new").exists() and (other / "notes.txt").read_text() == "mine"
    if not torch.cuda.is_available():
        result = runner.invoke(main, [*base, "--output", str(tmp_path / "new"), "--fp16"])
        assert result.exit_code == 1 and "Error: --fp16 needs a CUDA GPU" in result.output


def test_bf16_and_sync_bn_on_one_cpu_process(data: Path, start_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "bf16"
    args = ["--model", str(start_model), "--data", str(data), "--output", str(out), "--max-steps", "1", *FLAT]
    with pytest.warns(UserWarning, match="--sync-bn: a single process has nothing to synchronise"):
        _train([*args, "--bf16", "--sync-bn"])
    assert (
        json.loads((out / "checkpoints" / "checkpoint-1" / "trainer_state.json").read_text())["global_step"]
        == 1
    )


def test_mean_counts_in_one_process() -> None:
    assert distributed.world_size() == 1 and distributed.is_main_process()
    assert distributed.mean_counts(3, 0.0, 0.5) == (3.0, 1.0, 1.0)


# one process of a gloo world of 2: (boxes, union matches) per rank; the original sums, halves, clamps at 1
_MEAN_COUNTS = """
import torch.distributed as dist
from visionports.training import distributed
dist.init_process_group("gloo")
rank = dist.get_rank()
print(distributed.world_size(), distributed.mean_counts(*[(3, 0), (1, 1)][rank]))
dist.destroy_process_group()
"""


def test_mean_counts_across_two_processes() -> None:
    port = str(_free_port())
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": port,
        "WORLD_SIZE": "2",
        "OMP_NUM_THREADS": "1",
    }
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", _MEAN_COUNTS],
            env={**env, "RANK": str(rank)},
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0].strip() for process in ranks]
    assert [process.returncode for process in ranks] == [0, 0]
    assert outputs == ["2 (2.0, 1.0)"] * 2  # (3 + 1) / 2; max((0 + 1) / 2, 1)


def test_criterion_divides_by_the_process_averaged_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    from visionports.models.deimv2 import loss_deimv2

    torch.manual_seed(0)
    model = Deimv2ForObjectDetection(
        Deimv2Config.from_preset("atto", num_queries=20, num_denoising=0)
    ).train()
    labels = [
        {
            "class_labels": torch.tensor([1, 2]),
            "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.3, 0.3, 0.2, 0.2]]),
        }
    ]
    targets = loss_deimv2.prepare_targets(
        labels, 1, model.config.num_labels, torch.device("cpu"), torch.float32
    )
    outputs = model(torch.rand(1, 3, 64, 64), labels=labels).training_outputs
    criterion = loss_deimv2.Deimv2Criterion(model.config)
    alone = criterion(outputs, targets)
    seen = []

    def other_process_has_more(*counts: float, device: torch.device) -> tuple[float, ...]:
        seen.append(counts)
        return tuple(2 * c for c in counts)  # as if the other process held 3x as many boxes

    monkeypatch.setattr(loss_deimv2, "mean_counts", other_process_has_more)
    shared = criterion(outputs, targets)
    assert seen and seen[0][0] == 2
    for name in ("loss_bbox", "loss_giou", "loss_mal", "loss_bbox_aux_0"):
        torch.testing.assert_close(shared[name], alone[name] / 2)
