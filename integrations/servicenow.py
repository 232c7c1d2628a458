"""ServiceNow beside Jira: an incident delivered by a signed webhook is enriched with a work note.

ServiceNow signs nothing of its own, so its outbound REST message (a business rule on insert) must sign with
Standard Webhooks like any generic sender; the body is ``{"servicenow": {...}}`` with the record's table,
``sys_id``, number and text (strict: unknown fields are refused). The enrichment goes back through the Table
API, ``PATCH /api/now/table/{table}/{sys_id}`` with ``{"work_notes": ...}`` (basic auth or an OAuth bearer
token), once per delivery as far as ServiceNow lets us know: the note ends with a marker naming the delivery,
and a retry after an attempt whose answer was lost first reads the record's work notes
(``GET ...?sysparm_fields=work_notes&sysparm_display_value=true``) for the marker before writing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from integrations.jobs import Permanent, Transient
from integrations.ticketing import MARKER_PREFIX, Enrichment
from integrations.webhooks import PayloadError, Ticket, TicketSource, _problems

SYS_ID = r"^[0-9a-f]{32}$"


class ServiceNowRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_]{0,79}$")] = "incident"
    sys_id: Annotated[StrictStr, Field(pattern=SYS_ID)]
    number: Annotated[StrictStr, Field(pattern=r"^[A-Z]{2,8}[0-9]{4,12}$")]
    short_description: Annotated[StrictStr, Field(max_length=500)]
    description: Annotated[StrictStr, Field(max_length=20_000)] = ""
    caller: Annotated[StrictStr, Field(max_length=200)] | None = None
    user_id: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None  # the affected user


class ServiceNowDelivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    servicenow: ServiceNowRecord


def parse_servicenow(raw: dict[str, Any]) -> Ticket:
    """The ticket of a ``{"servicenow": {...}}`` body. Raises PayloadError naming each bad field."""
    try:
        rec = ServiceNowDelivery.model_validate(raw).servicenow
    except ValidationError as exc:
        raise PayloadError(_problems(exc)) from None
    fields: dict[str, Any] = {"servicenow_table": rec.table, "servicenow_sys_id": rec.sys_id}
    if rec.user_id:
        fields["user_id"] = rec.user_id
    return Ticket(id=rec.number, source=TicketSource.SERVICENOW, title=rec.short_description,
                  description=rec.description, reporter=rec.caller, fields=fields)


def work_note(enrichment: Enrichment, *, marker: str) -> str:
    return "\n\n".join(["glassgate: why access was decided this way", *enrichment.lines(), f"[{marker}]"])


class ServiceNowTicketing:
    """ServiceNow Table API: work notes on the incident (or any task table) the delivery named."""

    name = "servicenow"

    def __init__(self, *, base_url: str, user: str | None = None, password: str | None = None,
                 token: str | None = None, timeout: float = 10.0):
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers,
                                    auth=(user or "", password or "") if not token else None)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Transient(f"ServiceNow {method} {path}: {type(exc).__name__}") from None
        if r.status_code == 429 or r.status_code >= 500:
            raise Transient(f"ServiceNow {method} {path} answered {r.status_code}")
        if r.status_code >= 400:
            raise Permanent(f"ServiceNow {method} {path} refused with {r.status_code}: {r.text[:300]}")
        return r

    def has_note(self, path: str, marker: str) -> bool:
        r = self._call("GET", path, params={"sysparm_fields": "work_notes", "sysparm_display_value": "true"})
        try:
            notes = r.json()["result"].get("work_notes") or ""
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Transient(f"ServiceNow GET {path} gave a body that is not a record") from None
        return marker in str(notes)

    def deliver(self, *, ticket: Ticket, delivery_id: str, enrichment: Enrichment, progress: Mapping[str, Any],
                note: Callable[[dict[str, Any]], None]) -> str | None:
        table, sys_id = ticket.fields["servicenow_table"], ticket.fields["servicenow_sys_id"]
        ref = f"{table}/{sys_id}"
        if progress.get("servicenow_noted"):
            return ref
        path = f"/api/now/table/{quote(table, safe='')}/{quote(sys_id, safe='')}"
        marker = MARKER_PREFIX + delivery_id
        if progress.get("servicenow_attempted") and self.has_note(path, marker):
            note({"servicenow_noted": True})
            return ref
        note({"servicenow_attempted": True})
        self._call("PATCH", path, json={"work_notes": work_note(enrichment, marker=marker)})
        note({"servicenow_noted": True})
        return ref
