"""Checkpoint conversion shared by every family: load, infer, map, check, load strictly, save atomically.

The output folder is written whole or not at all: one writer per folder (a lock beside it), the new folder
built beside it and swapped in, and only a folder that is empty or a previous conversion's output replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedConfig, PreTrainedModel

from .checkpoint import CheckpointError, StateDict, load_state_dict
from .errors import OutputFolderError, VisionportsError
from .files import (
    is_within,
    make_temporary_sibling_dir,
    output_lock,
    remove_stale_siblings,
    set_usual_permissions,
    swap_into_place,
)
from .key_mapping import MappedStateDict
from .load_report import LoadReport, find_value_problems, load_mapped
from .model_card import Provenance, file_sha256, render_card, write_card
from .registry import ModelFamily, all_families


class NonFiniteWeightsWarning(UserWarning):
    """Weights with NaN/inf or integer values were converted because ``allow_non_finite`` was given."""


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
    allow_non_finite: bool = False,
) -> ConversionResult:
    """Convert an original checkpoint to a ``from_pretrained`` model (saved when ``output_dir`` is given).

    Nothing is written unless the weights cover the model exactly (or ``allow_partial``) and hold finite
    floating-point values (or ``allow_non_finite``, which warns), and the output folder only appears once
    complete. ``overwrite`` replaces only an empty folder or a previous conversion's output.
    """
    target = Path(output_dir) if output_dir is not None else None
    if target is not None:
        check_output_dir(target, overwrite, protect=(Path(checkpoint),))
    steps = ["read checkpoint", "infer config", "map keys", "load weights"] + (["save"] if target else [])
    bar = tqdm(total=len(steps), desc=f"convert {family.name}", disable=not progress, leave=False)

    def step(name: str) -> None:
        bar.set_postfix_str(name)

    step(steps[0])
    state_dict, source = load_state_dict(checkpoint)
    state_dict = family.prepare(state_dict)  # e.g. wrapper prefixes dropped, once for the steps below
    bar.update()
    step(steps[1])
    config = _infer_config(family, state_dict, variant, config_overrides or {})
    bar.update()
    step(steps[2])
    mapped = family.convert_state_dict(state_dict, config)
    bar.update()
    step(steps[3])
    model = family.model_class(config).eval()
    check_weight_values(mapped, model, allow_non_finite)
    report = load_mapped(model, mapped, allow_partial=allow_partial)
    bar.update()
    result = ConversionResult(model=model, config=config, report=report, weights_source=source)
    model.card_provenance = conversion_provenance(result, checkpoint)  # what its model card records
    if target is not None:
        step(steps[4])
        save_atomically(result, family, target, overwrite=overwrite, protect=(Path(checkpoint),))
        result.output_dir = target
        bar.update()
    bar.close()
    return result


def conversion_provenance(result: ConversionResult, checkpoint: str | Path) -> Provenance:
    """What a converted folder's model card records: the checkpoint's name and sha256, variant, load report."""
    return Provenance(
        checkpoint=Path(checkpoint).name,
        sha256=file_sha256(checkpoint),
        variant=getattr(result.config, "variant", None),
        weights_source=result.weights_source or None,
        load_report=result.report.summary(),
    )


def _infer_config(
    family: ModelFamily, state_dict: StateDict, variant: str | None, overrides: dict[str, Any]
) -> PreTrainedConfig:
    """``family.infer_config``; a failure on weights with NaN/inf or integer values is said to be theirs."""
    try:
        return family.infer_config(state_dict, variant=variant, **overrides)
    except Exception as err:
        problems = find_value_problems(state_dict)
        if not problems:
            raise
        raise CheckpointError(
            f"checkpoint: cannot infer the model's configuration from these weights: {problems.describe()} "
            f"({type(err).__name__}: {err})"
        ) from err


def check_weight_values(mapped: MappedStateDict, model: torch.nn.Module, allow: bool = False) -> None:
    """Refuse (``allow``: warn about) mapped weights with NaN/inf, or integers where the model is floating."""
    expected = {k: v.dtype for k, v in model.state_dict().items()}
    problems = find_value_problems(mapped.tensors, expected, mapped.source)
    if not problems:
        return
    if not allow:
        raise CheckpointError(
            f"checkpoint: {problems.describe()}; refusing to convert them "
            "(pass --allow-non-finite / allow_non_finite=True to convert anyway)"
        )
    warnings.warn(f"converting anyway: {problems.describe()}", NonFiniteWeightsWarning, stacklevel=3)


def check_output_dir(target: Path, overwrite: bool, protect: Sequence[Path] = ()) -> None:
    """Refuse an output folder that must not be written or replaced.

    Never the current directory (or a folder holding it), nor one holding a ``protect`` path (the checkpoint);
    an existing non-empty folder only with ``overwrite``, and only when it is a previous conversion's output.
    """
    if os.path.lexists(target) and not target.is_dir():
        raise OutputFolderError(f"OUTPUT_DIR {target} exists and is not a folder")
    if is_within(Path.cwd(), target):
        raise OutputFolderError(f"OUTPUT_DIR {target} is (or holds) the current directory; name a new folder")
    for path in protect:
        if is_within(path, target):
            raise OutputFolderError(f"OUTPUT_DIR {target} holds {path}, the checkpoint; name another folder")
    if not target.is_dir() or not any(target.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"output_dir {target} exists and is not empty; pass overwrite=True / --overwrite"
        )
    if not is_conversion_output(target):
        raise OutputFolderError(
            f"refusing to replace OUTPUT_DIR {target}: it is not empty and does not look like a visionports "
            "conversion output (a config.json of a converted model, no sub-folders); remove it yourself or "
            "name another folder"
        )


def is_conversion_output(folder: Path) -> bool:
    """Whether ``folder`` holds what a conversion writes: a config.json of a converted model, no sub-folders."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if any(p.is_dir() for p in folder.iterdir()) or not isinstance(config, dict):
        return False
    ours = {c.model_type for f in all_families() if f.converts for _, c, _ in f.auto_models}
    return config.get("model_type") in ours


def save_atomically(
    result: ConversionResult,
    family: ModelFamily,
    target: Path,
    *,
    overwrite: bool = True,
    protect: Sequence[Path] = (),
) -> None:
    """Write model, config, processor, tokenizer and model card beside ``target``, then swap the folder into place.

    One writer per folder (``OutputFolderError`` if another holds it); leftovers of a killed writer are removed
    first. On any failure (a full disk among them) nothing changes at ``target``.
    """
    target = Path(os.path.abspath(target))
    with output_lock(target):
        remove_stale_siblings(target)
        check_output_dir(target, overwrite, protect)
        tmp = make_temporary_sibling_dir(target)
        try:
            _write_folder(result, family, tmp)
            swap_into_place(tmp, target)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, VisionportsError):
                raise
            reason = err.strerror or str(err)
            raise OutputFolderError(
                f"could not save the converted model to {target}: {reason}; nothing was changed there"
            ) from err
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _write_folder(result: ConversionResult, family: ModelFamily, folder: Path) -> None:
    result.model.save_pretrained(folder)
    for make in (family.make_processor, family.make_tokenizer):
        companion = make(result.config) if make is not None else None
        if companion is not None:
            companion.save_pretrained(folder)
    provenance = getattr(result.model, "card_provenance", None)
    write_card(folder, render_card(family, result.config, provenance), replace_user_card=True)
    set_usual_permissions(folder)


def build_on_meta(family: ModelFamily, config: PreTrainedConfig) -> PreTrainedModel:
    """Instantiate a model without allocating its weights (for key/shape checks)."""
    with torch.device("meta"):
        return family.model_class(config)
