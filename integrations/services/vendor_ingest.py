"""Use cases for decisions glassgate did not make: ingest vendor sign-in records (push, pull or file), score
each in shadow with glassgate's own model, and store it beside the vendor's decision with their agreement.

The vendor's event id (Okta ``uuid``, Entra ``id``, OCSF ``metadata.uid``) is the idempotency key: a record
seen before with the same content is a duplicate that changes nothing; with other content it is refused.
A record that cannot be mapped is refused naming the vendor's field, and nothing is stored for it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from enum import StrEnum
from itertools import islice
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from integrations.ingest import Mapped, Vendor, VendorFieldError, map_record
from integrations.ingest.observed import NATIVE_OUTCOME, VendorFieldProblem, VendorOutcome
from integrations.ingest.records import BadRecord, unwrap
from integrations.services.deps import ServiceDeps
from risk.engine import Rejected, ScoreResult, decision_id_for
from risk.events import parse_event
from risk.store.schema import DecisionRow
from risk.store.vendor import VendorObservationRow

HOUR_MS = 3_600_000
SESSION_MFA_MS = 12 * HOUR_MS  # an Okta or Entra session outlives no working day
CHUNK = 500


class Agreement(StrEnum):
    AGREE = "agree"
    DISAGREE = "disagree"
    NOT_COMPARABLE = "not_comparable"  # a wrong password is not a risk decision


def agreement_of(vendor: VendorOutcome, glassgate: str, *, failure: bool) -> Agreement:
    """Both let it through, or both stood in its way (a challenge and a step-up are the same stand)."""
    if failure:
        return Agreement.NOT_COMPARABLE
    return Agreement.AGREE if (vendor is VendorOutcome.ALLOW) == (glassgate == "allow") else Agreement.DISAGREE


class IngestItem(BaseModel):
    index: int = Field(description="position of the record in the input, from 0")
    status: Literal["created", "duplicate", "rejected"]
    vendor_event_id: str | None = None
    decision_id: str | None = None
    vendor_outcome: VendorOutcome | None = None
    glassgate_outcome: str | None = None
    glassgate_risk: float | None = None
    agreement: Agreement | None = None
    errors: list[VendorFieldProblem] = Field(default_factory=list)


class IngestResult(BaseModel):
    vendor: Vendor
    received: int
    created: int
    duplicates: int
    rejected: int
    items: list[IngestItem]


def ingest_records(*, deps: ServiceDeps, vendor: Vendor, records: Iterable[Any],
                   lock: AbstractContextManager[Any] | None = None,
                   progress: Callable[[int], None] | None = None) -> IngestResult:
    """Map, score in shadow and store vendor records in order, committing per chunk.

    Args:
        deps: the service dependencies (the engine is built on first use).
        vendor: whose format the records are in.
        records: decoded JSON values, one per vendor event (a non-object is refused on its own).
        lock: held around each chunk's writes (the service's write lock).
        progress: called with the number of records finished after each chunk.
    """
    items: list[IngestItem] = []
    if isinstance(records, list):  # a file holds the same envelopes a push does (Graph value, Azure Monitor records)
        records = unwrap(vendor.value, records)
    it = iter(records)
    base = 0
    while chunk := list(islice(it, CHUNK)):
        with lock or nullcontext():
            items += _chunk(deps, vendor, chunk, base)
        base += len(chunk)
        if progress:
            progress(len(chunk))
    count = defaultdict(int, {s: sum(1 for i in items if i.status == s) for s in ("created", "duplicate", "rejected")})
    return IngestResult(vendor=vendor, received=len(items), created=count["created"], duplicates=count["duplicate"],
                        rejected=count["rejected"], items=items)


def _chunk(deps: ServiceDeps, vendor: Vendor, raws: list[Any], base: int) -> list[IngestItem]:
    out: dict[int, IngestItem] = {}
    mapped: list[tuple[int, Mapped]] = []
    for k, raw in enumerate(raws):
        if isinstance(raw, BadRecord):
            out[base + k] = IngestItem(index=base + k, status="rejected",
                                       errors=[VendorFieldProblem(field="(record)", message=raw.message)])
            continue
        try:
            mapped.append((base + k, map_record(vendor, raw)))
        except VendorFieldError as exc:
            out[base + k] = IngestItem(index=base + k, status="rejected", errors=exc.errors)
    ids = {m.observed.vendor_event_id for _, m in mapped}
    with deps.sessions() as s:
        known = {r.vendor_event_id: r for r in s.scalars(select(VendorObservationRow).where(
            VendorObservationRow.vendor == vendor.value, VendorObservationRow.vendor_event_id.in_(ids)))} if ids else {}
        fresh: list[tuple[int, Mapped]] = []
        first_in_chunk: dict[str, str] = {}
        for i, m in mapped:
            vid = m.observed.vendor_event_id
            prior_hash = known[vid].raw_hash if vid in known else first_in_chunk.get(vid)
            if prior_hash is None:
                first_in_chunk[vid] = m.raw_hash
                fresh.append((i, m))
            elif prior_hash == m.raw_hash:
                row = known.get(vid)
                out[i] = IngestItem(index=i, status="duplicate", vendor_event_id=vid,
                                    decision_id=row.decision_id if row else decision_id_for(m.event.event_id),
                                    vendor_outcome=m.observed.outcome, agreement=Agreement(row.agreement) if row else None)
            else:
                out[i] = IngestItem(index=i, status="rejected", vendor_event_id=vid, errors=[VendorFieldProblem(
                    field=_id_field(vendor), message=f"{vid!r} was ingested before with different content")])
        natives, updated = _with_history(s, fresh)
        fresh = [(i, m) for (i, _), m in zip(fresh, updated, strict=True)]
    if fresh:
        results = list(deps.engine().score_many(natives, chunk=len(natives)))
        with deps.sessions.begin() as s:
            decided = [r.decision["decision_id"] for r in results if isinstance(r, ScoreResult)]
            have = set(s.scalars(select(VendorObservationRow.decision_id).where(
                VendorObservationRow.decision_id.in_(decided)))) if decided else set()
            for (i, m), res in zip(fresh, results, strict=True):
                out[i] = _store(s, vendor, i, m, res, have)
    return [out[i] for i in sorted(out)]


def _id_field(vendor: Vendor) -> str:
    return {Vendor.OKTA: "uuid", Vendor.ENTRA: "id", Vendor.OCSF: "metadata.uid"}[vendor]


def _with_history(s: Any, fresh: list[tuple[int, Mapped]]) -> tuple[list[dict[str, Any]], list[Mapped]]:
    """Fill what no vendor sends but stored history holds: failed attempts in the hour before each event (the
    user's failed credential checks, stored and earlier in this chunk), and, for a sign-in that shows no second
    factor, the MFA of an earlier event in the same session with its age (SSO into an app rides on the session's
    MFA). Returns the native events and the mapped records with their ``missing`` list brought up to date."""
    if not fresh:
        return [], []
    users = {m.event.user.id for _, m in fresh}
    sids = {m.event.session_id for _, m in fresh}
    ts = [int(round(m.event.ts * 1000)) for _, m in fresh]
    failures: dict[str, list[int]] = defaultdict(list)
    for u, t in s.execute(select(VendorObservationRow.user_id, VendorObservationRow.ts_ms).where(
            VendorObservationRow.user_id.in_(users), VendorObservationRow.failure.is_(True),
            VendorObservationRow.ts_ms >= min(ts) - HOUR_MS, VendorObservationRow.ts_ms <= max(ts))):
        failures[u].append(t)
    mfa: dict[str, list[tuple[int, str, float]]] = defaultdict(list)  # session -> (ts_ms, method, minutes then)
    for sid, t, ev in s.execute(select(DecisionRow.session_id, DecisionRow.ts_ms, DecisionRow.event).where(
            DecisionRow.session_id.in_(sids), DecisionRow.ts_ms >= min(ts) - SESSION_MFA_MS,
            DecisionRow.ts_ms <= max(ts))):
        if ev["auth"]["mfa_method"] != "none":
            mfa[sid].append((t, ev["auth"]["mfa_method"], float(ev["auth"]["minutes_since_mfa"])))
    natives, out = [], []
    for (_, m), t in zip(fresh, ts, strict=True):
        u, sid = m.event.user.id, m.event.session_id
        d = m.event.canonical()
        d["auth"]["failed_attempts_1h"] = sum(1 for x in failures[u] if t - HOUR_MS <= x < t)
        if m.observed.failure:
            failures[u].append(t)
        prior = [x for x in mfa[sid] if t - SESSION_MFA_MS <= x[0] <= t]
        if d["auth"]["mfa_method"] == "none" and prior:
            at, method, minutes = max(prior)
            d["auth"]["mfa_method"] = method
            d["auth"]["minutes_since_mfa"] = int(minutes + (t - at) / 60_000)
            kept = [x for x in m.observed.missing if x.field != "auth.minutes_since_mfa"]
            m = m.model_copy(update={"observed": m.observed.model_copy(update={"missing": kept})})
        elif d["auth"]["mfa_method"] != "none":
            mfa[sid].append((t, d["auth"]["mfa_method"], float(d["auth"]["minutes_since_mfa"])))
        natives.append(parse_event(d).canonical())
        out.append(m)
    return natives, out


def _store(s: Any, vendor: Vendor, i: int, m: Mapped, res: ScoreResult | Rejected, have: set[str]) -> IngestItem:
    vid = m.observed.vendor_event_id
    if isinstance(res, Rejected):  # the native event id was taken by a native caller's different event
        return IngestItem(index=i, status="rejected", vendor_event_id=vid, errors=[VendorFieldProblem(
            field=_id_field(vendor), message=str(res.error))])
    d = res.decision
    agree = agreement_of(m.observed.outcome, d["outcome"], failure=m.observed.failure)
    if d["decision_id"] not in have:  # a crash between the decision and its observation is healed here
        have.add(d["decision_id"])
        s.add(VendorObservationRow(decision_id=d["decision_id"], vendor=vendor.value, vendor_event_id=vid,
                                   user_id=d["user_id"], ts_ms=int(round(m.event.ts * 1000)),
                                   outcome=m.observed.outcome.value, failure=m.observed.failure,
                                   rule=m.observed.deciding_rule[:300], agreement=agree.value,
                                   observed={**m.observed.model_dump(mode="json"), "agreement": agree.value,
                                             "vendor_native_outcome": NATIVE_OUTCOME[m.observed.outcome]},
                                   raw_hash=m.raw_hash))
    return IngestItem(index=i, status="created" if res.created else "duplicate", vendor_event_id=vid,
                      decision_id=d["decision_id"], vendor_outcome=m.observed.outcome, glassgate_outcome=d["outcome"],
                      glassgate_risk=round(d["risk"], 4), agreement=agree)
