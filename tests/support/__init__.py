"""Shared test helpers (doubles, builders) importable as `tests.support.<module>`."""
