"""Heron rules package."""
