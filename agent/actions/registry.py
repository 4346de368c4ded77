"""Registry of response actions (one explicit dict, WHIDS §1.5) and their run order.

``ACTION_NAMES`` is import-light so ``agent.config`` can validate names; ``actions()`` returns
the name → callable table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.actions.base import Action

__all__ = ["ACTION_NAMES", "ACTION_ORDER", "OPT_IN", "RESPONSE_ACTIONS", "actions"]

# Run order inside one job: the process is suspended first when kill is planned, evidence is
# collected while it is frozen, and it is terminated last.
ACTION_ORDER = ("blacklist", "memdump", "filedump", "regdump", "brief", "report", "kill")
ACTION_NAMES = frozenset(ACTION_ORDER)
# Never run unless listed in actions.allowed (and logged loudly at start).
OPT_IN = frozenset({"kill", "memdump"})
# Response actions run on the runner's priority path: they never wait behind evidence jobs.
RESPONSE_ACTIONS = frozenset({"blacklist", "kill"})


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
