"""Decisions glassgate did not make: vendor sign-in logs (Okta System Log, Microsoft Entra sign-ins, OCSF
Authentication 3002) mapped to the native event plus the vendor's own decision (the ``observed`` block).

The native event schema (:mod:`risk.events`) stays strict and knows nothing of ``observed``: a native caller
sending one is refused like any unknown field; only this package builds it, beside the native event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from integrations.ingest.entra import map_entra
from integrations.ingest.observed import Mapped, Observed, Vendor, VendorFieldError
from integrations.ingest.ocsf import map_ocsf
from integrations.ingest.okta import map_okta

MAPPERS: dict[Vendor, Callable[[Any], Mapped]] = {Vendor.OKTA: map_okta, Vendor.ENTRA: map_entra,
                                                  Vendor.OCSF: map_ocsf}


def map_record(vendor: Vendor, raw: Any) -> Mapped:
    """Map one vendor record. Raises VendorFieldError naming the vendor's field; nothing is stored."""
    return MAPPERS[vendor](raw)


__all__ = ["MAPPERS", "Mapped", "Observed", "Vendor", "VendorFieldError", "map_record"]
