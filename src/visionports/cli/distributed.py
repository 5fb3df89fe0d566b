"""``--ray [ADDRESS]`` and its options, shared by the verbs that can run on a Ray cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

RAY_OPTION_NAMES = ("actors", "cpus_per_actor", "gpus_per_actor", "shard_size", "results_format", "pictures")


def ray_options(command: Callable) -> Callable:
    """``--ray [ADDRESS]`` and the options of a Ray job (refused without ``--ray``)."""
    decorators = [
        click.option(
            "--ray",
            "ray_address",
            is_flag=False,
            flag_value="local",
            default=None,
            metavar="[ADDRESS]",
            help="Run on Ray: alone, a Ray instance on this machine; `auto`, the cluster this machine "
            "joined; `ray://HOST:10001`, a remote one. --output then holds sharded results.",
        ),  # fmt: skip
        click.option(
            "--actors",
            type=click.IntRange(min=1),
            default=2,
            show_default=True,
            help="With --ray: model replicas.",
        ),  # fmt: skip
        click.option(
            "--cpus-per-actor",
            type=click.FloatRange(min=0, min_open=True),
            default=1.0,
            show_default=True,
            help="With --ray: CPUs reserved per replica.",
        ),  # fmt: skip
        click.option(
            "--gpus-per-actor",
            type=click.FloatRange(min=0),
            default=0.0,
            show_default=True,
            help="With --ray: GPUs per replica (1: one replica per GPU).",
        ),  # fmt: skip
        click.option(
            "--shard-size",
            type=click.IntRange(min=1),
            default=256,
            show_default=True,
            help="With --ray: images per result file, the unit a re-run resumes from.",
        ),  # fmt: skip
        click.option(
            "--results-format",
            type=click.Choice(["jsonl", "parquet"]),
            default="jsonl",
            show_default=True,
            help="With --ray: format of the result shards.",
        ),  # fmt: skip
        click.option("--pictures", is_flag=True, help="With --ray: also write the annotated pictures."),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def ray_run_options(ctx: click.Context, params: dict[str, Any], batch_size: int) -> Any:
    """The ``RayOptions`` of ``--ray`` (None without it; its options alone are refused)."""
    address = params.pop("ray_address")
    chosen = {name: params.pop(name) for name in RAY_OPTION_NAMES}
    if address is None:
        given = [
            n for n in RAY_OPTION_NAMES if ctx.get_parameter_source(n) != click.core.ParameterSource.DEFAULT
        ]
        if given:
            raise click.BadParameter("applies with --ray only", param_hint=f"--{given[0].replace('_', '-')}")
        return None
    from ..distributed.ray_runner import RayOptions

    return RayOptions(address=None if address == "local" else address, batch_size=batch_size, **chosen)


def echo_ray_run(run: Any) -> None:
    click.echo(f"{run.records} record(s) in {run.shards - run.resumed} shard(s)"
               + (f", {run.resumed} shard(s) kept from an earlier run" if run.resumed else "")
               + (f", {run.errors} unreadable input(s) (see their records' error)" if run.errors else "")
               + f" -> {run.output}")  # fmt: skip
