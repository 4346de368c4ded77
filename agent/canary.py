"""Canary files (docs/reference/whids.md §1.7): creation, and the Gene rules generated for them.

Generated rules (criticality 10, actions from ``canaries.actions``), all with absolute field
paths so they load whatever LogType the channel implies:

* ``Builtin:CanaryModified`` — Sysmon 11/23/26 (Windows) and Linux-Sysmon 11/23 plus the fanotify
  access event 100, on ``TargetFilename``;
* ``Builtin:CanaryAccessed`` — Security 4663 with AccessMask bit 1, 2 or 4 on ``ObjectName``;
* ``Builtin:CanaryReadWrite`` — Kernel-File 15/16 on ``FileName``.

Images in ``canaries.whitelist`` are excluded.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sys
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

from agent.render import LINUX_CHANNEL, SYSMON_CHANNEL

if TYPE_CHECKING:
    from agent.config import CanaryConfig

__all__ = ["canary_paths", "canary_rules", "create_canaries", "remove_canaries"]

logger = logging.getLogger(__name__)

KERNEL_FILE_CHANNEL = "Microsoft-Windows-Kernel-File/Analytic"


def canary_paths(config: CanaryConfig, *, windows: bool | None = None) -> list[PurePath]:
    """Every canary path (directories × files, environment variables expanded).

    Without ``windows`` the paths are concrete (``Path``: files can be created); with it they
    are pure paths of that flavour, for rule text (Windows rules can be generated anywhere).
    """
    flavour: type[PurePath] = (
        Path if windows is None else (PureWindowsPath if windows else PurePosixPath)
    )
    out: list[PurePath] = []
    for d in config.directories:
        base = flavour(os.path.expandvars(os.path.expanduser(d)))
        out.extend(base / f for f in config.files)
    return out


def create_canaries(config: CanaryConfig, *, rng: random.Random | None = None) -> list[Path]:
    """Create missing canaries with random content; returns the paths created."""
    rng = rng or random.Random()
    created = []
    for pure in canary_paths(config):
        path = Path(pure)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        size = rng.randrange(1, max(2, config.max_size))
        path.write_bytes(rng.randbytes(size))
        created.append(path)
        logger.info("canary created: %s", path)
    if sys.platform == "win32" and config.enable:
        from agent.canary_audit import audit_canaries  # 4663 needs audit policy + a SACL

        audit_canaries(canary_paths(config))
    return created


def remove_canaries(paths: list[Path]) -> None:
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


def _regex(paths: list[PurePath], windows: bool) -> str:
    if not windows:
        return "^(" + "|".join(re.escape(str(p)) for p in paths) + ")$"
    # Kernel-File reports \Device\HarddiskVolumeN\… instead of the drive letter.
    tails = "|".join(re.escape(str(p)[2:] if str(p)[1:2] == ":" else str(p)) for p in paths)
    return rf"(?i:^(?:[a-z]:|\\device\\harddiskvolume\d+)?({tails})$)"


def canary_rules(config: CanaryConfig, *, windows: bool | None = None) -> str:
    """Gene rule text (one JSON object per line) for the configured canaries."""
    win = sys.platform == "win32" if windows is None else windows
    paths = canary_paths(config, windows=win)
    if not config.enable or not paths:
        return ""
    rx = _regex(paths, win)
    actions = list(config.actions)
    wl = "|".join(re.escape(w) for w in config.whitelist)
    wl_match = [f"$wl: /Event/EventData/Image ~= '(?i:^({wl})$)'"] if wl else []
    wl_cond = " and !$wl" if wl else ""

    def rule(name: str, events: dict[str, list[int]], matches: list[str], cond: str) -> str:
        return json.dumps(
            {
                "Name": name,
                "Tags": ["canary", "builtin"],
                "Meta": {
                    "Events": events,
                    "Criticality": 10,
                    "Schema": "2.0.0",
                    "LogType": "winevt",
                },
                "Matches": matches + wl_match,
                "Condition": cond + wl_cond,
                "Actions": actions,
            }
        )

    out = [
        rule(
            "Builtin:CanaryModified",
            {SYSMON_CHANNEL: [11, 23, 26], LINUX_CHANNEL: [11, 23, 100]},
            [f"$f: /Event/EventData/TargetFilename ~= '{rx}'"],
            "$f",
        ),
        rule(
            "Builtin:CanaryAccessed",
            {"Security": [4663]},
            [
                f"$f: /Event/EventData/ObjectName ~= '{rx}'",
                "$r: /Event/EventData/AccessMask &= '0x1'",
                "$w: /Event/EventData/AccessMask &= '0x2'",
                "$a: /Event/EventData/AccessMask &= '0x4'",
            ],
            "$f and ($r or $w or $a)",
        ),
        rule(
            "Builtin:CanaryReadWrite",
            {KERNEL_FILE_CHANNEL: [15, 16]},
            [f"$f: /Event/EventData/FileName ~= '{rx}'"],
            "$f",
        ),
    ]
    return "\n".join(out) + "\n"
