"""Hypothesis settings for the property tests: bounded, no deadline (CI machines are slow)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "vivified",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,  # no .hypothesis directory in the tree
)
settings.load_profile("vivified")
