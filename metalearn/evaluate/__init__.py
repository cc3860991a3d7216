"""Successor training against tuned baselines, metrics and reports."""
