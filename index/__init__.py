"""Heron index package."""
