"""Source and action registries: names in step with the config, each reads only its settings."""

from __future__ import annotations

import ast
from dataclasses import fields, is_dataclass
from pathlib import Path

from agent.actions.base import ActionContext, ActionSettings
from agent.actions.registry import ACTION_ORDER, ACTIONS, actions
from agent.config import ACTION_CHOICES, SOURCE_CHOICES, AgentConfig
from agent.sources import SOURCES, section_of

ROOT = Path(__file__).resolve().parents[2]


def test_registry_names_are_the_config_choices() -> None:
    assert set(SOURCES) == set(SOURCE_CHOICES)
    assert ACTION_ORDER == ACTION_CHOICES
    assert set(actions()) == set(ACTIONS)


def test_each_source_reads_one_settings_section() -> None:
    config = AgentConfig()
    for name, spec in SOURCES.items():
        section = section_of(config, spec)
        assert is_dataclass(section), f"{name}: {spec.section} is not a settings section"


def test_actions_get_only_the_settings_they_read() -> None:
    names = {f.name for f in fields(ActionContext)}
    assert "config" not in names and "settings" in names
    known = {f.name for f in fields(ActionSettings)}
    read = {field for spec in ACTIONS.values() for field in spec.reads}
    assert read == known, "every ActionSettings field is read by some action, and only those"
    settings = ActionSettings.from_config(AgentConfig())
    assert settings.max_file_size == AgentConfig().actions.max_file_size


def test_the_config_module_imports_no_registry() -> None:
    tree = ast.parse((ROOT / "agent" / "config.py").read_text(encoding="utf-8"))
    imported = {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {m for m in imported if m.startswith(("agent.sources", "agent.actions"))}
