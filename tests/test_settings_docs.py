"""docs/settings.md is generated from the settings declarations and must match them.

Regenerate with `python -m tests.test_settings_docs` (the datasette docs-test idea: the code is
the source, the docs test fails when someone adds a setting without regenerating).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from agent.config import AgentConfig, dump_toml
from agent.link.config import LinkConfig
from appliance.core.config import Config, render_toml
from appliance.misp.settings import MispSettings
from rules.settings import markdown_table, settings_of, walk

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"

INTRO = """\
# Settings reference

Generated from the declarations in the code (`rules/settings.py`); do not edit by hand: run
`python -m tests.test_settings_docs` after changing a setting (a test compares this file with the
code).

Each setting is declared once, with `rules.settings.setting(default, help, bounds, live)`, in a
frozen dataclass per section. The same declarations parse the TOML files (unknown keys, wrong
types and values out of bounds are errors that name the key and the file: `ConfigError: must be
at least 1, got 0 at actions.workers in config.toml`), render the commented defaults
(`heron-agent config --dump`, `heron-manager init`) and the `--help` of the options that override
a setting. Numbers are non-negative unless a lower bound is shown. **Live**: a running program
applies a change without a restart (agent: a config pushed by the manager; MISP: `PUT
/misp/settings`); the other settings are read at start.
"""


def _sections(cls: type, skip: tuple[str, ...] = ()) -> list[str]:
    out = []
    for spec in settings_of(cls):
        if spec.name in skip:
            continue
        doc = (spec.tp.__doc__ or "").strip().splitlines()[0] if spec.type == "section" else ""
        doc = doc.split("]: ", 1)[-1]  # "[general]: where …" under a `[general]` heading
        out += [f"### `[{spec.name}]`", "", doc or spec.help, ""]
        if spec.type == "section":
            out.append(markdown_table(spec.tp, spec.name))
    return out


def _doc(cls: type) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0].split("]: ", 1)[-1]


def render() -> str:
    """The whole of docs/settings.md."""
    parts = [INTRO]
    parts += ["## Agent (`config.toml` of heron-agent)", ""]
    parts += _sections(AgentConfig, skip=("link",))
    parts += ["### `[link]`", "", _doc(LinkConfig), ""]
    parts += [
        "The `[link]` table of the agent config, else `<data_dir>/link/link.toml`.",
        "",
        markdown_table(LinkConfig, "link"),
    ]
    parts += ["## Manager (`config.toml` of heron-manager)", ""]
    parts += _sections(Config, skip=("misp",))
    parts += ["### `[misp]`", "", _doc(MispSettings), ""]
    parts += [
        "The `[misp]` section of the manager config, then `PUT /misp/settings` (docs/misp.md).",
        "",
        markdown_table(MispSettings, "misp"),
    ]
    return "\n".join(parts).rstrip() + "\n"


def test_settings_doc_matches_the_declarations() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/settings.md is stale: run `python -m tests.test_settings_docs`"
    )


def test_every_setting_is_documented_with_help() -> None:
    text = DOC.read_text(encoding="utf-8")
    for root, prefix in ((AgentConfig, ""), (LinkConfig, "link"), (Config, "")):
        for key, spec in walk(root, prefix):
            assert spec.help, f"{key} has no help"
            documented = spec.type == "table" or f"| `{key}` |" in text  # [link]: its own table
            assert documented, f"{key} missing from docs/settings.md"


def test_rendered_defaults_load_back_equal() -> None:
    from agent.config import parse_config

    assert parse_config(tomllib.loads(dump_toml())) == AgentConfig()
    assert Config.from_dict(tomllib.loads(render_toml())) == Config()
    assert LinkConfig.from_dict({}) == LinkConfig()


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {DOC}\n")
