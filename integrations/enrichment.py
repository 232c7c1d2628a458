"""The ticket enrichment job: find the decisions a ticket is about, narrate each for a ticket, post it.

A ticket's text is data. It is only searched for identifiers that already exist in the store (decision ids,
event ids, user ids) and for a timestamp; it never reaches a planner or an action, so nothing it says can
create, approve or widen anything. The narrative of each decision comes from
:func:`integrations.services.ask.explain_decision` (gather, narrator, verifier), with a fixed question.

How the decisions are found, first match wins, at most :data:`MAX_DECISIONS`:
the ticket's ``decision_id`` or ``event_id`` field; decision or event ids written in the title or description;
a user (the ``user_id`` field, or a known user id written in the text) with a time (``occurred_at``, or the
first ISO 8601 timestamp in the text, read as UTC without an offset), which picks that user's decisions within
15 minutes of it, nearest first; a user without a time, which picks the user's latest deny or step-up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.narrative import Audience
from integrations.jobs import Claimed, Done, Handler, JobQueue, Worker
from integrations.runtime import Runtime
from integrations.services.ask import explain_decision
from integrations.services.deps import ServiceDeps
from integrations.ticketing import (
    BuiltinTicketing,
    DecisionNote,
    Enrichment,
    JiraTicketing,
    TicketingAdapter,
    store_enrichment,
)
from integrations.webhooks import Ticket, TicketSource
from risk.audit import AuditKind
from risk.store.schema import DecisionRow
from tools.registry import call_tool

KIND = "enrich_ticket"
MAX_DECISIONS = 3
WINDOW = timedelta(minutes=15)
MAX_TOKENS = 400

_DECISION_ID = re.compile(r"\bdec-[0-9a-f]{20}\b")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")
_ISO = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?")


def _tokens(text: str) -> list[str]:
    return list(dict.fromkeys(t.rstrip(".:-") for t in _TOKEN.findall(text)))[:MAX_TOKENS]


def _first_time(text: str) -> datetime | None:
    for m in _ISO.finditer(text):
        try:
            t = datetime.fromisoformat(m.group(0).replace("Z", "+00:00").replace(" ", "T"))
        except ValueError:
            continue
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


class MatchedBy(StrEnum):
    DECISION_ID = "decision_id"
    EVENT_ID = "event_id"
    TEXT = "text"
    USER_TIME = "user_time"
    USER_LATEST = "user_latest"
    NONE = "none"


def _decision_ids(s: Session, column: Any, values: list[str]) -> list[str]:
    """Decision ids whose ``column`` is one of ``values``, in the order of ``values``."""
    if not values:
        return []
    rows = s.execute(select(column, DecisionRow.decision_id).where(column.in_(values))).all()
    by_value = {v: d for v, d in rows}
    return [by_value[v] for v in values if v in by_value]


def find_decisions_for(rt: Runtime, ticket: Ticket) -> tuple[list[str], MatchedBy, str | None]:
    """``(decision ids, how they were found, why none was found)`` for ``ticket``."""
    f = ticket.fields
    text = f"{ticket.title}\n{ticket.description}"
    tokens = _tokens(text)
    with rt.sessions() as s:
        for name, column, how in (("decision_id", DecisionRow.decision_id, MatchedBy.DECISION_ID),
                                  ("event_id", DecisionRow.event_id, MatchedBy.EVENT_ID)):
            if f.get(name):
                ids = _decision_ids(s, column, [f[name]])
                return (ids, how, None) if ids else ([], MatchedBy.NONE, f"no decision found for {name} {f[name]!r}")
        in_text = _decision_ids(s, DecisionRow.decision_id, list(dict.fromkeys(_DECISION_ID.findall(text))))
        ids = list(dict.fromkeys(in_text + _decision_ids(s, DecisionRow.event_id, tokens)))
        if ids:
            return ids[:MAX_DECISIONS], MatchedBy.TEXT, None
        if f.get("user_id"):
            users = [f["user_id"]]
        else:
            known = set(s.scalars(select(DecisionRow.user_id).where(DecisionRow.user_id.in_(tokens)).distinct()))
            users = [t for t in tokens if t in known][:MAX_DECISIONS]
    if not users:
        return [], MatchedBy.NONE, "no decision found for this ticket: it names no known decision, event or user"
    when = datetime.fromisoformat(f["occurred_at"]) if f.get("occurred_at") else _first_time(text)
    ids = _by_user(rt, users, when)
    who = ", ".join(users)
    if ids:
        return ids, MatchedBy.USER_TIME if when is not None else MatchedBy.USER_LATEST, None
    if when is not None:
        return [], MatchedBy.NONE, (f"no decision found for {who} within {int(WINDOW.total_seconds() // 60)} "
                                    f"minutes of {when.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    return [], MatchedBy.NONE, f"no decision found for {who}: no deny or step-up, and the ticket gives no time"


def _by_user(rt: Runtime, users: list[str], when: datetime | None) -> list[str]:
    """The users' decisions nearest ``when`` (within WINDOW), or each user's latest deny or step-up."""
    ctx = rt.agent_deps.tools
    picked: list[tuple[float, str]] = []
    for user in users:
        if when is not None:
            got = call_tool(ctx, "find_decisions", {"user_id": user, "since": (when - WINDOW).isoformat(),
                                                    "until": (when + WINDOW).isoformat(), "limit": 50})
            picked += [(abs(_ts(d.timestamp) - when.timestamp()), d.decision_id) for d in got.decisions]
        else:
            latest = [d for o in ("deny", "step_up")
                      for d in call_tool(ctx, "find_decisions", {"user_id": user, "outcome": o, "limit": 1}).decisions]
            latest.sort(key=lambda d: d.timestamp, reverse=True)
            picked += [(0.0, d.decision_id) for d in latest[:1]]
    picked.sort()
    return list(dict.fromkeys(d for _, d in picked))[:MAX_DECISIONS]


def _ts(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _services(rt: Runtime) -> ServiceDeps:
    got = rt.__dict__.get("_service_deps")
    if got is None:
        got = rt.__dict__["_service_deps"] = ServiceDeps.from_runtime(rt)
    return got  # type: ignore[no-any-return]


def build_enrichment(rt: Runtime, ticket: Ticket) -> Enrichment:
    ids, how, not_found = find_decisions_for(rt, ticket)
    notes = []
    for decision_id in ids:
        d = call_tool(rt.agent_deps.tools, "get_decision", {"decision_id": decision_id}).decision
        story = explain_decision(deps=_services(rt), decision_id=decision_id, audience=Audience.TICKET)
        notes.append(DecisionNote(decision_id=decision_id, outcome=d.outcome.value, risk=round(d.risk, 4),
                                  timestamp=d.timestamp, user_id=d.user_id, resource_id=d.resource_id,
                                  text=story.text, verified=story.verified, narrator=story.narrator))
    return Enrichment(ticket_id=ticket.id, matched_by=how.value, decisions=notes, not_found=not_found)


def make_handler(rt: Runtime, *, adapter_for: Callable[[Ticket], TicketingAdapter]) -> Handler:
    """The ``enrich_ticket`` job handler. ``adapter_for`` picks where a ticket's enrichment is posted."""

    def handle(job: Claimed, queue: JobQueue) -> Done:
        ticket = Ticket.from_json(job.payload["ticket"])
        delivery_id = job.payload["delivery_id"]
        enrichment = build_enrichment(rt, ticket)
        adapter = adapter_for(ticket)
        ref = adapter.deliver(ticket=ticket, delivery_id=delivery_id, enrichment=enrichment, progress=job.progress,
                              note=lambda p: queue.note(job, p))

        def finish(s: Any) -> None:
            now = rt.clock()
            store_enrichment(s, ticket=ticket, delivery_id=delivery_id, enrichment=enrichment, posted_to=adapter.name,
                             external_ref=ref, now_ms=queue.clock_ms())
            rt.ledger.append(s, kind=AuditKind.NARRATIVE, subject_id=f"ticket:{ticket.id}"[:200], at=now, payload={
                "ticket_id": ticket.id, "source": ticket.source.value, "delivery_id": delivery_id, "job_id": job.id,
                "decision_ids": [d.decision_id for d in enrichment.decisions], "matched_by": enrichment.matched_by,
                "posted_to": adapter.name, "external_ref": ref})

        return Done(result={"ticket_id": ticket.id, "decision_ids": [d.decision_id for d in enrichment.decisions],
                            "matched_by": enrichment.matched_by, "posted_to": adapter.name, "external_ref": ref,
                            "progress": job.progress}, finish=finish)

    return handle


def adapter_factory(rt: Runtime) -> tuple[Callable[[Ticket], TicketingAdapter], Callable[[], None]]:
    """Jira tickets go to Jira when GLASSGATE_JIRA_URL is set, ServiceNow incidents to ServiceNow when
    GLASSGATE_SERVICENOW_URL is; everything else (and those without it) stays in the built-in store. Returns
    the chooser and a closer for the adapters' clients."""
    builtin = BuiltinTicketing()
    st = rt.settings
    by_source: dict[TicketSource, Any] = {}
    if st.jira_enabled:
        by_source[TicketSource.JIRA] = JiraTicketing(base_url=st.jira_url or "", email=st.jira_email or "",
                                                     api_token=st.jira_api_token or "")
    if st.servicenow_url is not None:  # ServiceNow incidents get a work note (integrations/servicenow.py)
        from integrations.servicenow import ServiceNowTicketing

        by_source[TicketSource.SERVICENOW] = ServiceNowTicketing(
            base_url=st.servicenow_url, user=st.servicenow_user, password=st.servicenow_password,
            token=st.servicenow_token)

    def close() -> None:
        for adapter in by_source.values():
            adapter.close()

    return (lambda t: by_source.get(t.source, builtin)), close


def start_enrichment_worker(rt: Runtime, *, write_lock: Any = None) -> tuple[Worker, Callable[[], None]]:
    """Start the service's job worker (polling every GLASSGATE_WORKER_POLL_SECONDS); returns it and a closer
    for the ticketing clients, to call after ``worker.stop()``."""
    adapter_for, close = adapter_factory(rt)
    queue = JobQueue(sessions=rt.sessions, write_lock=write_lock)
    worker = Worker(queue, {KIND: make_handler(rt, adapter_for=adapter_for)},
                    poll_seconds=rt.settings.worker_poll_seconds)
    worker.start()
    return worker, close
