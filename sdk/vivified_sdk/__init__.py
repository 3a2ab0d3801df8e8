"""Helpers for plugin authors (depends only on the wire contract, never on core's code)."""
