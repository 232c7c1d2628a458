"""The resource catalogue: what each known resource is (its kind) and how sensitive it is (its tier).

The catalogue is configuration (loaded at the edge and handed in): the tier of a known resource comes
from here, never from what an event claims, and "which tiers does this threshold scope govern?" is
answered from the resources it covers, not from the scope's name (``kind:ot`` governs the restricted
OT consoles as well as the internal historian).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from risk.events import ResourceKind, Sensitivity

TIER_ORDER: tuple[str, ...] = tuple(s.value for s in Sensitivity)


class CatalogError(ValueError):
    """The catalogue is malformed; the message names the entry and field."""


@dataclass(frozen=True)
class Resource:
    id: str
    kind: str
    tier: str


@dataclass(frozen=True)
class ResourceCatalog:
    """Known resources by id."""

    resources: Mapping[str, Resource]

    @classmethod
    def empty(cls) -> ResourceCatalog:
        return cls(resources={})

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "resources") -> ResourceCatalog:
        """Build from ``{"resources": {id: {"kind": ..., "tier": ...}}}``.

        Raises:
            CatalogError: not that shape, or an unknown kind or tier (named).
        """
        items = data.get("resources") if isinstance(data, Mapping) else None
        if not isinstance(items, Mapping):
            raise CatalogError(f"{source}: expected a mapping 'resources: {{id: {{kind, tier}}}}'")
        kinds, tiers = {k.value for k in ResourceKind}, set(TIER_ORDER)
        out: dict[str, Resource] = {}
        for rid, spec in items.items():
            if not isinstance(spec, Mapping) or set(spec) != {"kind", "tier"}:
                raise CatalogError(f"{source}: resources.{rid} must have exactly 'kind' and 'tier'")
            if spec["kind"] not in kinds:
                raise CatalogError(f"{source}: resources.{rid}.kind {spec['kind']!r} is not one of {sorted(kinds)}")
            if spec["tier"] not in tiers:
                raise CatalogError(f"{source}: resources.{rid}.tier {spec['tier']!r} is not one of {list(TIER_ORDER)}")
            out[str(rid)] = Resource(id=str(rid), kind=str(spec["kind"]), tier=str(spec["tier"]))
        return cls(resources=out)

    def get(self, resource_id: str) -> Resource | None:
        return self.resources.get(resource_id)

    def governed_tiers(self, scope: str) -> frozenset[str]:
        """The tiers of the resources a threshold scope governs: ``tier:X`` governs X; ``kind:K`` governs
        the tier of every catalogued resource of kind K."""
        what, _, name = scope.partition(":")
        if what == "tier":
            return frozenset({name})
        if what == "kind":
            return frozenset(r.tier for r in self.resources.values() if r.kind == name)
        return frozenset()

    def tiers_of_payload(self, payload: Mapping[str, Any]) -> frozenset[str]:
        """The tiers a proposal's payload governs (a threshold change's scope; an exception's resource)."""
        if "scope" in payload:
            return self.governed_tiers(str(payload["scope"]))
        r = self.get(str(payload.get("resource_id", "")))
        return frozenset({r.tier}) if r is not None else frozenset()
