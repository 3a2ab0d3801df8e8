"""Fixtures for the tracing tests (the egress helpers live in support.egress)."""

from support.egress import _no_proxy_env, upstreams

__all__ = ["_no_proxy_env", "upstreams"]
