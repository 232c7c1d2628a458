"""Where a ticket's enrichment goes: the built-in store (served by the API), or a Jira Cloud comment.

Every enrichment is recorded in ``ticket_enrichments`` by :func:`store_enrichment`, inside the transaction
that marks its job done (so the record exists exactly once). An adapter with an external system posts there
first and returns the reference it got (the Jira comment id), which the record keeps in ``external_ref``.

Jira's comment is posted at most once per delivery as far as Jira's own API lets us know: the comment carries
a marker naming the delivery, the comment id is noted on the job as soon as Jira answers, and a retry that
finds no note first looks for a comment with the marker before posting. The remaining window: a retry that
runs while an earlier attempt's POST is still in flight at Jira (only possible if that attempt outlives the
job lease of 120 s, which its 10 s timeouts rule out) could post a second comment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from sqlalchemy.orm import Session

from integrations.jobs import Permanent, Transient
from integrations.webhooks import Ticket, adf_text
from risk.store.service import EnrichmentRow

MARKER_PREFIX = "glassgate delivery "
COMMENT_PAGES = 5  # comments read (100 a page) when looking for an earlier attempt's comment


@dataclass(frozen=True)
class DecisionNote:
    decision_id: str
    outcome: str
    risk: float
    timestamp: str
    user_id: str
    resource_id: str
    text: str  # the verified ticket narrative
    verified: bool
    narrator: str


@dataclass(frozen=True)
class Enrichment:
    """What glassgate writes back on a ticket: a narrative per decision found, or why none was found."""

    ticket_id: str
    matched_by: str  # how the decisions were found (decision_id, event_id, text, user_time, user_latest, none)
    decisions: list[DecisionNote] = field(default_factory=list)
    not_found: str | None = None  # "no decision found for ..." when ``decisions`` is empty

    def as_json(self) -> dict[str, Any]:
        return {"ticket_id": self.ticket_id, "matched_by": self.matched_by, "not_found": self.not_found,
                "decisions": [d.__dict__ for d in self.decisions]}

    def lines(self) -> list[str]:
        """Plain paragraphs, the same in every adapter."""
        if not self.decisions:
            return [self.not_found or "no decision found for this ticket"]
        out = []
        for d in self.decisions:
            out.append(f"Decision {d.decision_id}: {d.outcome.replace('_', '-')} for {d.user_id} on {d.resource_id} "
                       f"at {d.timestamp} (risk {d.risk:.2f}).")
            out.append(d.text + ("" if d.verified else " [narrative not verified against its evidence]"))
        return out


class TicketingAdapter(Protocol):
    """Posts an enrichment to a ticketing system outside glassgate, once per delivery."""

    name: str  # what ``ticket_enrichments.posted_to`` records

    def deliver(self, *, ticket: Ticket, delivery_id: str, enrichment: Enrichment, progress: Mapping[str, Any],
                note: Callable[[dict[str, Any]], None]) -> str | None:
        """Post ``enrichment`` unless ``progress`` (or the system itself) shows it was posted for this delivery;
        ``note`` records progress on the job before anything else can fail. Returns the external reference.

        Raises:
            Transient: try again later (5xx, 429, timeout, connection refused).
            Permanent: the system refused the request (4xx); retrying cannot help.
        """
        ...


class BuiltinTicketing:
    """glassgate itself is the ticket's record: nothing to post, the enrichment row is the delivery."""

    name = "builtin"

    def deliver(self, *, ticket: Ticket, delivery_id: str, enrichment: Enrichment, progress: Mapping[str, Any],
                note: Callable[[dict[str, Any]], None]) -> str | None:
        return None


def store_enrichment(s: Session, *, ticket: Ticket, delivery_id: str, enrichment: Enrichment, posted_to: str,
                     external_ref: str | None, now_ms: int) -> EnrichmentRow:
    """Write (or, for a later delivery of the same ticket, replace) the ticket's enrichment record."""
    row = s.get(EnrichmentRow, ticket.id)
    if row is None:
        row = EnrichmentRow(ticket_id=ticket.id)
        s.add(row)
    row.source, row.delivery_id = ticket.source.value, delivery_id
    row.decision_ids = [d.decision_id for d in enrichment.decisions]
    row.narrative = {**enrichment.as_json(), "text": "\n\n".join(enrichment.lines())}
    row.posted_to, row.external_ref, row.created_ms = posted_to, external_ref, now_ms
    return row


# ----------------------------------------------------------------------------- Jira Cloud


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _paragraph(text: str) -> dict[str, Any]:
    return {"type": "paragraph", "content": [_text(text)]} if text else {"type": "paragraph"}


def adf_comment(enrichment: Enrichment, *, marker: str) -> dict[str, Any]:
    """The comment's request body: an Atlassian Document Format document, ending with the delivery marker."""
    content: list[dict[str, Any]] = [
        {"type": "heading", "attrs": {"level": 3}, "content": [_text("glassgate: why access was decided this way")]}]
    content += [_paragraph(line) for line in enrichment.lines()]
    content.append({"type": "paragraph", "content": [
        {"type": "text", "text": marker, "marks": [{"type": "code"}]}]})
    return {"body": {"type": "doc", "version": 1, "content": content}}


class JiraTicketing:
    """Jira Cloud REST v3: ``POST /rest/api/3/issue/{key}/comment`` with basic auth (email:API token)."""

    name = "jira"

    def __init__(self, *, base_url: str, email: str, api_token: str, timeout: float = 10.0):
        self._client = httpx.Client(base_url=base_url.rstrip("/"), auth=(email, api_token), timeout=timeout,
                                    headers={"Accept": "application/json"})

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # timeouts, refused connections, broken responses
            raise Transient(f"Jira {method} {path}: {type(exc).__name__}") from None
        if r.status_code == 429 or r.status_code >= 500:
            raise Transient(f"Jira {method} {path} answered {r.status_code}")
        if r.status_code >= 400:
            raise Permanent(f"Jira {method} {path} refused with {r.status_code}: {r.text[:300]}")
        return r

    def find_comment(self, key: str, marker: str) -> str | None:
        """The id of a comment on ``key`` carrying ``marker``, if one exists."""
        path = f"/rest/api/3/issue/{quote(key, safe='')}/comment"
        start = 0
        for _ in range(COMMENT_PAGES):
            r = self._call("GET", path, params={"startAt": start, "maxResults": 100, "orderBy": "-created"})
            try:
                page = r.json()
                comments = page.get("comments") or []
                for c in comments:
                    if marker in adf_text(c.get("body")):
                        return str(c["id"])
            except (ValueError, AttributeError, KeyError, TypeError):
                raise Transient(f"Jira GET {path} gave a body that is not a comment page") from None
            start += len(comments)
            if not comments or start >= int(page.get("total", 0)):
                return None
        return None

    def deliver(self, *, ticket: Ticket, delivery_id: str, enrichment: Enrichment, progress: Mapping[str, Any],
                note: Callable[[dict[str, Any]], None]) -> str | None:
        if progress.get("jira_comment_id"):
            return str(progress["jira_comment_id"])
        marker = MARKER_PREFIX + delivery_id
        if progress.get("jira_attempted"):  # an earlier attempt may have posted and died before noting it
            found = self.find_comment(ticket.id, marker)
            if found is not None:
                note({"jira_comment_id": found})
                return found
        note({"jira_attempted": True})
        r = self._call("POST", f"/rest/api/3/issue/{quote(ticket.id, safe='')}/comment",
                       json=adf_comment(enrichment, marker=marker))
        try:
            comment_id = str(r.json()["id"])
        except (ValueError, KeyError, TypeError):
            raise Transient(f"Jira answered {r.status_code} without a comment id") from None
        note({"jira_comment_id": comment_id})
        return comment_id
