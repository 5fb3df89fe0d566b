"""Checkpoint conversion shared by every family: load, infer, map, load strictly, save atomically."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedConfig, PreTrainedModel

from .checkpoint import load_state_dict
from .files import make_temporary_sibling_dir
from .load_report import LoadReport, load_mapped
from .registry import ModelFamily


@dataclass
class ConversionResult:
    model: PreTrainedModel
    config: PreTrainedConfig
    report: LoadReport
    weights_source: str  # where in the checkpoint the weights were found (e.g. "ema.module")
    output_dir: Path | None = None

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def convert_checkpoint(
    family: ModelFamily,
    checkpoint: str | Path,
    output_dir: str | Path | None = None,
    *,
    variant: str | None = None,
    allow_partial: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    config_overrides: dict[str, Any] | None = None,
) -> ConversionResult:
    """Convert an original checkpoint to a ``from_pretrained`` model (saved when ``output_dir`` is given).

    Nothing is written unless the weights cover the model exactly (or ``allow_partial``), and the output
    folder only appears once complete.
    """
    target = Path(output_dir) if output_dir is not None else None
    if target is not None and target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output_dir {target} exists and is not empty; pass overwrite=True / --overwrite"
        )
    steps = ["read checkpoint", "infer config", "map keys", "load weights"] + (["save"] if target else [])
    bar = tqdm(total=len(steps), desc=f"convert {family.name}", disable=not progress, leave=False)

    def step(name: str) -> None:
        bar.set_postfix_str(name)

    step(steps[0])
    state_dict, source = load_state_dict(checkpoint)
    state_dict = family.prepare(state_dict)  # e.g. wrapper prefixes dropped, once for the steps below
    bar.update()
    step(steps[1])
    config = family.infer_config(state_dict, variant=variant, **(config_overrides or {}))
    bar.update()
    step(steps[2])
    mapped = family.convert_state_dict(state_dict, config)
    bar.update()
    step(steps[3])
    model = family.model_class(config).eval()
    report = load_mapped(model, mapped, allow_partial=allow_partial)
    bar.update()
    result = ConversionResult(model=model, config=config, report=report, weights_source=source)
    if target is not None:
        step(steps[4])
        save_atomically(result, family, target)
        result.output_dir = target
        bar.update()
    bar.close()
    return result


def save_atomically(result: ConversionResult, family: ModelFamily, target: Path) -> None:
    """Write model, config, processor and tokenizer to a temporary sibling folder, then move it into place."""
    tmp = make_temporary_sibling_dir(target)
    try:
        result.model.save_pretrained(tmp)
        for make in (family.make_processor, family.make_tokenizer):
            companion = make(result.config) if make is not None else None
            if companion is not None:
                companion.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_on_meta(family: ModelFamily, config: PreTrainedConfig) -> PreTrainedModel:
    """Instantiate a model without allocating its weights (for key/shape checks)."""
    with torch.device("meta"):
        return family.model_class(config)
