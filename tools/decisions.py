"""Finding decisions, reading one in full, and a session's timeline."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import ColumnElement, func, select

from risk.engine import decision_record
from risk.explain import Explanation
from risk.policy import Outcome
from risk.store.queries import NotFound, session_decisions
from risk.store.schema import DecisionRow, ExplanationRow, VerdictRow
from risk.store.vendor import observed_for
from risk.timeline import Timeline, build_timeline
from tools.context import ToolContext
from tools.errors import BadField, ToolNotFound
from tools.records import (
    DecisionRecord,
    DecisionSummary,
    TimeFilter,
    ToolInput,
    Verdict,
    in_window,
    summary_of,
    verdict_of,
)
from tools.when import Window

MAX_LIMIT = 200


class FindDecisionsInput(TimeFilter):
    user_id: str | None = Field(default=None, description="Only this user's decisions (exact user id, e.g. alice).")
    resource_id: str | None = Field(default=None, description="Only decisions on this resource (exact id, e.g. payroll-db).")
    session_id: str | None = Field(default=None, description="Only decisions in this session.")
    outcome: Outcome | None = Field(default=None, description="Only decisions with this outcome.")
    limit: int = Field(default=20, ge=1, le=MAX_LIMIT, description="At most this many decisions, newest first.")


class FindDecisionsOutput(BaseModel):
    total: int = Field(description="How many decisions match, before the limit.")
    window: Window | None = Field(description="The time range the filter resolved to (UTC), if any.")
    decisions: list[DecisionSummary]


def find_decisions(ctx: ToolContext, args: FindDecisionsInput) -> FindDecisionsOutput:
    """Find access decisions by user, resource, session, outcome and time (plain words such as "this morning" or
    "around 10:32" work); use it first when a question names a person, resource or time instead of a decision id."""
    window = args.window(now=ctx.now(), tz=ctx.tz)
    conds: list[ColumnElement[bool]] = in_window(window)
    for column, value in ((DecisionRow.user_id, args.user_id), (DecisionRow.resource_id, args.resource_id),
                          (DecisionRow.session_id, args.session_id), (DecisionRow.outcome, args.outcome)):
        if value is not None:
            conds.append(column == str(value))
    with ctx.sessions() as s:
        total = int(s.scalar(select(func.count()).select_from(DecisionRow).where(*conds)) or 0)
        rows = s.execute(select(DecisionRow, ExplanationRow.top_family, ExplanationRow.body)
                         .join(ExplanationRow, ExplanationRow.decision_id == DecisionRow.decision_id)
                         .where(*conds).order_by(DecisionRow.ts_ms.desc(), DecisionRow.seq.desc())
                         .limit(args.limit)).all()
        return FindDecisionsOutput(total=total, window=window,
                                   decisions=[summary_of(d, fam, body) for d, fam, body in rows])


class GetDecisionInput(ToolInput):
    decision_id: str | None = Field(default=None, description="The decision's id (dec-...).")
    event_id: str | None = Field(default=None, description="Or the id of the access event it decided.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.decision_id is None) == (self.event_id is None):
            raise BadField("decision_id", "give exactly one of decision_id or event_id")
        return self


class GetDecisionOutput(BaseModel):
    decision: DecisionRecord
    explanation: Explanation
    event: dict[str, Any]
    verdicts: list[Verdict] = Field(description="Analyst verdicts, oldest first; the last one counts.")
    observed: dict[str, Any] | None = Field(default=None, description=(
        "For an event ingested from a vendor (Okta, Entra, OCSF): the vendor's own decision (outcome, risk level, "
        "reasons by family, the policy that decided, fields it lacks) and whether glassgate, scoring in shadow, "
        "agrees; None for glassgate's own decisions."))


def get_decision(ctx: ToolContext, args: GetDecisionInput) -> GetDecisionOutput:
    """Get one decision in full: outcome, risk against the thresholds, every factor's contribution, counterfactuals,
    the access event and analyst verdicts; use it to explain a specific decision."""
    key = DecisionRow.decision_id == args.decision_id if args.decision_id else DecisionRow.event_id == args.event_id
    with ctx.sessions() as s:
        row = s.execute(select(DecisionRow, ExplanationRow.body)
                        .join(ExplanationRow, ExplanationRow.decision_id == DecisionRow.decision_id)
                        .where(key)).first()
        if row is None:
            raise ToolNotFound("decision" if args.decision_id else "event", args.decision_id or args.event_id or "")
        d, body = row
        verdicts = s.scalars(select(VerdictRow).where(VerdictRow.decision_id == d.decision_id).order_by(VerdictRow.id))
        return GetDecisionOutput(decision=DecisionRecord.model_validate(decision_record(d)),
                                 explanation=Explanation.model_validate(body), event=d.event,
                                 verdicts=[verdict_of(v) for v in verdicts], observed=observed_for(s, d.decision_id))


class SessionTimelineInput(ToolInput):
    session_id: str = Field(description="The session's id.")


def session_timeline(ctx: ToolContext, args: SessionTimelineInput) -> Timeline:
    """Show what changed in a session decision by decision (signals that moved, risk and outcome changes); use it
    for "what changed in session X?" or when a decision differs from earlier ones in the same session."""
    with ctx.sessions() as s:
        try:
            rows = session_decisions(s, args.session_id)
        except NotFound:
            raise ToolNotFound("session", args.session_id) from None
        return build_timeline(args.session_id, [({**decision_record(d), "event": d.event}, e.body) for d, e in rows])
