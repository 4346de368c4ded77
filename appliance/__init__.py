"""Heron manager appliance: config, PKI, TLS front, Falcon apps, fleet store, CLI.

Public names (imported lazily so that `appliance.core.errors` stays cheap for the console and MISP
modules)::

    AppContext, build_context, Api, create_app, ManagerServer, Config, load_config, Pki
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api.app import Api, create_app
    from .core.config import Config, load_config
    from .runtime.context import AppContext, build_context
    from .security.pki import Pki
    from .transport.server import ManagerServer

__all__ = [
    "Api",
    "AppContext",
    "Config",
    "ManagerServer",
    "Pki",
    "build_context",
    "create_app",
    "load_config",
]

_WHERE = {
    "Api": "api.app",
    "create_app": "api.app",
    "Config": "core.config",
    "load_config": "core.config",
    "AppContext": "runtime.context",
    "build_context": "runtime.context",
    "Pki": "security.pki",
    "ManagerServer": "transport.server",
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    if name not in _WHERE:
        raise AttributeError(f"module 'appliance' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
