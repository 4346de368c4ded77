"""Agent configuration: defaults, strict parsing, dump round trip, documentation, CLI."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from agent.cli import build_parser, main
from agent.config import (
    AgentConfig,
    band_defaults,
    dump_toml,
    load_config,
    parse_config,
)
from agent.errors import ConfigError
from rules.settings import toml_value, walk

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_dump_and_load_back_equal() -> None:
    text = dump_toml()
    assert parse_config(tomllib.loads(text)) == AgentConfig()
    assert "# rotate when alerts.log exceeds this size" in text


def test_kill_and_memdump_are_opt_in_by_default() -> None:
    allowed = AgentConfig().actions.allowed
    assert "kill" not in allowed and "memdump" not in allowed


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"general": {"nope": 1}}, "unknown key at general.nope"),
        ({"bogus": {}}, "unknown key at bogus"),
        (
            {"sources": {"linux": {"net_poll_interval": "fast"}}},
            "expected a number.*sources.linux.net_poll_interval",
        ),
        ({"general": {"log_all": 1}}, "expected a boolean.*general.log_all"),
        ({"general": {"queue_size": 1.5}}, "expected an integer"),
        ({"sources": {"enabled": ["carrier-pigeon"]}}, "unknown source 'carrier-pigeon'"),
        ({"actions": {"high": ["explode"]}}, "unknown action 'explode'.*actions.high"),
        (
            {"reporting": {"commands": [{"name": "x", "oops": 1}]}},
            "unknown key at reporting.commands\\[0\\].oops",
        ),
        ({"rules": {"paths": "one"}}, "expected a list"),
        ({"actions": {"workers": 0}}, "must be at least 1, got 0 at actions.workers"),
        ({"sources": {"linux": {"reader_nice": -30}}}, "at least -20.*reader_nice"),
        ({"general": {"criticality_threshold": -1}}, "at least 0.*criticality_threshold"),
        ({"actions": {"rule_limits": ["A"]}}, "expected RULE=N.*actions.rule_limits"),
    ],
)
def test_invalid_configs_say_where(data: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=match):
        parse_config(data)


def test_load_config_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[general\n")
    with pytest.raises(ConfigError, match="invalid TOML.*config.toml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad.write_text(
        '[reporting]\n[[reporting.commands]]\nname = "uptime"\nargs = ["-p"]\n'
        "[link]\nenabled = false\n"
    )
    cfg = load_config(bad)
    assert cfg.reporting.commands[0].args == ["-p"] and cfg.link == {"enabled": False}
    assert parse_config(tomllib.loads(dump_toml(cfg))) == cfg


def test_every_config_key_and_cli_command_is_documented() -> None:
    doc = (ROOT / "docs" / "agent.md").read_text(encoding="utf-8")
    reference = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    missing = [
        k for k, spec in walk(AgentConfig) if f"`{k}`" not in reference and spec.type != "table"
    ]
    assert not missing, f"undocumented config keys: {missing}"
    for command in ("run", "report", "status", "config"):
        assert f"heron-agent {command}" in doc
    from agent.actions.registry import ACTION_NAMES

    assert all(f"`{a}`" in doc for a in ACTION_NAMES)


def test_cli_config_dump(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--dump"]) == 0
    out = capsys.readouterr().out
    assert parse_config(tomllib.loads(out)) == AgentConfig()
    assert main(["config"]) == 2


def test_cli_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[general]\ncolour = 'blue'\n")
    assert main(["status", "-c", str(bad)]) == 2
    assert "unknown key at general.colour" in capsys.readouterr().err
    assert main(["status", "--data-dir", str(tmp_path / "none")]) == 1


def test_parser_has_the_agent_commands() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"run", "report", "status", "config"} <= set(sub.choices)  # type: ignore[arg-type]


@pytest.mark.skipif(not (ROOT.parent / "shared").is_dir(), reason="../shared is not present")
def test_cli_replay_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = ROOT.parent / "shared" / "corpus" / "whids" / "events.json"
    rules = ROOT.parent / "shared" / "corpus" / "gene-rules" / "compiled.gen"
    assert (
        main(
            [
                "run",
                "--standalone",
                "--data-dir",
                str(tmp_path),
                "--rules",
                str(rules),
                "--replay",
                str(events),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    summary = __import__("json").loads(out)
    assert summary["processed"] == 238 and summary["sources"]["replay"]["drops"] == 0


def test_exported_members_are_pinned() -> None:
    import agent

    assert (
        agent.__all__
        == sorted(agent.__all__)
        == [
            "ActionContext",
            "Agent",
            "AgentConfig",
            "AgentError",
            "AgentState",
            "AlertLog",
            "ConfigError",
            "EventSink",
            "EventSource",
            "MemorySink",
            "MemorySource",
            "Tracker",
            "build_agent",
            "dump_toml",
            "load_config",
        ]
    )
    for name in agent.__all__:
        assert getattr(agent, name) is not None
    with pytest.raises(AttributeError):
        agent.nope  # noqa: B018


def test_cli_reference_in_docs_matches_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    doc = (ROOT / "docs" / "agent.md").read_text(encoding="utf-8")
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("run", "report", "status", "config"):
        text = sub.choices[name].format_help()  # type: ignore[index]
        assert text.strip() in doc, f"docs/agent.md: regenerate the `{name}` help"


@pytest.mark.parametrize(
    "platform,regdump,memdump",
    [("win32", True, True), ("linux", False, True), ("darwin", False, False)],
)
def test_band_default_actions_only_name_what_the_platform_runs(
    platform: str, regdump: bool, memdump: bool
) -> None:
    bands = band_defaults(platform)
    assert bands["low"] == []
    assert bands["medium"] == (["brief", "filedump", "regdump"] if regdump else ["brief"])
    assert bands["high"] == ["report", "filedump"] + ["regdump"] * regdump
    assert (
        bands["critical"] == ["report", "filedump"] + ["regdump"] * regdump + ["memdump"] * memdump
    )


def test_default_config_uses_this_platforms_band_defaults() -> None:
    acts = AgentConfig().actions
    assert {
        "low": acts.low,
        "medium": acts.medium,
        "high": acts.high,
        "critical": acts.critical,
    } == band_defaults(sys.platform)
    if sys.platform.startswith("linux"):
        assert "regdump" not in acts.medium + acts.high + acts.critical
    assert "regdump" in acts.allowed  # the allow-list (a gate) is unchanged


def test_band_defaults_in_docs_match_the_code() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    linux, windows = band_defaults("linux"), band_defaults("win32")
    for band in ("medium", "high", "critical"):
        row = next(line for line in doc.splitlines() if line.startswith(f"| `actions.{band}` |"))
        assert f"`{toml_value(linux[band])} (Windows: {toml_value(windows[band])})`" in row, row
