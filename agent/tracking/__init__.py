"""Process tracking and enrichment (WHIDS hooks and ptrack)."""

from __future__ import annotations

from agent.tracking.hashes import FileHasher, FileHashes
from agent.tracking.hooks import HOOKS, Hook, HookContext, run_hooks
from agent.tracking.tracker import DriverInfo, ModuleInfo, ProcessTrack, Tracker

__all__ = [
    "HOOKS",
    "DriverInfo",
    "FileHasher",
    "FileHashes",
    "Hook",
    "HookContext",
    "ModuleInfo",
    "ProcessTrack",
    "Tracker",
    "run_hooks",
]
