"""Native Sigma rules: parsed by pySigma, compiled into Heron's own matchers (docs/rules.md).

`parse_sigma(text)` yields `SigmaRule`s (a `rules.Rule` subclass the `Engine` runs next to Gene
rules) or `SigmaUnsupported` errors naming why a rule cannot run. `rules.load` calls it for
`.yml`/`.yaml` files and for Sigma text inside rule streams.
"""

from __future__ import annotations

from .common import LEVELS, SigmaUnsupported
from .logsource import Target, Unsupported, collected, resolve
from .rule import DEFAULT_STATUS, SigmaRule, parse_sigma

__all__ = [
    "DEFAULT_STATUS",
    "LEVELS",
    "SigmaRule",
    "SigmaUnsupported",
    "Target",
    "Unsupported",
    "collected",
    "parse_sigma",
    "resolve",
]
