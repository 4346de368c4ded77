"""Response actions: planning, the action registry, artifacts and the runner."""

from __future__ import annotations

from agent.actions.artifacts import ArtifactDir, ArtifactFile
from agent.actions.base import Action, ActionContext, ActionSettings
from agent.actions.planner import Plan, band_of, plan_actions
from agent.actions.registry import ACTION_NAMES, ACTION_ORDER, OPT_IN, RESPONSE_ACTIONS, actions

__all__ = [
    "ACTION_NAMES",
    "ACTION_ORDER",
    "OPT_IN",
    "RESPONSE_ACTIONS",
    "Action",
    "ActionContext",
    "ActionSettings",
    "ArtifactDir",
    "ArtifactFile",
    "Plan",
    "actions",
    "band_of",
    "plan_actions",
]
