"""``--help`` of every ``hookledger`` command says what it takes: each subcommand has a help
line, each option and argument a help text and a named value (``--since WHEN``, not
``--since SINCE``), a time says which forms it takes, and no reST markup from a docstring
(````hookledger````, ``:func:``) shows."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from app.cli import build_parser
from app.cli import main as cli

_MARKUP = ("``", ":func:", ":class:", ":meth:", ":mod:")


def _commands() -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    def walk(
        path: tuple[str, ...], parser: argparse.ArgumentParser
    ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk((*path, name), child)

    yield from walk((), build_parser())


COMMANDS = dict(_commands())


def _subcommand_lines(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    return {
        choice.dest: choice.help
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
    }


def test_the_walk_reaches_every_verb():
    names = {" ".join(path) for path in COMMANDS}
    assert {"events list", "dlq replay", "ledger export", "signals pause", "up"} <= names
    assert len(names) > 20


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "hookledger")
def test_help_says_what_each_command_and_option_takes(path, capsys):
    with pytest.raises(SystemExit) as done:
        cli([*path, "--help"])
    assert done.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"usage: {' '.join(('hookledger', *path))}")
    for markup in _MARKUP:
        assert markup not in out, f"{markup!r} in the help of {path}"

    parser = COMMANDS[path]
    lines = _subcommand_lines(parser)
    for name, help_line in lines.items():
        assert help_line, f"'{' '.join((*path, name))}' has no help line in {path}'s help"
        assert name in out
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        shown = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{shown} of {path}: no help"
        takes_a_value = action.nargs != 0
        if takes_a_value and action.choices is None:
            metavar = action.metavar
            assert isinstance(metavar, str) and metavar.isupper(), (
                f"{shown} of {path}: name what it takes (metavar), not {metavar!r}"
            )
            if metavar in ("WHEN", "DATE") and "same forms" not in action.help:
                assert "Unix seconds" in action.help, f"{shown} of {path}: name the forms"
