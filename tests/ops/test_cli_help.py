"""Every `aethera` command explains itself with --help (run as the installed console script)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from aethera.cli import build_parser

AETHERA = str(Path(sys.executable).parent / "aethera")


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*prefix, name))
    return found


COMMANDS = _commands(build_parser())


def test_the_issue_commands_exist() -> None:
    for needed in [("serve",), ("worker",), ("analyze",), ("sample-data",), ("datasets", "check"), ("keys", "create")]:
        assert needed in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "aethera")
def test_help_explains_the_command(command: tuple[str, ...]) -> None:
    result = subprocess.run([AETHERA, *command, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("usage: aethera")
    # a description of its own beyond the usage line and option list, not only a name
    body = text.split("\n\n", 2)[1] if "\n\n" in text else ""
    assert len(body.split()) >= 8, f"`aethera {' '.join(command)} --help` does not explain itself:\n{text}"
