"""Dependency cycles as warnings: `a → b → c → a`, over registered plugins plus new ones."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from vivified.registry.manifest.validator import Problem, find_dependency_cycles


def cycle_path(graph: Mapping[str, Collection[str]], members: Collection[str]) -> list[str]:
    """One walk round a cycle of `members` along the dependency edges, from its smallest id
    back to it: `["a", "b", "c", "a"]`."""
    inside = set(members)
    start = min(inside)
    path, seen = [start], {start}
    node = start
    while True:
        deps = sorted(d for d in graph.get(node, ()) if d in inside)
        if start in deps and (len(path) == len(inside) or not [d for d in deps if d not in seen]):
            return [*path, start]
        fresh = [d for d in deps if d not in seen]
        if not fresh:  # cannot happen in a strongly connected component; stay safe
            return [*path, start]
        node = fresh[0]
        path.append(node)
        seen.add(node)


def cycle_warnings(graph: Mapping[str, Collection[str]], only: str | None = None) -> list[Problem]:
    """A `dependency_cycle` warning per cycle (only those through `only`, when given)."""
    out = []
    for members in find_dependency_cycles(graph):
        if only is not None and only not in members:
            continue
        path = cycle_path(graph, members)
        out.append(
            Problem(
                "/dependencies",
                "dependency_cycle",
                "circular dependency: " + " → ".join(path),
            )
        )
    return out


def cycle_messages(plugins: Mapping[str, Any], plugin_id: str) -> list[str]:
    """The cycles through `plugin_id` among registered plugins (views with `dependencies`)."""
    graph = {pid: view.dependencies for pid, view in plugins.items()}
    return [w.message for w in cycle_warnings(graph, only=plugin_id)]
