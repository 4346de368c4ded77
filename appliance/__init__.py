"""Heron appliance package."""
