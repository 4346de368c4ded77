"""`attach(agent, config)`: build the `Link` of an agent config and plug it into the agent, and
where a config's link settings and state live."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.seams import LinkedAgent

from .config import LinkConfig
from .hooks import LinkHooks
from .link import Link
from .transport import Transport

__all__ = ["attach", "link_config_for", "state_dir_for"]

logger = logging.getLogger(__name__)


def link_config_for(config: AgentConfig) -> LinkConfig:
    """The link settings of an agent config: `config.link`, else `<data_dir>/link/link.toml`."""
    section: object = config.link
    if isinstance(section, LinkConfig):
        return section
    if isinstance(section, dict) and section:  # an empty [link] table falls back to link.toml
        return LinkConfig.from_dict(section)
    toml = Path(config.data_dir) / "link" / "link.toml"
    if toml.exists():
        return LinkConfig.load(toml)
    return LinkConfig()


def state_dir_for(config: AgentConfig, link_config: LinkConfig | None = None) -> Path:
    """Where the link keeps identity, queue and update state for this agent config."""
    link_config = link_config or link_config_for(config)
    if link_config.state_dir:
        return Path(link_config.state_dir)
    return Path(config.data_dir) / "link"


def _config_hook(agent: LinkedAgent) -> Callable[[dict[str, Any]], None]:
    """Validate a pushed agent config (ConfigError rejects the update) and apply it live."""

    def apply(doc: dict[str, Any]) -> None:
        from agent.config import parse_config

        agent.apply_config(parse_config(doc, source="manager /config"))

    return apply


def _config_document(config: AgentConfig) -> Callable[[], dict[str, Any]]:
    """The agent config as the JSON document offered to a manager that holds none."""
    return lambda: json.loads(json.dumps(dataclasses.asdict(config), default=str))


def attach(
    agent: LinkedAgent,
    config: AgentConfig,
    *,
    start: bool = True,
    transport_factory: Callable[[], Transport] | None = None,
) -> Link:
    """Connect `agent` to its manager and start the link (the seam: `agent.seams.LinkedAgent`).

    The link becomes one of the agent's sinks (so the agent's `close()` stops it), pushed rules,
    IoCs, suppressions and configuration go to the agent, commands see its tracker and report,
    and artifacts under its `artifacts_dir` are uploaded.
    """
    link_cfg = link_config_for(config)
    hooks = LinkHooks(
        reload_rules=agent.reload_rules,
        set_iocs=agent.set_iocs,
        set_suppressions=agent.set_suppressions,
        apply_config=_config_hook(agent),
        report=lambda: agent.report(),
        tracker=agent.tracker,
        artifacts_dir=agent.artifacts_dir,
        hostname=config.general.hostname,
        set_endpoint=agent.set_endpoint,
        current_config=_config_document(config),
        sensor=agent.sensor_mode if agent.sensor_mode() else None,
        agent_status=agent.status,
        rules_state=agent.rules_state,
    )
    link = Link(
        link_cfg, state_dir_for(config, link_cfg), hooks=hooks, transport_factory=transport_factory
    )
    agent.add_sink(link)
    if start:
        link.start()
    ident = link.identity()
    if ident is None:
        logger.warning(
            "agent not enrolled: events are queued in %s until `heron-agent enroll`",
            link.spool.root,
        )
    else:
        logger.info("endpoint %s linked to manager %s", ident.uuid, ident.manager)
    return link
