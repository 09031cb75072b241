"""Every command and subcommand has help text, reachable with --help and -h, exiting 0."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sl_scaling.cli.app import app

EXPECTED = {"gen", "filter", "train", "eval", "push", "plot", "status", "run"}


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths += _command_paths(sub, (*prefix, name))
    return paths


PATHS = _command_paths(typer.main.get_command(app))


def test_every_command_of_the_design_is_registered() -> None:
    assert {path[0] for path in PATHS if path} >= EXPECTED


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "slscale")
def test_help_exits_0_with_a_description(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    body = result.output.split("Usage:", 1)[1].split("\n", 2)[-1]
    description = body.split("Options")[0].split("Commands")[0]
    assert len(description.strip()) > 20, f"'slscale {' '.join(path)}' has no description"


@pytest.mark.parametrize("path", [path for path in PATHS if path], ids=" ".join)
def test_short_help_flag(path: tuple[str, ...]) -> None:
    assert CliRunner().invoke(app, [*path, "-h"]).exit_code == 0


def test_no_arguments_shows_the_overview() -> None:
    result = CliRunner().invoke(app, [])
    assert "gen" in result.output
    assert "filter" in result.output
