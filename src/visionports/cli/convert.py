"""``visionports convert FAMILY CHECKPOINT OUTPUT_DIR``: an original checkpoint -> a ``from_pretrained`` folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import FamilyChoice


@click.command()
@click.argument("family", metavar="FAMILY", type=FamilyChoice())
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--variant", help="Released variant (e.g. atto, s); inferred from the weights when omitted.")
@click.option(
    "--image-size",
    type=click.IntRange(min=1),
    help="Default (square) input size, when it differs from the stored anchors.",
)
@click.option("--allow-partial", is_flag=True, help="Save even if some weights are missing or unexpected.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT_DIR if it exists.")
@click.option(
    "--allow-non-finite",
    is_flag=True,
    help="Convert weights holding NaN/inf (or integers where floats belong) with a warning instead of refusing.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A config value the weights cannot tell (JSON value), e.g. --set num_attention_heads=4.",
)
def convert(family: str, checkpoint: Path, output_dir: Path, variant: str | None, image_size: int | None,
            allow_partial: bool, overwrite: bool, allow_non_finite: bool, settings: tuple[str, ...]) -> None:  # fmt: skip
    """Convert an original CHECKPOINT of FAMILY into a from_pretrained folder OUTPUT_DIR."""
    from ..core.conversion import convert_checkpoint
    from ..core.registry import get_family

    overrides = parse_settings(settings)
    if image_size:
        overrides["eval_image_size"] = [image_size, image_size]
    result = convert_checkpoint(
        get_family(family),
        checkpoint,
        output_dir,
        variant=variant,
        allow_partial=allow_partial,
        overwrite=overwrite,
        allow_non_finite=allow_non_finite,
        config_overrides=overrides or None,
    )
    report = result.report
    name = getattr(result.config, "variant", None) or "custom"
    click.echo(
        f"{family} ({name}): {result.num_parameters:,} parameters, missing {len(report.missing)} / unexpected "
        f"{len(report.unexpected)} / mis-shaped {len(report.mismatched)}, skipped {len(report.skipped)} "
        f"-> {output_dir}"
    )


def parse_settings(settings: tuple[str, ...]) -> dict:
    """``KEY=VALUE`` pairs, each value read as JSON when it parses (else kept as a string)."""
    values = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values
