"""Sigma correlation rules (placeholder until implemented)."""

from __future__ import annotations

from typing import Any

from .rule import SigmaUnsupported


def correlation_rule(r: Any, text: str, source: str) -> SigmaUnsupported:
    return SigmaUnsupported("Sigma correlation rules are not supported yet", source=source,
                            rule=getattr(r, "title", None))
