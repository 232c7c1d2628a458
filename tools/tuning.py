"""Threshold tuning evidence: replay a threshold change, and analyst verdicts per policy scope."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, func, select

from risk.policy import Outcome
from risk.replay import ReplayResult, replay
from risk.store.queries import replay_frame
from risk.store.schema import DecisionRow, VerdictRow
from tools.context import ToolContext
from tools.errors import InputProblem, ToolInputError
from tools.records import Scope, TimeFilter, ToolInput, in_window, latest_verdict_ids
from tools.when import Window


class ReplayThresholdInput(ToolInput):
    policy_id: str = Field(description="The policy that sets the thresholds (e.g. POL-ACCESS-001).")
    scope: Scope = Field(description="The threshold's scope: a sensitivity tier or a resource kind.")
    step_up_at: float | None = Field(default=None, ge=0, le=1, description="New step-up threshold (default: current).")
    deny_at: float | None = Field(default=None, ge=0, le=1, description="New deny threshold (default: current).")


class Thresholds(BaseModel):
    policy_id: str
    policy_version: int
    scope: str
    step_up_at: float
    deny_at: float
    section: str


class ReplayThresholdOutput(BaseModel):
    current: Thresholds = Field(description="The thresholds in force now, for comparison.")
    result: ReplayResult


def replay_threshold(ctx: ToolContext, args: ReplayThresholdInput) -> ReplayThresholdOutput:
    """Replay new step-up/deny thresholds for one policy scope over every stored decision it governs, broken down by
    analyst verdict and attack type; use it before suggesting a threshold change, to show what it would do."""
    with ctx.sessions() as s:
        policy = ctx.policy_in_force(s)
    try:
        doc = policy.get(args.policy_id)
    except KeyError:
        known = ", ".join(d.id for d in policy.docs)
        raise ToolInputError.one("replay_threshold", "policy_id", f"no policy {args.policy_id!r}; known: {known}") from None
    entry = next((t for t in doc.thresholds if t.scope == args.scope), None)
    if entry is None:
        sets = ", ".join(t.scope for t in doc.thresholds) or "no thresholds"
        raise ToolInputError.one("replay_threshold", "scope", f"{doc.id} does not set {args.scope}; it sets {sets}")
    su = entry.step_up_at if args.step_up_at is None else args.step_up_at
    dn = entry.deny_at if args.deny_at is None else args.deny_at
    if not su < dn:
        msg = f"step_up_at ({su}) must be below deny_at ({dn})"
        raise ToolInputError("replay_threshold", [InputProblem(field=f, message=msg) for f in ("step_up_at", "deny_at")])
    with ctx.sessions() as s:
        frame = replay_frame(s, policy_id=doc.id, scope=args.scope)
    current = Thresholds(policy_id=doc.id, policy_version=doc.version, scope=entry.scope, step_up_at=entry.step_up_at,
                         deny_at=entry.deny_at, section=entry.section)
    return ReplayThresholdOutput(current=current,
                                 result=replay(frame, policy_id=doc.id, scope=args.scope, step_up_at=su, deny_at=dn))


class VerdictStatsInput(TimeFilter):
    policy_id: str | None = Field(default=None, description="Only decisions governed by this policy's thresholds.")
    scope: Scope | None = Field(default=None, description="Only decisions under this threshold scope.")


class OutcomeVerdicts(BaseModel):
    decisions: int
    malicious: int
    benign: int
    unlabelled: int
    benign_analysts: int = Field(default=0, description="Distinct analysts behind the benign verdicts counted.")
    malicious_analysts: int = Field(default=0, description="Distinct analysts behind the malicious verdicts counted.")


class ScopeStats(BaseModel):
    policy_id: str
    scope: str
    decisions: int
    by_outcome: dict[str, OutcomeVerdicts] = Field(description="Per outcome (allow, step_up, deny), latest verdicts.")
    benign_share_of_labelled_denials: float | None = Field(description="benign / (benign + malicious) among denials.")
    benign_share_of_labelled_step_ups: float | None
    attack_types: dict[str, int] = Field(description="Attack types of confirmed-malicious decisions, any outcome.")


class VerdictStatsOutput(BaseModel):
    window: Window | None
    scopes: list[ScopeStats]


def _share(o: OutcomeVerdicts) -> float | None:
    labelled = o.benign + o.malicious
    return o.benign / labelled if labelled else None


def verdict_stats(ctx: ToolContext, args: VerdictStatsInput) -> VerdictStatsOutput:
    """Count decisions and analyst verdicts per policy and threshold scope (how many denials and step-ups were
    confirmed benign or malicious, and which attacks); use it for "are restricted-tier denials too strict?"."""
    if args.policy_id is not None and args.policy_id not in {d.id for d in ctx.policy.docs}:
        known = ", ".join(d.id for d in ctx.policy.docs)
        raise ToolInputError.one("verdict_stats", "policy_id", f"no policy {args.policy_id!r}; known: {known}")
    window = args.window(now=ctx.now(), tz=ctx.tz)
    conds: list[ColumnElement[bool]] = in_window(window)
    if args.policy_id is not None:
        conds.append(DecisionRow.policy_id == args.policy_id)
    if args.scope is not None:
        conds.append(DecisionRow.threshold_scope == args.scope)
    latest = latest_verdict_ids()
    keys = (DecisionRow.policy_id, DecisionRow.threshold_scope, DecisionRow.outcome, VerdictRow.verdict,
            VerdictRow.attack_type)
    q = (select(*keys, func.count()).select_from(DecisionRow)
         .outerjoin(latest, latest.c.decision_id == DecisionRow.decision_id)
         .outerjoin(VerdictRow, VerdictRow.id == latest.c.vid).where(*conds).group_by(*keys))
    people = (select(DecisionRow.policy_id, DecisionRow.threshold_scope, DecisionRow.outcome, VerdictRow.verdict,
                     func.count(func.distinct(VerdictRow.analyst))).select_from(DecisionRow)
              .join(latest, latest.c.decision_id == DecisionRow.decision_id)
              .join(VerdictRow, VerdictRow.id == latest.c.vid).where(*conds)
              .group_by(DecisionRow.policy_id, DecisionRow.threshold_scope, DecisionRow.outcome, VerdictRow.verdict))
    with ctx.sessions() as s:
        rows = s.execute(q).all()
        analysts = {(pid, sc, o, v): n for pid, sc, o, v, n in s.execute(people).all()}
    acc: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
    attacks: dict[tuple[str, str], dict[str, int]] = {}
    for pid, scope, outcome, verdict, attack, n in rows:
        cell = acc.setdefault((pid, scope), {o.value: {"malicious": 0, "benign": 0, "unlabelled": 0} for o in Outcome})
        cell[outcome][verdict or "unlabelled"] += n
        if verdict == "malicious":
            per = attacks.setdefault((pid, scope), {})
            per[attack or "unspecified"] = per.get(attack or "unspecified", 0) + n
    out = []
    for key in sorted(acc):
        by = {o: OutcomeVerdicts(decisions=sum(c.values()), **c,
                                 benign_analysts=analysts.get((*key, o, "benign"), 0),
                                 malicious_analysts=analysts.get((*key, o, "malicious"), 0))
              for o, c in acc[key].items()}
        out.append(ScopeStats(policy_id=key[0], scope=key[1], decisions=sum(v.decisions for v in by.values()),
                              by_outcome=by, benign_share_of_labelled_denials=_share(by[Outcome.DENY]),
                              benign_share_of_labelled_step_ups=_share(by[Outcome.STEP_UP]),
                              attack_types=dict(sorted(attacks.get(key, {}).items(), key=lambda kv: (-kv[1], kv[0])))))
    return VerdictStatsOutput(window=window, scopes=out)
