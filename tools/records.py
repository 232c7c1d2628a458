"""Models and read helpers shared by the tools: the input base, time filters, decision summaries."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from risk.policy import Outcome
from risk.store.schema import DecisionRow, VerdictRow
from tools.errors import BadField
from tools.when import ACCEPTED, Window, normalize_when, resolve_when

Scope = Literal["tier:public", "tier:internal", "tier:confidential", "tier:restricted", "kind:saas", "kind:database",
                "kind:cloud_api", "kind:ot", "kind:admin_console"]
VerdictName = Literal["malicious", "benign"]
TOP_DRIVERS = 3


class ToolInput(BaseModel):
    """Base of every tool's input: unknown fields are refused, never ignored."""

    model_config = ConfigDict(extra="forbid")


class TimeFilter(ToolInput):
    since: AwareDatetime | None = Field(default=None, description="Only decisions at or after this instant (ISO 8601 with offset).")
    until: AwareDatetime | None = Field(default=None, description="Only decisions before this instant (ISO 8601 with offset).")
    when: str | None = Field(default=None, description=(
        "Instead of since/until, a plain time phrase in the analyst's time zone: " + ", ".join(ACCEPTED)
        + " (at/around HH:MM means 15 minutes either side, today)."))

    @field_validator("when")
    @classmethod
    def _known_phrase(cls, v: str | None) -> str | None:
        return None if v is None else normalize_when(v)

    @model_validator(mode="after")
    def _one_way_of_saying_when(self) -> Self:
        if self.when is not None and (self.since is not None or self.until is not None):
            raise BadField("when", "give either when or since/until, not both")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise BadField("until", "must be later than since")
        return self

    def window(self, *, now: datetime, tz: Any) -> Window | None:
        """The resolved range, or None when no time filter was given."""
        if self.when is not None:
            return resolve_when(self.when, now=now, tz=tz)
        if self.since is None and self.until is None:
            return None
        return Window(phrase=None, start=self.since, end=self.until)


def in_window(window: Window | None) -> list[ColumnElement[bool]]:
    """Conditions keeping decisions whose event time lies in ``window`` (half-open)."""
    conds: list[ColumnElement[bool]] = []
    if window is not None and window.start is not None:
        conds.append(DecisionRow.ts_ms >= round(window.start.timestamp() * 1000))
    if window is not None and window.end is not None:
        conds.append(DecisionRow.ts_ms < round(window.end.timestamp() * 1000))
    return conds


class Driver(BaseModel):
    """A signal that pushed risk up, with its value as people read it and its share in probability points."""

    feature: str
    label: str
    value: str
    points: float


class DecisionSummary(BaseModel):
    decision_id: str
    event_id: str
    session_id: str
    user_id: str
    resource_id: str
    resource_kind: str
    sensitivity: str
    timestamp: str
    risk: float
    outcome: Outcome
    top_family: str
    top_drivers: list[Driver]
    policy_id: str
    policy_version: int
    scope: str


class RuleHit(BaseModel):
    rule_id: str
    policy_id: str
    policy_version: int
    effect: str
    description: str
    section: str


class DecisionRecord(BaseModel):
    """The stored decision, as the output contract gives it (fields added to the record later pass through)."""

    model_config = ConfigDict(extra="allow")

    decision_id: str
    event_id: str
    session_id: str
    user_id: str
    resource_id: str
    resource_kind: str
    sensitivity: str
    timestamp: str
    risk: float
    outcome: Outcome
    threshold_outcome: Outcome
    rule_floor: Outcome
    policy_id: str
    policy_version: int
    threshold_scope: str
    threshold_section: str = Field(default="", description="The policy section that states the thresholds applied.")
    step_up_at: float
    deny_at: float
    rules: list[RuleHit]
    model_version: str
    exception: dict[str, Any] | None = Field(default=None, description="An approved exception in force, if any.")


class Verdict(BaseModel):
    decision_id: str
    verdict: VerdictName
    attack_type: str | None
    analyst: str
    note: str | None
    at: str


def drivers_of(body: dict[str, Any], k: int = TOP_DRIVERS) -> list[Driver]:
    """The ``k`` factors that raised risk the most (none when nothing raised it)."""
    factors = sorted(body["factors"], key=lambda f: (-f["contribution"], f["feature"]))
    return [Driver(feature=f["feature"], label=f["label"], value=f["display"], points=f["points"])
            for f in factors[:k] if f["contribution"] > 0]


def summary_of(d: DecisionRow, top_family: str, body: dict[str, Any]) -> DecisionSummary:
    return DecisionSummary(
        decision_id=d.decision_id, event_id=d.event_id, session_id=d.session_id, user_id=d.user_id,
        resource_id=d.resource_id, resource_kind=d.resource_kind, sensitivity=d.sensitivity, timestamp=d.timestamp,
        risk=d.risk, outcome=Outcome(d.outcome), top_family=top_family, top_drivers=drivers_of(body),
        policy_id=d.policy_id, policy_version=d.policy_version, scope=d.threshold_scope)


def verdict_of(v: VerdictRow) -> Verdict:
    return Verdict(decision_id=v.decision_id, verdict=v.verdict, attack_type=v.attack_type,  # type: ignore[arg-type]
                   analyst=v.analyst, note=v.note, at=v.at)


def latest_verdict_ids() -> Any:
    """Subquery (decision_id, vid): the id of each decision's latest verdict, which is the one that counts."""
    return (select(VerdictRow.decision_id, func.max(VerdictRow.id).label("vid"))
            .group_by(VerdictRow.decision_id).subquery())


def latest_verdicts(s: Session, decision_ids: Iterable[str]) -> dict[str, Verdict]:
    ids = list(set(decision_ids))
    if not ids:
        return {}
    latest = latest_verdict_ids()
    rows = s.scalars(select(VerdictRow).join(latest, VerdictRow.id == latest.c.vid)
                     .where(latest.c.decision_id.in_(ids)))
    return {v.decision_id: verdict_of(v) for v in rows}
