"""Refuse an exported graph that disagrees with the eager model, with the figures in the message."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..core.errors import ModelFolderError, VisionportsError
from ..core.files import atomic_write
from .cache import cache_key, cached_entry
from .runtimes import open_graph, runtime_version

VALIDATION_FILE = "validation.json"
GOLDEN_SEED = 0  # of every family's deterministic validation input


class GraphValidationError(VisionportsError, RuntimeError):
    """An exported graph whose outputs disagree with the eager model beyond the tolerance."""


def golden_image(height: int, width: int, seed: int = GOLDEN_SEED) -> Image.Image:
    """A deterministic random RGB image (the image families' validation input)."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy(), "RGB")


def compare(
    got: Mapping[str, torch.Tensor],
    want: Mapping[str, torch.Tensor],
    tolerances: Mapping[str, float],
    what: str,
) -> dict[str, float]:
    """``{"<name>_max_abs_diff": ..., "<name>_tolerance": ...}`` per output; raises beyond a tolerance.

    ``what`` names the graph in the message (``"the onnxruntime graph"``).
    """
    figures: dict[str, float] = {}
    failed = []
    for name, tolerance in tolerances.items():
        diff = float((got[name].float() - want[name].detach().float().cpu()).abs().max())
        figures[f"{name}_max_abs_diff"] = diff
        figures[f"{name}_tolerance"] = tolerance
        if not diff <= tolerance:  # NaN fails too
            failed.append(f"{name} {diff:.3g} (tolerance {tolerance:g})")
    if failed:
        raise GraphValidationError(
            f"{what} disagrees with the eager model on the validation input: max |diff| "
            f"{', '.join(failed)}; use --backend torch"
        )
    return figures


def validated_graphs(
    model_dir: Path,
    backend: str,
    settings: Mapping[str, object],
    export: Callable[[Path], dict[str, Path]],
    validate: Callable[[dict[str, Any]], dict[str, float]],
) -> Path:
    """The cache entry of ``model_dir``'s graphs for ``backend`` and ``settings``, built on first use.

    ``export(folder)`` writes the graphs into ``folder`` and returns them by name; ``validate(sessions)``
    gets them opened on the CPU in ``backend`` and returns the figures (or raises
    :class:`GraphValidationError`, and nothing is cached). The figures and settings are kept in
    ``validation.json`` beside the graphs.
    """
    from ..tasks.runner import package_version

    versions = {
        backend: runtime_version(backend),
        "torch": torch.__version__,
        "visionports": package_version(),
    }
    keyed = {**settings, "backend": backend, **versions}

    def build(folder: Path) -> None:
        graphs = export(folder)
        sessions = {name: open_graph(path, backend, torch.device("cpu")) for name, path in graphs.items()}
        figures = validate(sessions)
        text = json.dumps({**figures, **keyed}, indent=2, default=str) + "\n"
        atomic_write(folder / VALIDATION_FILE, lambda tmp: tmp.write_text(text))

    return cached_entry(model_dir, cache_key(model_dir, keyed), build)


def require_model_type(model_dir: Path, model_type: str, backend: str, family: str, verb: str) -> None:
    """Refuse a folder whose ``config.json`` is not ``model_type`` (the family this backend module serves)."""
    config = model_dir / "config.json"
    found = json.loads(config.read_text()).get("model_type") if config.is_file() else None
    if found != model_type:
        raise ModelFolderError(
            f"--backend {backend} serves {family} folders for {verb}; {model_dir} holds model_type {found!r}"
        )


def validation_figures(entry: Path) -> dict[str, Any]:
    """What ``validation.json`` of a cache entry records."""
    return json.loads((entry / VALIDATION_FILE).read_text())
