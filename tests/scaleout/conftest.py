"""Fixtures of the scale-out tests (the rig lives in scaleout.rig)."""

from scaleout.rig import deployment, ws_target
from support.egress import _no_proxy_env, upstreams

__all__ = ["_no_proxy_env", "deployment", "upstreams", "ws_target"]
