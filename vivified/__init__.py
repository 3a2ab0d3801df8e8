"""Vivified core: gateway, egress proxy and registry of the plugin platform."""
