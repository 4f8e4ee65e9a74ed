"""Every command in scaling.cli.COMMANDS registers, under its own name, with its module's `run` handler."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from scaling import cli


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def _handler(sub: argparse.ArgumentParser):
    """The func a parser sets, or its nested actions' (`scaling data prepare`)."""
    nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
    if nested:
        (action,) = nested
        return [p.get_default("func") for p in action.choices.values()]
    return [sub.get_default("func")]


def test_every_command_module_is_listed():
    files = {p.stem for p in Path(cli.__file__).with_name("commands").glob("*.py") if p.stem != "__init__"}
    assert files == set(cli.COMMANDS)


def test_every_listed_command_registers_under_its_name():
    assert list(_subparsers()) == list(cli.COMMANDS)


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_command_runs_its_modules_handler(name):
    module = cli.COMMANDS[name]
    handlers = _handler(_subparsers()[name])
    assert handlers and all(callable(h) and h.__module__ == module.__name__ for h in handlers)
    assert handlers == [module.run] * len(handlers)


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_command_answers_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([name, "--help"])
    assert e.value.code == 0 and f"scaling {name}" in capsys.readouterr().out
