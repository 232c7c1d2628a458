"""The online decision path: validate, featurize against the user's profile, score, decide,
explain, store and audit, in one transaction per chunk of events.

Every dependency is handed in; the clock too, so tests are repeatable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from risk import registry
from risk.audit import Ledger
from risk.catalog import FEATURE_NAMES
from risk.counterfactual import find_counterfactuals
from risk.events import AccessEvent, EventValidationError, FieldError, ResourceKind, Sensitivity, parse_event
from risk.explain import Counterfactual, DecidedKind, TreeShap, build_explanation, quality_notes, top_families
from risk.features import MIN_BASELINE_EVENTS, SessionState, UserProfile, event_row, featurize_online
from risk.model import RiskModel
from risk.policy import OUTCOME_RANK, Outcome, PolicyDecision, PolicySet, outcome_for
from risk.resources import ResourceCatalog
from risk.store.control import ExceptionRow, RevocationRow
from risk.store.policies import effective_policy, version_mark
from risk.store.schema import CounterRow, DecisionRow, ExplanationRow, ProfileRow, SessionRow, ShadowScoreRow

Progress = Callable[[int], None]
_RACE_RETRIES = 3  # a chunk that lost an insert race with another process is decided again
_DECISION_COLUMNS = tuple(c.key for c in DecisionRow.__table__.columns)  # the row as a dict, for the bulk INSERT

# Where the policy corpus says a revoked session denies every later event.
REVOCATION_CITE = ("POL-SES-006", "4-revoked-sessions")


class IdempotencyConflict(ValueError):
    """The event id was already decided for a different event body."""

    def __init__(self, event_id: str, decision_id: str):
        self.event_id, self.decision_id = event_id, decision_id
        super().__init__(f"event_id {event_id!r} was already used for a different event (decision {decision_id})")


@dataclass(frozen=True)
class ScoreResult:
    decision: dict[str, Any]
    explanation: dict[str, Any]
    created: bool  # False when an identical event had been decided before


@dataclass(frozen=True)
class Rejected:
    """An input that was not decided; nothing was stored for it."""

    index: int
    error: EventValidationError | IdempotencyConflict

    def as_json(self, line: int) -> dict[str, Any]:
        if isinstance(self.error, EventValidationError):
            return {"error": {"line": line, "fields": self.error.fields, "message": str(self.error),
                              "details": [e.model_dump() for e in self.error.errors]}}
        return {"error": {"line": line, "fields": ["event_id"], "message": str(self.error)}}


def decision_id_for(event_id: str) -> str:
    return "dec-" + hashlib.sha256(event_id.encode()).hexdigest()[:20]


def signals_for(ev: AccessEvent, x: np.ndarray) -> dict[str, Any]:
    """Everything a policy rule may test: the features plus the event's context."""
    return {**dict(zip(FEATURE_NAMES, x.tolist(), strict=True)), **context_for(ev)}


def context_for(ev: AccessEvent) -> dict[str, Any]:
    return {"resource.kind": ev.resource.kind.value, "resource.sensitivity": ev.resource.sensitivity.value,
            "user.privileged": ev.user.privileged, "activity.action": ev.activity.action}


def crossed_lines(risk: float, pd_: PolicyDecision) -> list[str]:
    t = pd_.threshold
    cite = f"{t.policy_id} v{t.policy_version} §{t.section}"
    if risk >= t.deny_at:
        lines = [f"risk {risk:.2f} is at or above the deny threshold {t.deny_at:.2f} for {t.scope} ({cite})"]
    elif risk >= t.step_up_at:
        lines = [f"risk {risk:.2f} is at or above the step-up threshold {t.step_up_at:.2f} for {t.scope} ({cite})"]
    else:
        lines = [f"risk {risk:.2f} is below the step-up threshold {t.step_up_at:.2f} for {t.scope} ({cite})"]
    lines += [f"rule {r.rule_id} ({r.effect.value}): {r.description} ({r.policy_id} v{r.policy_version} §{r.section})"
              for r in pd_.rules]
    return lines


@dataclass
class Override:
    """What the control loop changed about a policy decision."""

    outcome: Outcome
    rule_floor: Outcome
    extra_rules: list[dict[str, Any]] = field(default_factory=list)
    exception: dict[str, Any] | None = None
    revocation: str | None = None
    crossed: list[str] = field(default_factory=list)


def decided_by_for(pd_: PolicyDecision, ov: Override) -> tuple[str, DecidedKind]:
    """What set the outcome, as (decided_by, kind): a revocation, an exception that changed it, the hard rule
    that raised it above the thresholds' outcome, or else the threshold (rules that agree are context)."""
    if ov.revocation is not None:
        return "revocation", "revocation"
    if ov.exception and ov.exception.get("changed_outcome_from"):
        return "exception", "exception"
    if OUTCOME_RANK[ov.outcome] > OUTCOME_RANK[pd_.threshold_outcome]:
        rule = next((r for r in pd_.rules if r.effect is ov.outcome), None)
        if rule is not None:
            return rule.rule_id, "rule"
    return "threshold", "threshold"


@dataclass
class DecisionEngine:
    """Scores events online. One instance per process; it is safe to reuse across calls."""

    sessions: sessionmaker[Session]
    model: RiskModel
    policy: PolicySet
    ledger: Ledger
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # version -> model (the files under the models directory); with it the engine follows the store's
    # registry: a promotion by any process is decided by from the next chunk, a shadow candidate scored beside
    model_loader: Callable[[str], RiskModel] | None = None
    catalog: ResourceCatalog | None = None  # known resources: their catalogued tier wins over the event's claim

    def __post_init__(self) -> None:
        self._tier_notes: dict[str, str] = {}
        self.shap = TreeShap(self.model)
        self._base_policy = self.policy
        self._policy_mark = 0
        self.shadow_model: RiskModel | None = None
        self._shadow_shap: TreeShap | None = None
        self._model_mark: tuple[str | None, str | None] | None = None

    def _refresh_models(self, s: Session) -> None:
        """Pick up a promotion or a new shadow candidate recorded by any process."""
        if self.model_loader is None:
            return
        m = registry.mark(s)
        if m == self._model_mark:
            return
        live, shadow = m
        if live is not None and live != self.model.version:
            self.model = self.model_loader(live)
            self.shap = TreeShap(self.model)
        if shadow is not None and shadow != self.model.version:
            if self.shadow_model is None or self.shadow_model.version != shadow:
                self.shadow_model = self.model_loader(shadow)
                self._shadow_shap = TreeShap(self.shadow_model)
        else:
            self.shadow_model, self._shadow_shap = None, None
        self._model_mark = m

    def _shadow_rows(self, Xa: np.ndarray, decided: list[tuple[str, PolicyDecision]]) -> list[ShadowScoreRow]:
        """The shadow candidate's score and explanation summary per decision; it decides nothing."""
        if self.shadow_model is None or self._shadow_shap is None:
            return []
        phi, margins = self._shadow_shap.contributions(Xa)
        risks = 1.0 / (1.0 + np.exp(-margins))
        fams = top_families(phi)
        out = []
        for k, (decision_id, pd_) in enumerate(decided):
            t = pd_.threshold
            order = np.argsort(-phi[k])[:3]
            out.append(ShadowScoreRow(decision_id=decision_id, model_version=self.shadow_model.version,
                                      risk=float(risks[k]), top_family=str(fams[k]),
                                      threshold_outcome=outcome_for(float(risks[k]), t.step_up_at, t.deny_at).value,
                                      top_drivers=[FEATURE_NAMES[j] for j in order if phi[k, j] > 0]))
        return out

    def _refresh_policy(self, s: Session) -> None:
        """Pick up policy versions approved since the last chunk (by any process)."""
        mark = version_mark(s)
        if mark != self._policy_mark:
            self.policy = effective_policy(s, self._base_policy)
            self._policy_mark = mark

    def score(self, raw: Any) -> ScoreResult:
        """Decide one event. Raises EventValidationError or IdempotencyConflict and stores nothing then."""
        (out,) = list(self.score_many([raw]))
        if isinstance(out, Rejected):
            raise out.error
        return out

    def score_many(self, raws: Iterable[Any], *, chunk: int = 500,
                   progress: Progress | None = None) -> Iterator[ScoreResult | Rejected]:
        """Decide a stream of events in order, committing per chunk; yields one result per input."""
        buf: list[tuple[int, Any]] = []
        for i, raw in enumerate(raws):
            buf.append((i, raw))
            if len(buf) >= chunk:
                yield from self._chunk(buf)
                if progress:
                    progress(len(buf))
                buf = []
        if buf:
            yield from self._chunk(buf)
            if progress:
                progress(len(buf))

    # ------------------------------------------------------------------ internals

    def _catalogued(self, ev: AccessEvent) -> AccessEvent:
        """The event with the catalogue's kind and tier for a known resource (the caller's claim is noted)."""
        known = self.catalog.get(ev.resource.id) if self.catalog is not None else None
        if known is None or (known.tier, known.kind) == (ev.resource.sensitivity.value, ev.resource.kind.value):
            return ev
        self._tier_notes[ev.event_id] = (
            f"resource {ev.resource.id} was sent as {ev.resource.kind.value}/{ev.resource.sensitivity.value}; the "
            f"resource catalogue lists it as {known.kind}/{known.tier}, which is what it was decided at")
        fixed = ev.resource.model_copy(update={"sensitivity": Sensitivity(known.tier), "kind": ResourceKind(known.kind)})
        return ev.model_copy(update={"resource": fixed})

    def _chunk(self, items: list[tuple[int, Any]]) -> list[ScoreResult | Rejected]:
        for attempt in range(_RACE_RETRIES):
            try:
                return self._chunk_once(items)
            except IntegrityError:
                # Another process committed one of these events (or a user's or session's first row) between
                # our read and our write; the transaction rolled back whole, and a retry reads what it stored:
                # the same event then gets that first decision (created=False), never a second one.
                if attempt == _RACE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _chunk_once(self, items: list[tuple[int, Any]]) -> list[ScoreResult | Rejected]:
        results: dict[int, ScoreResult | Rejected] = {}
        with self.sessions.begin() as s:
            parsed: list[tuple[int, AccessEvent, str]] = []
            for i, raw in items:
                try:
                    ev = parse_event(raw)
                except EventValidationError as exc:
                    results[i] = Rejected(i, exc)
                    continue
                parsed.append((i, self._catalogued(ev), ev.content_hash()))
            existing = self._existing(s, {ev.event_id for _, ev, _ in parsed})
            fresh: list[tuple[int, AccessEvent, str]] = []
            seen_in_chunk: dict[str, str] = {}
            for i, ev, h in parsed:
                prior = existing.get(ev.event_id)
                if prior is not None or ev.event_id in seen_in_chunk:
                    prior_hash = prior[0].event_hash if prior else seen_in_chunk[ev.event_id]
                    if prior_hash != h:
                        results[i] = Rejected(i, IdempotencyConflict(ev.event_id, decision_id_for(ev.event_id)))
                    elif prior is not None:
                        results[i] = ScoreResult(decision_record(prior[0]), prior[1].body, created=False)
                    else:
                        results[i] = (i, ev)  # type: ignore[assignment]  # resolved after the chunk is stored
                    continue
                seen_in_chunk[ev.event_id] = h
                fresh.append((i, ev, h))
            if fresh:
                for i, res in self._decide(s, fresh).items():
                    results[i] = res
            for i, r in list(results.items()):
                if isinstance(r, tuple):  # a repeat of an event first seen in this very chunk
                    first = next(v for v in results.values() if isinstance(v, ScoreResult) and v.created
                                 and v.decision["event_id"] == r[1].event_id)
                    results[i] = ScoreResult(first.decision, first.explanation, created=False)
        return [results[i] for i, _ in items]

    def checkpoint(self):
        """Verify the ledger and pin its tree head in the witness file (call at the end of a run:
        it reads the whole ledger)."""
        with self.sessions.begin() as s:
            return self.ledger.checkpoint(s)

    def _existing(self, s: Session, event_ids: set[str]) -> dict[str, tuple[DecisionRow, ExplanationRow]]:
        if not event_ids:
            return {}
        rows = s.execute(select(DecisionRow, ExplanationRow).join(
            ExplanationRow, ExplanationRow.decision_id == DecisionRow.decision_id).where(
            DecisionRow.event_id.in_(event_ids))).all()
        return {d.event_id: (d, e) for d, e in rows}

    def _decide(self, s: Session, fresh: list[tuple[int, AccessEvent, str]]) -> dict[int, ScoreResult]:
        self._refresh_policy(s)
        self._refresh_models(s)
        users = {ev.user.id for _, ev, _ in fresh}
        sids = {ev.session_id for _, ev, _ in fresh}
        prof_rows = {r.user_id: r for r in s.scalars(select(ProfileRow).where(ProfileRow.user_id.in_(users)).with_for_update())}
        sess_rows = {r.session_id: r for r in s.scalars(select(SessionRow).where(SessionRow.session_id.in_(sids)).with_for_update())}
        profiles = {u: UserProfile.from_json(u, r.state) for u, r in prof_rows.items()}
        states = {k: SessionState.from_json(k, r.user_id, r.state) for k, r in sess_rows.items()}
        X, priors = [], []
        for _, ev, _ in fresh:
            p = profiles.setdefault(ev.user.id, UserProfile(ev.user.id))
            st = states.setdefault(ev.session_id, SessionState(ev.session_id, ev.user.id))
            priors.append(p.n)
            X.append(featurize_online(event_row(ev), p, st))
        Xa = np.array(X)
        phi, margins = self.shap.contributions(Xa)
        risks = 1.0 / (1.0 + np.exp(-margins))
        seq0 = self._next_seq(s, len(fresh))
        revoked = self._revocations(s, sids)
        exceptions = self._exceptions(s, fresh)
        out: dict[int, ScoreResult] = {}
        audit = []
        decided: list[tuple[str, PolicyDecision]] = []
        new_decisions: list[dict[str, Any]] = []
        new_explanations: list[dict[str, Any]] = []
        for k, (i, ev, h) in enumerate(fresh):
            x, risk = Xa[k], float(risks[k])
            ctx = context_for(ev)
            pd_ = self.policy.decide(risk=risk, signals={**dict(zip(FEATURE_NAMES, x.tolist(), strict=True)), **ctx})
            ts_ms = int(round(ev.ts * 1000))
            ov = self._override(pd_, revoked.get(ev.session_id), exceptions.get((ev.user.id, ev.resource.id), []), ts_ms)
            cfs: list[Counterfactual]
            cf_note: str | None
            if ov.revocation is not None:
                cfs, cf_note = [], ("the session was revoked; no change of signals reopens it, only a new sign-in "
                                    "starts a new session")
            else:
                cfs, cf_note = find_counterfactuals(x=x, outcome=pd_.outcome, context=ctx, model=self.model,
                                                    policy=self.policy)
            decided_by, decided_kind = decided_by_for(pd_, ov)
            expl = build_explanation(x=x, phi=phi[k], base=self.shap.base_value, margin=float(margins[k]),
                                     decided_by=decided_by, decided_kind=decided_kind,
                                     crossed=crossed_lines(risk, pd_) + ov.crossed, counterfactuals=cfs,
                                     counterfactual_note=cf_note,
                                     notes=quality_notes(x, self.model, priors[k], MIN_BASELINE_EVENTS)
                                     + ([self._tier_notes.pop(ev.event_id)] if ev.event_id in self._tier_notes else []))
            d = DecisionRow(
                decision_id=decision_id_for(ev.event_id), event_id=ev.event_id, event_hash=h, session_id=ev.session_id,
                user_id=ev.user.id, resource_id=ev.resource.id, resource_kind=ev.resource.kind.value,
                sensitivity=ev.resource.sensitivity.value, timestamp=ev.canonical()["timestamp"],
                ts_ms=ts_ms, seq=seq0 + k, risk=risk, outcome=ov.outcome.value,
                threshold_outcome=pd_.threshold_outcome.value, rule_floor=ov.rule_floor.value,
                policy_id=pd_.threshold.policy_id, policy_version=pd_.threshold.policy_version,
                threshold_scope=pd_.threshold.scope, threshold_section=pd_.threshold.section, step_up_at=pd_.threshold.step_up_at, deny_at=pd_.threshold.deny_at,
                rules=[{"rule_id": r.rule_id, "policy_id": r.policy_id, "policy_version": r.policy_version,
                        "effect": r.effect.value, "description": r.description, "section": r.section} for r in pd_.rules]
                + ov.extra_rules,
                model_version=self.model.version, event=ev.canonical(), exception=ov.exception)
            body = expl.model_dump(mode="json")
            new_decisions.append({c: getattr(d, c) for c in _DECISION_COLUMNS})
            new_explanations.append({"decision_id": d.decision_id, "top_family": expl.top_family, "status": expl.status,
                                     "contributions": phi[k].tolist(), "body": body})
            decided.append((d.decision_id, pd_))
            rec = decision_record(d)
            audit.append(("decision", d.decision_id, {"decision": rec, "event_hash": h,
                                                       "explanation_hash": _hash_json(body)}, self.clock()))
            out[i] = ScoreResult(rec, body, created=True)
        # One multi-row INSERT per table (executemany), not the ORM unit of work per object.
        s.execute(insert(DecisionRow), new_decisions)
        s.execute(insert(ExplanationRow), new_explanations)
        s.add_all(self._shadow_rows(Xa, decided))  # flushed after the decisions they refer to
        now_ms = int(self.clock().timestamp() * 1000)
        for u, p in profiles.items():
            if u in prof_rows:
                prof_rows[u].state, prof_rows[u].updated_ms = p.to_json(), now_ms
            else:
                s.add(ProfileRow(user_id=u, state=p.to_json(), updated_ms=now_ms))
        ts_by_session: dict[str, list[int]] = {}
        for _, ev, _ in fresh:
            ts_by_session.setdefault(ev.session_id, []).append(int(round(ev.ts * 1000)))
        for sid, st in states.items():
            if sid in sess_rows:
                r = sess_rows[sid]
                r.state, r.last_ms = st.to_json(), max(r.last_ms, *ts_by_session[sid])
            else:
                s.add(SessionRow(session_id=sid, user_id=st.user_id, state=st.to_json(),
                                 first_ms=min(ts_by_session[sid]), last_ms=max(ts_by_session[sid])))
        self.ledger.append_many(s, audit)
        return out

    def _revocations(self, s: Session, sids: set[str]) -> dict[str, RevocationRow]:
        return {r.session_id: r for r in s.scalars(select(RevocationRow).where(RevocationRow.session_id.in_(sids)))}

    def _exceptions(self, s: Session, fresh: list[tuple[int, AccessEvent, str]]) -> dict[tuple[str, str], list[ExceptionRow]]:
        users = {ev.user.id for _, ev, _ in fresh}
        resources = {ev.resource.id for _, ev, _ in fresh}
        lo = min(int(ev.ts * 1000) for _, ev, _ in fresh)
        rows = s.scalars(select(ExceptionRow).where(ExceptionRow.user_id.in_(users), ExceptionRow.resource_id.in_(resources),
                                                    ExceptionRow.ends_ms >= lo))
        out: dict[tuple[str, str], list[ExceptionRow]] = {}
        for r in rows:
            out.setdefault((r.user_id, r.resource_id), []).append(r)
        return out

    def _override(self, pd_: PolicyDecision, revocation: RevocationRow | None, exceptions: list[ExceptionRow],
                  ts_ms: int) -> Override:
        """Apply what the SOC decided: a revoked session denies; an exception in force allows what only the
        thresholds or a step-up rule would have stopped (never a hard deny rule)."""
        if revocation is not None and revocation.revoked_ms <= ts_ms:
            pid, section = REVOCATION_CITE
            version = self.policy.get(pid).version
            rule = {"rule_id": "session-revoked", "policy_id": pid, "policy_version": version, "effect": "deny",
                    "description": f"The session was revoked (proposal {revocation.proposal_id}); every later event "
                                   "in it is denied.", "section": section}
            when = datetime.fromtimestamp(revocation.revoked_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return Override(outcome=Outcome.DENY, rule_floor=Outcome.DENY, extra_rules=[rule], exception=None,
                            revocation=revocation.proposal_id,
                            crossed=[f"session revoked at {when} by approved proposal {revocation.proposal_id}: "
                                     f"every later event is denied ({pid} v{version} §{section})"])
        active = [e for e in exceptions if e.starts_ms <= ts_ms <= e.ends_ms]
        if not active:
            return Override(outcome=pd_.outcome, rule_floor=pd_.rule_floor)
        exc = max(active, key=lambda e: e.ends_ms)
        hard_deny = any(r.effect is Outcome.DENY for r in pd_.rules)
        changed = pd_.outcome is not Outcome.ALLOW and not hard_deny
        until = datetime.fromtimestamp(exc.ends_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        cite = f"{exc.policy_id} v{exc.policy_version} §{exc.section}"
        info = {"exception_id": exc.exception_id, "proposal_id": exc.proposal_id, "policy_id": exc.policy_id,
                "policy_version": exc.policy_version, "section": exc.section, "ends_at": until,
                "changed_outcome_from": pd_.outcome.value if changed else None}
        if changed:
            line = (f"exception {exc.exception_id} is in force until {until}: allowed instead of "
                    f"{pd_.outcome.value} ({cite})")
        elif hard_deny:
            line = (f"exception {exc.exception_id} is in force until {until} but does not override a hard deny "
                    f"rule ({cite})")
        else:
            line = f"exception {exc.exception_id} is in force until {until} ({cite})"
        return Override(outcome=Outcome.ALLOW if changed else pd_.outcome,
                        rule_floor=Outcome.ALLOW if changed else pd_.rule_floor, exception=info, crossed=[line])

    def _next_seq(self, s: Session, n: int) -> int:
        row = s.get(CounterRow, "decision_seq", with_for_update=True)
        if row is None:
            row = CounterRow(name="decision_seq", value=0)
            s.add(row)
        start = row.value
        row.value = start + n
        return start


def _hash_json(obj: Any) -> str:
    from risk.events import canonical_json

    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


DECISION_FIELDS = ("decision_id", "event_id", "session_id", "user_id", "resource_id", "resource_kind", "sensitivity",
                   "timestamp", "risk", "outcome", "threshold_outcome", "rule_floor", "policy_id", "policy_version",
                   "threshold_scope", "threshold_section", "step_up_at", "deny_at", "rules", "model_version",
                   "exception")


def decision_record(d: DecisionRow) -> dict[str, Any]:
    """The decision as the output contract gives it."""
    return {k: getattr(d, k) for k in DECISION_FIELDS}


__all__ = ["DecisionEngine", "FieldError", "IdempotencyConflict", "Rejected", "ScoreResult", "decision_record",
           "signals_for"]
