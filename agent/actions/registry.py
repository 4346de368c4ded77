"""Registry of response actions (one explicit dict, docs/reference/whids.md §1.5): names, run
order, settings.

``ACTIONS`` says, for each action, where it runs in a job, whether it is opt-in or a response
(priority path), and which ``ActionSettings`` fields it reads: the action gets those in its
``ActionContext``, never the whole agent configuration. ``actions()`` imports the action modules
(lazily: each pulls platform code) and returns the name → callable table. ``agent.config``
declares the same names as the choices of the ``actions.*`` lists and does not import this module;
a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.actions.base import Action

__all__ = ["ACTIONS", "ACTION_NAMES", "ACTION_ORDER", "OPT_IN", "RESPONSE_ACTIONS", "actions"]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """What the runner and the docs know about one action."""

    reads: tuple[str, ...] = ()  # ActionSettings fields
    opt_in: bool = False  # never runs unless listed in actions.allowed (logged loudly at start)
    response: bool = False  # runs on the priority path, never behind evidence jobs


# In run order inside one job: the process is suspended first when kill is planned, evidence is
# collected while it is frozen, and it is terminated last.
ACTIONS: dict[str, ActionSpec] = {
    "blacklist": ActionSpec(response=True),
    "memdump": ActionSpec(reads=("max_memdump_size",), opt_in=True),
    "filedump": ActionSpec(reads=("max_file_size", "sysmon_archive_dir")),
    "regdump": ActionSpec(),
    "brief": ActionSpec(reads=("reporting", "max_report_items")),
    "report": ActionSpec(reads=("reporting", "max_report_items")),
    "kill": ActionSpec(opt_in=True, response=True),
}
ACTION_ORDER = tuple(ACTIONS)
ACTION_NAMES = frozenset(ACTIONS)
OPT_IN = frozenset(name for name, spec in ACTIONS.items() if spec.opt_in)
RESPONSE_ACTIONS = frozenset(name for name, spec in ACTIONS.items() if spec.response)


def actions() -> dict[str, Action]:
    """name → action callable."""
    from agent.actions import dumps, process, report

    return {
        "blacklist": process.blacklist,
        "kill": process.kill,
        "memdump": dumps.memdump,
        "filedump": dumps.filedump,
        "regdump": dumps.regdump,
        "report": report.report_action,
        "brief": report.brief_action,
    }
