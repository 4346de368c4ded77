"""One command-line convention for `heron`, `heron-agent` and `heron-manager` (docs/interfaces.md).

Subcommands under one parser each, `--version` on each, help text on every option and
argument, exit status 2 for usage errors (argparse's own, bad configuration or rules) and 1
for runtime failures.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent import cli as agent_cli
from appliance import cli as manager_cli
from rules import cli as heron_cli
from rules import wire

PROGRAMS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "heron": heron_cli.build_parser,
    "heron-agent": agent_cli.build_parser,
    "heron-manager": manager_cli.build_parser,
}
MAINS: dict[str, Callable[[list[str]], int]] = {
    "heron": heron_cli.main,
    "heron-agent": agent_cli.main,
    "heron-manager": manager_cli.main,
}


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")
        else:
            yield path, action


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_every_option_and_argument_has_help(program: str) -> None:
    missing = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, a in _walk(PROGRAMS[program](), program)
        if not a.help and not isinstance(a, argparse._HelpAction)
    ]
    assert not missing, "no help text: " + ", ".join(missing)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_every_program_has_subcommands(program: str) -> None:
    subs = [a for a in PROGRAMS[program]()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subs) == 1 and subs[0].required and subs[0].choices


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_version(program: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        MAINS[program](["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"{program} {wire.HERON_VERSION}"


@pytest.mark.parametrize("program", sorted(PROGRAMS))
@pytest.mark.parametrize("argv", [[], ["no-such-command"], ["--no-such-option"]])
def test_usage_errors_exit_2(program: str, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as done:
        MAINS[program](argv)
    assert done.value.code == 2


def test_bad_input_exits_2_and_runtime_failure_exits_1(tmp_path: Path) -> None:
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[general]\nno_such_key = 1\n", encoding="utf-8")
    assert agent_cli.main(["status", "-c", str(bad_config)]) == 2  # bad configuration
    assert agent_cli.main(["status", "--data-dir", str(tmp_path)]) == 1  # no running agent
    missing = str(tmp_path / "missing.json")
    assert heron_cli.main(["scan", "-r", missing, missing]) == 2  # a rule file that is not there
    data = tmp_path / "manager"
    assert manager_cli.main(["search", "--data-dir", str(data)]) == 2  # not initialized
