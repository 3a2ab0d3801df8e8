"""Where an operator-lane request goes: service name → plugin, path → declared endpoint.

Built from one registry snapshot and rebuilt whenever the snapshot object changes, so the
hot path never touches the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vivified.policy.paths import CompiledEndpoint, compile_endpoints
from vivified.registry.manifest.validator import contract_alias
from vivified.registry.store.snapshot import PluginView, Snapshot


@dataclass(frozen=True)
class Resolution:
    """The plugin a service name means, or why there is none (`reason`)."""

    plugin: PluginView | None
    reason: str = ""
    detail: str = ""
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteTable:
    snapshot: Snapshot
    aliases: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # alias → (contract, …)
    providers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # contract → ids
    endpoints: Mapping[str, Sequence[CompiledEndpoint]] = field(default_factory=dict)

    @classmethod
    def build(cls, snap: Snapshot) -> RouteTable:
        providers: dict[str, list[str]] = {}
        aliases: dict[str, tuple[str, str]] = {}
        for view in snap.plugins.values():
            for contract in view.contracts:
                aliases[contract_alias(contract)] = (contract, contract)
                if view.active:
                    providers.setdefault(contract, []).append(view.id)
        return cls(
            snapshot=snap,
            aliases=aliases,
            providers={c: tuple(sorted(ids)) for c, ids in providers.items()},
            endpoints={pid: compile_endpoints(v.endpoints) for pid, v in snap.plugins.items()},
        )

    def _unknown(self, service: str) -> str:
        """The 404's detail; a contract name (`/IdentityPlugin/`) is answered with its alias."""
        if not _looks_like_contract(service):
            return f"no plugin or contract is called {service!r}"
        alias = contract_alias(service)
        if self.providers.get(service):
            return f"{service} is a contract: call it by its alias, /{alias}/"
        return f"contract {service} has no active provider (its alias would be /{alias}/)"

    def resolve(self, service: str) -> Resolution:
        """A plugin id wins over a contract alias of the same spelling."""
        view = self.snapshot.plugins.get(service)
        if view is not None:
            return Resolution(view)
        alias = self.aliases.get(service)
        if alias is None:
            return Resolution(None, "unknown_target", self._unknown(service))
        contract = alias[0]
        chosen = self.snapshot.contract_choices.get(contract)
        if chosen is not None and chosen in self.snapshot.plugins:
            return Resolution(self.snapshot.plugins[chosen])
        ids = self.providers.get(contract, ())
        if len(ids) == 1:
            return Resolution(self.snapshot.plugins[ids[0]])
        if not ids:
            return Resolution(None, "target_not_active", f"no active plugin provides {contract}")
        return Resolution(
            None,
            "ambiguous_contract",
            f"several active plugins provide {contract}; an admin must choose one with "
            f"PUT /admin/contracts/{contract}",
            ids,
        )


def _looks_like_contract(name: str) -> bool:
    return name.endswith("Plugin") and name[:1].isupper()


class RouteTables:
    """The table for the current snapshot, rebuilt on change."""

    def __init__(self) -> None:
        self._table: RouteTable | None = None

    def for_snapshot(self, snap: Snapshot) -> RouteTable:
        table = self._table
        if table is None or table.snapshot is not snap:
            table = self._table = RouteTable.build(snap)
        return table
