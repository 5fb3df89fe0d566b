"""``visionports parity [FAMILY] CASE_DIR`` and ``visionports parity-packed --model DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import FamilyChoice, deprecated, model_option

DEFAULT_SIZES = "224x224,224x336,112x112,448x224"


@click.command()
@click.argument("first", metavar="[FAMILY]")
@click.argument("second", metavar="CASE_DIR", required=False)
@click.option(
    "--float64/--no-float64", default=True, help="Also run the strict float64 check when available."
)
@click.option("--sizes", default=DEFAULT_SIZES, hidden=True, help="Deprecated `parity packed` form.")
def parity(first: str, second: str | None, float64: bool, sizes: str) -> None:
    """Check the port against a golden CASE_DIR of the original implementation (exit 0 only on parity).

    FAMILY defaults to the name of the case's parent folder (cases live in <family>/<case>/).
    """
    from ..core.parity import run_parity
    from ..core.registry import get_family

    family, case_dir = (first, Path(second)) if second is not None else (None, Path(first))
    if not case_dir.is_dir():
        raise click.BadParameter(f"{case_dir} is not a folder", param_hint="CASE_DIR")
    if family == "packed":
        deprecated(
            "`visionports parity packed DIR` is deprecated; use `visionports parity-packed --model DIR`"
        )
        _packed_parity(case_dir, sizes)
    family = family or case_dir.resolve().parent.name
    choices = FamilyChoice().choices
    if family.lower() not in choices:
        raise click.BadParameter(
            f"{family!r} is not one of {', '.join(choices)} (without FAMILY, the case folder's parent names it)",
            param_hint="FAMILY",
        )
    report = run_parity(get_family(family), case_dir, float64=float64)
    click.echo(report.render())
    sys.exit(0 if report.ok else 1)


@click.command("parity-packed")
@model_option("An AIMv2, SigLIP2 or DINOv3 folder saved by transformers (or by the packed encoders).")
@click.option("--sizes", default=DEFAULT_SIZES, show_default=True,
              help="Image sizes HxW, comma-separated (multiples of the patch size).")  # fmt: skip
def parity_packed(model_dir: Path, sizes: str) -> None:
    """Check the packed encoder of --model against the standard model, image by image (exit 0 on parity)."""
    from ..core.files import require_family_folder

    require_family_folder(model_dir, "parity-packed")
    _packed_parity(model_dir, sizes)


def _packed_parity(folder: Path, sizes: str) -> None:
    from ..models.packed.parity_packed import compare_packed

    checks = compare_packed(folder, parse_sizes(sizes))
    click.echo(f"{'size':>10} {'rows':>6} {'max abs':>10} {'pooled':>10}  result")
    for c in checks:
        pooled = "-" if c.pooled_max_abs is None else f"{c.pooled_max_abs:.2e}"
        result = "pass" if c.passed else "FAIL"
        click.echo(f"{c.size[0]:>4}x{c.size[1]:<5} {c.rows:>6} {c.max_abs:>10.2e} {pooled:>10}  {result}")
    ok = all(c.passed for c in checks)
    click.echo("PARITY OK" if ok else "PARITY FAILED")
    sys.exit(0 if ok else 1)


def parse_sizes(sizes: str) -> list[tuple[int, int]]:
    """``"224x224,224x336"`` -> ``[(224, 224), (224, 336)]``."""
    try:
        parsed = [tuple(int(v) for v in item.lower().split("x")) for item in sizes.split(",") if item]
    except ValueError as err:
        raise click.BadParameter(
            f"expected sizes like 224x224,224x336, got {sizes!r}", param_hint="--sizes"
        ) from err
    if not parsed or any(len(size) != 2 for size in parsed):
        raise click.BadParameter(f"expected sizes like 224x224,224x336, got {sizes!r}", param_hint="--sizes")
    return parsed
