"""Heron agent package."""
