"""A faithful loopback MISP double for tests (docs/reference/misp.md §8), driven by the real PyMISP
client."""

from __future__ import annotations

from .model import MispModel, Rejected
from .server import DEFAULT_KEY, FakeMisp, Fault, Recorded

__all__ = ["DEFAULT_KEY", "FakeMisp", "Fault", "MispModel", "Recorded", "Rejected"]
