"""Fixtures for the egress tests (the helpers live in support.egress)."""

from support.egress import _no_proxy_env, egress, fresh_egress, upstreams

__all__ = ["_no_proxy_env", "egress", "fresh_egress", "upstreams"]
