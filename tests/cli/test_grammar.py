"""The CLI's one grammar: ``visionports VERB [INPUTS] --model DIR``; only ``convert`` names a family."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from golden import golden_cases
from visionports.cli import load_all_commands, main
from visionports.core.registry import all_families
from visionports.models.videomt import VideomtConfig

NAMES_A_FAMILY = {
    "convert": "FAMILY",
    "parity": "[FAMILY]",
}  # parity: optional, else the case's parent folder


COMMANDS = load_all_commands()  # every verb (the group imports them lazily)


def _usage(name: str) -> str:
    command = COMMANDS[name]
    with click.Context(command, info_name=name) as ctx:
        return " ".join(command.collect_usage_pieces(ctx))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_verb_follows_the_grammar(name: str) -> None:
    command = COMMANDS[name]
    options = {opt for param in command.params if isinstance(param, click.Option) for opt in param.opts}
    arguments = [param for param in command.params if isinstance(param, click.Argument)]
    if name in NAMES_A_FAMILY:
        assert arguments[0].human_readable_name == NAMES_A_FAMILY[name]
        return
    assert "--model" in options and "FAMILY" not in _usage(name)
    assert all(param.required is False or param.nargs == -1 for param in arguments)  # only INPUTS
    help_text = CliRunner().invoke(main, [name, "--help"]).output
    assert "--model DIRECTORY" in help_text and "[required]" in help_text


def test_every_task_verb_has_a_family_and_a_command() -> None:
    verbs = {verb for family in all_families() for verb in family.tasks}
    assert verbs == set(COMMANDS) - set(NAMES_A_FAMILY)


def test_a_folder_of_another_family_is_refused_before_loading(tmp_path: Path) -> None:
    VideomtConfig().save_pretrained(tmp_path / "videomt")
    (tmp_path / "a.png").write_bytes(b"")
    runner = CliRunner()
    result = runner.invoke(
        main, ["export", "--model", str(tmp_path / "videomt"), "--output", str(tmp_path / "m.onnx")]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: --model {tmp_path / 'videomt'}: a videomt model; `export` takes deimv2 models"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "videomt"]


def test_parity_reads_the_family_from_the_case_folder() -> None:
    case = next(c for c in golden_cases("sam3_lite_text") if c.name == "s0_mct_reduced_ctx16")
    runner = CliRunner()
    named = runner.invoke(main, ["parity", "sam3_lite_text", str(case)])
    implied = runner.invoke(main, ["parity", str(case)])
    assert named.exit_code == implied.exit_code == 0, implied.output
    assert named.output == implied.output and "PARITY OK" in implied.output


def test_parity_without_a_family_outside_a_family_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["parity", str(tmp_path)])
    assert result.exit_code == 2 and "FAMILY" in result.output and repr(tmp_path.parent.name) in result.output
