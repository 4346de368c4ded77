"""Shared test helpers (fakes of platform APIs, builders) used across the test tree."""
