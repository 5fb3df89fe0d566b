"""What every verb shares: the group, error reporting, the ``--model`` folder and its family, choices."""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import click

from ..core.registry import converting_family_names, family_names


class FamilyChoice(click.Choice):
    """Families of the registry (with aliases such as ``sam3-lite-text``), read when a command runs.

    ``converting`` keeps those with a checkpoint converter (``convert``, ``parity``).
    """

    def __init__(self, converting: bool = True) -> None:
        self._converting = converting
        super().__init__([], case_sensitive=False)

    @property
    def choices(self) -> tuple[str, ...]:
        names = converting_family_names if self._converting else family_names
        return tuple(names(with_aliases=True))

    @choices.setter
    def choices(self, value: object) -> None:  # click.Choice assigns its list; the registry is the source
        pass


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input can cause: one ``Error:`` line and exit 1, never a traceback."""
    from huggingface_hub.errors import StrictDataclassError

    from ..core.errors import VisionportsError

    return (VisionportsError, ValueError, TypeError, OSError, ImportError, StrictDataclassError)


def _close_progress_bars() -> None:
    """Close the progress bars still open, so the ``Error:`` line that follows starts a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


class VisionportsGroup(click.Group):
    """Every verb's errors about its inputs (package errors, bad values, files) reported the same way: one
    ``Error:`` line on a line of its own, exit status 1, no traceback.

    Verbs in ``lazy_commands`` (name -> ``(module, function, short help)``) are imported on first use, so
    ``--help`` lists them without loading any.
    """

    lazy_commands: dict[str, tuple[str, str, str]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            module, function, _ = self.lazy_commands[cmd_name]
            self.add_command(getattr(importlib.import_module(module), function), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(map(len, self.list_commands(ctx)), default=0)
        rows = [
            (name, (self.commands.get(name) or click.Command(name, help=self.lazy_commands[name][2]))
             .get_short_help_str(limit))
            for name in self.list_commands(ctx)
        ]  # fmt: skip
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except _user_errors() as err:
            _close_progress_bars()
            raise click.ClickException(" ".join(str(err).splitlines()) or type(err).__name__) from err


@click.group(cls=VisionportsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="visionports")
def main() -> None:
    """Vision models ported into transformers, with parity to their originals.

    Grammar: visionports VERB [INPUTS] --model DIR [OPTIONS]; only `convert` names a family.
    """


HUB_ID_HELP = "Or a Hub id (owner/name) already in the local Hugging Face cache; nothing is downloaded."


def model_option(help_text: str = "A converted model folder (from `visionports convert`).") -> Callable:
    """The ``--model DIR`` option every verb but ``convert`` takes (passed on as ``model_dir``): a folder, or a
    Hub id resolved to its snapshot in the local Hugging Face cache."""
    return click.option(
        "--model",
        "model_dir",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        callback=_resolve_model,
        help=f"{help_text} {HUB_ID_HELP}",
    )


def _resolve_model(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    from ..core.files import resolve_model_folder

    return None if value is None else resolve_model_folder(value)


def device_options(command: Callable) -> Callable:
    """``--device`` and ``--dtype`` (passed on as ``device`` / ``dtype``) for every verb that runs a model."""
    command = click.option("--dtype", default="float32", show_default=True,
                           type=click.Choice(["float32", "bfloat16", "float16"], case_sensitive=False),
                           help="Precision of the model (half precision keeps sensitive steps in float32).")(command)  # fmt: skip
    return click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]|mps",
                        help="Where the model runs; auto: CUDA, else MPS, else the CPU.")(command)  # fmt: skip


def speed_options(command: Callable) -> Callable:
    """``--backend``, ``--deploy`` and ``--compile`` (passed on as ``backend`` / ``deploy`` / ``compile_model``)
    for every verb that runs a model; the task checks the combination (:func:`visionports.backends.speed_settings`)."""
    from ..backends import BACKENDS

    command = click.option("--compile", "compile_model", is_flag=True,
                           help="torch backend: torch.compile the model (the first call of each input shape compiles; "
                           "the family's docs page says when it pays).")(command)  # fmt: skip
    command = click.option("--deploy", is_flag=True, help="torch backend: deploy mode (branches merged, BatchNorm "
                           "folded, fastest kernels; same results within float32 tolerance).")(command)  # fmt: skip
    return click.option("--backend", type=click.Choice(BACKENDS), default="torch", show_default=True,
                        help="onnxruntime / openvino (float32): export once, validate against torch, cache beside the "
                        "model folder, then run the graph (pip install 'visionports[export]' / "
                        "'visionports[openvino]').")(command)  # fmt: skip


class FrameRate(click.ParamType):
    """A positive frame rate, exact: ``25``, ``29.97`` or ``30000/1001``."""

    name = "RATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Fraction:
        try:
            rate = Fraction(str(value))
        except (ValueError, ZeroDivisionError):
            self.fail(f"expected a frame rate such as 25, 29.97 or 30000/1001, got {value!r}", param, ctx)
        if not 0 < rate <= 1000:
            self.fail(f"expected a frame rate in (0, 1000], got {value}", param, ctx)
        return rate


def deprecated(message: str) -> None:
    click.echo(f"Warning: {message}", err=True)


class ModelFolderCommand(click.Command):
    """A verb whose family comes from ``--model``; the old leading ``FAMILY`` argument still works, deprecated.

    ``legacy_positionals`` names the options the old form gave as positional arguments after the family
    (``export deimv2 MODEL_DIR OUTPUT`` -> ``--model MODEL_DIR --output OUTPUT``).
    """

    def __init__(self, *args: Any, legacy_positionals: tuple[str, ...] = (), **kwargs: Any) -> None:
        self.legacy_positionals = legacy_positionals
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0].lower().replace("-", "_") in family_names():
            family, args = args[0], list(args[1:])
            moved = []
            for option in self.legacy_positionals:
                if args and not args[0].startswith("-"):
                    moved += [option, args.pop(0)]
            args = moved + args
            deprecated(
                f"`visionports {self.name} {family} ...` is deprecated: the family is read from the --model "
                f"folder; use `visionports {self.name} --model DIR ...`"
            )
        return super().parse_args(ctx, args)


def dataclass_options(cls: type, skip: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """One ``--option`` per field of the dataclass ``cls`` (help, bounds and aliases from field metadata).

    Metadata keys: ``help``; ``min`` / ``max`` (+ ``min_open`` / ``max_open``) for a range; ``aliases``. A field
    whose default is ``None`` means "the recipe's value", shown in its help rather than as a default.
    """
    hints = typing.get_type_hints(cls)

    def decorate(command: Callable) -> Callable:
        for item in reversed(dataclasses.fields(cls)):
            if item.name in skip:
                continue
            command = _field_option(item, hints[item.name])(command)
        return command

    return decorate


def _field_option(item: dataclasses.Field, hint: Any) -> Callable:
    meta = item.metadata
    base = next(a for a in typing.get_args(hint) or (hint,) if a is not type(None))
    flags = (f"--{item.name.replace('_', '-')}", *meta.get("aliases", ()))
    if base is bool:
        return click.option(f"{flags[0]}/--no-{flags[0][2:]}", item.name, default=item.default,
                            show_default=True, help=meta.get("help"))  # fmt: skip
    bounds = {k: meta[k] for k in ("min", "max", "min_open", "max_open") if k in meta}
    kind = (click.IntRange if base is int else click.FloatRange)(**bounds) if bounds else base
    return click.option(*flags, item.name, type=kind, default=item.default,
                        show_default=item.default is not None, help=meta.get("help"))  # fmt: skip
