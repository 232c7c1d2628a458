"""The dashboard's reads: the live feed (keyset pages by arrival order, and what arrived after a cursor),
outcome and family counts over the last hour and day, and one decision or session in full.

Single decisions, timelines and policy passages come from the tool registry (the tools the agent, the
API and Slack use). The feed and the counts are queries of their own because no tool pages by arrival
or aggregates by family; each is served by an index (migration 0010) so a page answers quickly over a
million decisions, and each feed row is built by the tools' own ``summary_of``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import aliased

from integrations.services.deps import ServiceDeps
from risk.catalog import Family
from risk.events import Sensitivity
from risk.policy import Outcome
from risk.store.schema import DecisionRow, ExplanationRow
from risk.timeline import Timeline
from tools.decisions import GetDecisionOutput
from tools.policies import PolicyPassage
from tools.records import DecisionSummary, summary_of
from tools.registry import ToolNotFound, call_tool

PAGE = 50
NEW_MAX = 100  # rows one live poll returns at most; the client pages back for more


class DecidedBy(StrEnum):
    THRESHOLD = "threshold"
    RULE = "rule"
    EXCEPTION = "exception"


class FeedFilter(BaseModel):
    """What the analyst narrowed the feed to; every field optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Outcome | None = None
    user: str | None = None
    resource: str | None = None
    tier: Sensitivity | None = None
    family: Family | None = None
    since: datetime | None = None
    until: datetime | None = None


class FeedRow(BaseModel):
    seq: int
    summary: DecisionSummary
    step_up_at: float
    deny_at: float
    decided_by: DecidedBy
    rule_ids: list[str]


class FeedPage(BaseModel):
    rows: list[FeedRow]
    older: int | None  # the ``before`` cursor of the next (older) page, None on the last page
    newest_seq: int  # what the live stream continues after (0 for an empty store)


class Counts(BaseModel):
    window: Literal["hour", "day"]
    since: datetime
    by_outcome: dict[str, int]
    by_family: dict[str, int]


def decided_by(d: DecisionRow) -> DecidedBy:
    """What set the outcome: a hard rule raised it above the thresholds' outcome, an exception in force
    lowered it, or the thresholds alone."""
    return _decided_by(d.outcome, d.threshold_outcome, d.exception)


def _decided_by(outcome: str, threshold_outcome: str, exception: dict[str, Any] | None) -> DecidedBy:
    if outcome != threshold_outcome:
        return DecidedBy.EXCEPTION if exception and outcome == Outcome.ALLOW else DecidedBy.RULE
    return DecidedBy.THRESHOLD


def _conds(f: FeedFilter) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    for column, value in ((DecisionRow.outcome, f.outcome), (DecisionRow.user_id, f.user),
                          (DecisionRow.resource_id, f.resource), (DecisionRow.sensitivity, f.tier)):
        if value is not None:
            conds.append(column == str(value))
    if f.family is not None:
        # a correlated probe (index ix_explanations_family) keeps the walk down the arrival order; a plain
        # condition on the joined table lets the planner scan explanations and sort every match instead
        e = aliased(ExplanationRow)
        conds.append(select(e.decision_id).where(e.decision_id == DecisionRow.decision_id,
                                                 e.top_family == str(f.family)).correlate(DecisionRow).exists())
    if f.since is not None:
        conds.append(DecisionRow.ts_ms >= round(f.since.timestamp() * 1000))
    if f.until is not None:
        conds.append(DecisionRow.ts_ms < round(f.until.timestamp() * 1000))
    return conds


def _rows(deps: ServiceDeps, conds: list[ColumnElement[bool]], *, newest_first: bool, limit: int) -> list[FeedRow]:
    order = DecisionRow.seq.desc() if newest_first else DecisionRow.seq.asc()
    q = (select(DecisionRow, ExplanationRow.top_family, ExplanationRow.body)
         .join(ExplanationRow, ExplanationRow.decision_id == DecisionRow.decision_id)
         .where(*conds).order_by(order).limit(limit))
    with deps.sessions() as s:
        return [FeedRow(seq=d.seq, summary=summary_of(d, fam, body), step_up_at=d.step_up_at, deny_at=d.deny_at,
                        decided_by=decided_by(d), rule_ids=[r["rule_id"] for r in d.rules])
                for d, fam, body in s.execute(q).all()]


def newest_seq(deps: ServiceDeps) -> int:
    """The arrival number of the latest decision (0 for none): where a live stream starts."""
    with deps.sessions() as s:
        return int(s.scalar(select(func.max(DecisionRow.seq))) or 0)


def feed_page(*, deps: ServiceDeps, filters: FeedFilter, before: int | None = None, limit: int = PAGE) -> FeedPage:
    """One page of the feed, newest arrival first, older than the ``before`` cursor when given."""
    conds = _conds(filters)
    if before is not None:
        conds.append(DecisionRow.seq < before)
    rows = _rows(deps, conds, newest_first=True, limit=limit + 1)
    page = rows[:limit]
    return FeedPage(rows=page, older=page[-1].seq if len(rows) > limit else None, newest_seq=newest_seq(deps))


def feed_after(*, deps: ServiceDeps, filters: FeedFilter, after: int) -> list[FeedRow]:
    """Decisions that arrived after the cursor ``after`` (a ``seq``) and match, oldest first. Polled by the
    live stream: a cursor in the shared store, so decisions stored by another process show up too."""
    return _rows(deps, [*_conds(filters), DecisionRow.seq > after], newest_first=False, limit=NEW_MAX)


def counts(*, deps: ServiceDeps) -> tuple[Counts, Counts]:
    """Decisions per outcome and per top family whose event time lies in the last hour and the last day.

    One pass over the last day (index ix_decisions_ts_outcome, then ix_explanations_family: neither table's
    rows are read), grouped by outcome and family at once; a plain GROUP BY outcome would walk the outcome
    index over the whole table instead.
    """
    now = deps.clock()
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    hour_ms, day_ms = round(hour.timestamp() * 1000), round(day.timestamp() * 1000)
    recent = case((DecisionRow.ts_ms >= hour_ms, 1), else_=0)
    q = (select(recent, DecisionRow.outcome, ExplanationRow.top_family, func.count())
         .join(ExplanationRow, ExplanationRow.decision_id == DecisionRow.decision_id)
         .where(DecisionRow.ts_ms >= day_ms).group_by(recent, DecisionRow.outcome, ExplanationRow.top_family))
    with deps.sessions() as s:
        rows = s.execute(q).all()
    out = []
    windows: tuple[tuple[Literal["hour", "day"], datetime, set[int]], ...] = (("hour", hour, {1}), ("day", day, {0, 1}))
    for window, since, in_window in windows:
        by_outcome = {o.value: 0 for o in Outcome}
        by_family = {f.value: 0 for f in Family}
        for is_recent, outcome, family, n in rows:
            if is_recent in in_window:
                by_outcome[outcome] = by_outcome.get(outcome, 0) + n
                by_family[family] = by_family.get(family, 0) + n
        out.append(Counts(window=window, since=since, by_outcome=by_outcome, by_family=by_family))
    return out[0], out[1]


class DecisionView(BaseModel):
    """One decision as the decision page shows it: the tool's full record and the passages it cites."""

    full: GetDecisionOutput
    passages: dict[str, PolicyPassage]  # "POL-X v1 §section" -> passage
    decided_by: DecidedBy
    observed: dict[str, Any] | None  # the vendor's own decision, when the event came from one


def _cite(policy_id: str, version: int, section: str) -> str:
    return f"{policy_id} v{version} §{section}"


def decision(*, deps: ServiceDeps, decision_id: str) -> DecisionView:
    """The decision in full (``get_decision``) with the passages of the rules it crossed and of its thresholds.

    Raises:
        ToolNotFound: no such decision.
    """
    full: GetDecisionOutput = call_tool(deps.tools, "get_decision", {"decision_id": decision_id})
    d = full.decision
    wanted = {(r.policy_id, r.policy_version, r.section) for r in d.rules if r.section}
    if d.threshold_section:
        wanted.add((d.policy_id, d.policy_version, d.threshold_section))
    passages: dict[str, PolicyPassage] = {}
    for pid, ver, sec in sorted(wanted):
        try:
            passages[_cite(pid, ver, sec)] = call_tool(deps.tools, "get_policy_section",
                                                       {"policy_id": pid, "version": ver, "section": sec})
        except ToolNotFound:
            continue  # the citation is still shown; only its text is missing
    by = _decided_by(d.outcome, d.threshold_outcome, d.exception)
    # the vendor's own decision (vendor ingest adds it to the record or the explanation); None otherwise
    observed = (d.model_extra or {}).get("observed") or getattr(full.explanation, "observed", None)
    return DecisionView(full=full, passages=passages, decided_by=by, observed=observed)


def session(*, deps: ServiceDeps, session_id: str) -> Timeline:
    """The session's timeline (``session_timeline``). Raises ToolNotFound for an unknown session."""
    return call_tool(deps.tools, "session_timeline", {"session_id": session_id})
