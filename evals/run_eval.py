"""The explanation and narrative evals: ``python -m evals.run_eval [--cases N] [--seed S] [--out DIR]``
(also ``glassgate eval``).

Builds its own eval home (``GLASSGATE_HOME/eval-world``, rebuilt on every run): generates the world of
``evals/datasets/scenarios.yaml``, trains a model on the earlier days, decides the later days of the
sampled users online, adds the hand-written edge cases of ``edge_cases.yaml`` (with an exception and a
revocation approved through proposals), then scores every case with the evaluators of
:mod:`evals.evaluators`, for the offline narrator and, when ``GLASSGATE_LLM_BASE_URL`` is set, the LLM one.
Writes the report (:mod:`evals.report`) and exits 1 when the gate fails.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from agent.approval import Channel, Kind
from agent.gather import gather
from agent.narrative import Audience, Intent
from agent.planner import Plan
from agent.proposals import create, decide
from agent.verifier import verify
from evals import evaluators as E
from evals.report import write_report
from evals.scenarios import (
    EDGE_PATH,
    SPEC_PATH,
    Case,
    DatasetError,
    EdgeCase,
    build_world,
    edge_event,
    later_minute,
    load_edge_cases,
    load_spec,
    sample_cases,
    set_path,
)
from evals.stress import run_stress
from integrations.runtime import Runtime
from integrations.settings import SHIPPED_PRINCIPALS, Settings
from risk.catalog import FEATURE_INDEX
from risk.explain import TreeShap
from risk.features import batch_features, warm_profiles
from risk.policy import OUTCOME_RANK, Outcome
from risk.store.schema import ProfileRow, SessionRow
from risk.synth import row_to_event
from risk.training import train_on_world
from tools.registry import call_tool

Stage = Callable[[str, int], Callable[[int], None]]  # (description, total) -> advance(n)
MARKER = "eval-world.json"
REQUESTER, APPROVER = "ana", "bob"  # shipped demo principals: an analyst drafts, a policy owner approves
DEFAULT_CASES = 160
TWIN_UA = "Mozilla/5.0 (X11; Linux x86_64) glassgate-eval-twin"


class EvalHomeRefused(RuntimeError):
    """The eval home holds files the eval did not create."""


def prepare_home(home: Path) -> None:
    if home.exists() and any(home.iterdir()) and not (home / MARKER).exists():
        raise EvalHomeRefused(f"{home} holds files that `glassgate eval` did not create; remove it or point GLASSGATE_HOME elsewhere")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / MARKER).write_text('{"created_by": "evals.run_eval"}\n')


def eval_settings(base: Settings, home: Path, now: Any, *, llm: bool) -> Settings:
    """The eval world's settings: its own home and fixed clock, the caller's model endpoint and call bounds."""
    return Settings(home=home, database_url=None, config=SHIPPED_PRINCIPALS, policy_dir=base.policy_dir, chroma_url=None,
                    llm_base_url=base.llm_base_url if llm else None, llm_model=base.llm_model if llm else None,
                    openai_api_key=base.openai_api_key, now=now,
                    **{k: v for k, v in base.model_dump().items()  # the call bounds: timeouts, max_tokens, ...
                       if k.startswith("llm_") and k not in ("llm_base_url", "llm_model")})


def run_eval(*, base: Settings, n_cases: int, seed: int, out_root: Path, stage: Stage, home: Path | None = None,
             spec_path: Path = SPEC_PATH, edge_path: Path = EDGE_PATH) -> dict[str, Any]:
    """Run every evaluator over the cases; returns the report (also written under ``out_root``)."""
    t0 = time.perf_counter()
    spec, edges = load_spec(spec_path), load_edge_cases(edge_path)
    home = home or base.home / "eval-world"
    prepare_home(home)
    rt = Runtime(eval_settings(base, home, spec.world.now, llm=False))
    narrators = {"offline": rt}
    if base.uses_llm:
        narrators[f"llm:{base.llm_model}"] = Runtime(eval_settings(base, home, spec.world.now, llm=True))

    adv = stage("generating the eval world", 1)
    world = build_world(spec, seed=seed)
    adv(1)
    trees = stage("training the eval model", 100)
    shown = [0]

    def on_train(step: str, frac: float) -> None:
        if step == "trees" and int(frac * 100) > shown[0]:
            trees(int(frac * 100) - shown[0])
            shown[0] = int(frac * 100)

    model, X, split = train_on_world(world, rt.policy, test_days=spec.world.test_days, progress=on_train,
                                     params={"max_iter": spec.world.max_iter})
    trees(100 - shown[0])
    rt.save_model(model)
    stress = run_stress(model, rt.policy)  # the model alone against the hand-written stress cases
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-missing columns: their median is NaN, masked to 0
        baseline = np.nan_to_num(np.nanmedian(X[split.train], axis=0), nan=0.0)

    events = world.events
    later = events[split.test]
    cases, short = sample_cases(later, n_cases=n_cases, spec=spec, seed=seed)
    n_world = len(cases)
    case_users = {c.user for c in cases}
    pool = later[(later["scenario"] == "benign") & ~later["user"].isin(case_users)]
    edge_users = list(dict.fromkeys(pool.sort_values("ts", kind="stable")["user"]))[: len(edges)]
    if len(edge_users) < len(edges):
        raise DatasetError(f"the eval world has too few users without cases for {len(edges)} edge cases; "
                         "lower --cases or raise world.users in the spec")
    _warm(rt, events[events["ts"] < split.split_ts], spec.world.now)
    todo = later[later["user"].isin(case_users | set(edge_users))]
    adv = stage("deciding the cases' users online", len(todo))
    list(rt.engine.score_many((row_to_event(r) for r in todo.to_dict("records")), chunk=400, progress=adv))
    adv = stage("edge cases (exception and revocation via approved proposals)", len(edges))
    for i, (edge, user) in enumerate(zip(edges, edge_users, strict=True)):
        base_row = pool[pool["user"] == user].iloc[-1].to_dict()
        cases.append(_edge_case(rt, edge, base_row, at=later_minute(spec.world.now, 1 + 20 * i)))
        adv(1)

    twins = _twins(world, X, cases, spec.stability.cases)
    shap, ctx = TreeShap(model), rt.tool_context(with_index=False)
    rng = np.random.default_rng(seed + 7)
    records = []
    adv = stage(f"evaluating {len(cases)} cases x {len(narrators)} narrator(s)", len(cases))
    for case in cases:
        records.append(_evaluate(case, ctx=ctx, narrators=narrators, shap=shap, baseline=baseline, spec=spec,
                                 rng=rng, twin=twins.get(case.event_id)))
        adv(1)
    meta = {"seed": seed, "cases": len(cases), "world_cases": {"requested": n_cases, "sampled": n_world, "short": short},
            "edge_cases": len(cases) - n_world, "spec": spec.model_dump(mode="json"),
            "model_version": model.version, "model_card": model.card["test_metrics"], "narrators": list(narrators),
            "home": str(home), "runtime_s": round(time.perf_counter() - t0, 1)}
    report = write_report(records=records, meta=meta, out_root=out_root, stress=stress)
    report["meta"]["runtime_s"] = round(time.perf_counter() - t0, 1)
    return report


def _warm(rt: Runtime, history: Any, now: Any) -> None:
    """Per-user baselines from the earlier days (as the demo does), stored for the online path."""
    profiles, sessions = warm_profiles(history.reset_index(drop=True))
    first = history.groupby("session")["ts"].min().to_dict()
    last = history.groupby("session")["ts"].max().to_dict()
    now_ms = int(now.timestamp() * 1000)
    with rt.sessions.begin() as s:
        s.add_all([ProfileRow(user_id=u, state=p.to_json(), updated_ms=now_ms) for u, p in profiles.items()])
        s.add_all([SessionRow(session_id=k, user_id=v.user_id, state=v.to_json(), first_ms=int(first[k] * 1000),
                              last_ms=int(last[k] * 1000)) for k, v in sessions.items()])


# ----------------------------------------------------------------------------- edge cases


def _approve(rt: Runtime, kind: Kind, payload: dict[str, Any]) -> None:
    with rt.sessions.begin() as s:
        p = create(s, kind=kind, payload=payload, evidence={}, requested_by=REQUESTER, rules=rt.approval_rules,
                   ledger=rt.ledger, clock=rt.clock)
    with rt.sessions.begin() as s:
        done = decide(s, proposal_id=p.proposal_id, principal=rt.principals[APPROVER], approve=True, channel=Channel.CLI,
                      rules=rt.approval_rules, ledger=rt.ledger, clock=rt.clock, iam=rt.agent_deps.iam)
    if done.status.value != "applied":
        raise RuntimeError(f"edge case control {kind.value} was not applied: {done.status.value} {done.result}")


def _edge_case(rt: Runtime, edge: EdgeCase, base_row: dict[str, Any], *, at: Any) -> Case:
    step = [0]

    def ev(suffix: str, **kw: Any) -> dict[str, Any]:
        step[0] += 1
        e = edge_event(base_row, edge, at=later_minute(at, step[0]), suffix=suffix,
                       user_id=edge.new_user.id if edge.new_user else None)
        if not edge.new_user:
            e["session_id"] = f"s-{edge.id}"
        for path, value in kw.get("override", {}).items():
            set_path(e, path, value)
        return e

    note = edge.description
    if edge.new_user:
        for k in range(edge.new_user.warmup):
            rt.engine.score(ev(f"warm{k}", override={"auth.failed_attempts_1h": 0}))
    if edge.control and "revoke_session" in edge.control:
        rt.engine.score(ev("before"))
        _approve(rt, Kind.REVOKE_SESSION, {"session_id": f"s-{edge.id}", **edge.control["revoke_session"]})
    if edge.control and "grant_exception" in edge.control:
        _approve(rt, Kind.GRANT_EXCEPTION, {"user_id": base_row["user"], "resource_id": (edge.resource or {}).get(
            "id", base_row["resource"]), **edge.control["grant_exception"]})
    if edge.tune:
        final = _tuned(rt, edge, ev)
        note += (f" (value {final['value']:g}: risk {final['risk']:.3f} against the threshold {final['threshold']:.2f}"
                 f"{final['next']})")
        event_id = final["event_id"]
    else:
        event_id = rt.engine.score(ev("case")).decision["event_id"]
    return Case(case_id=edge.id, group="edge", scenario=edge.type, causes=[c.value for c in edge.causes],
                event_id=event_id, user=edge.new_user.id if edge.new_user else base_row["user"], expect=edge.expect,
                description=note)


def _tuned(rt: Runtime, edge: EdgeCase, ev: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The largest value of the tuned field that keeps the outcome below ``below`` (found with what_if on a
    probe decision, then decided for real; one value lower if the real event crosses after all)."""
    assert edge.tune is not None
    t = edge.tune
    limit = OUTCOME_RANK[Outcome(t.below)]
    probe = rt.engine.score(ev("probe", override={t.field: 0})).decision
    ctx = rt.tool_context(with_index=False)
    rescored = {v: call_tool(ctx, "what_if", {"decision_id": probe["decision_id"], "changes": {t.feature: v}}).after
                for v in sorted(t.values)}
    under = [v for v, r in rescored.items() if OUTCOME_RANK[r.outcome] < limit]
    for tries, v in enumerate(reversed(under)):
        got = rt.engine.score(ev(f"case{tries}", override={t.field: int(v) if float(v).is_integer() else v})).decision
        if OUTCOME_RANK[Outcome(got["outcome"])] < limit or tries >= 2:
            thr = got["step_up_at"] if t.below == "step_up" else got["deny_at"]
            above = next((r for w, r in rescored.items() if w > v), None)
            return {"event_id": got["event_id"], "value": v, "risk": got["risk"], "threshold": thr,
                    "next": f"; the next value re-scores to risk {above.risk:.3f} ({above.outcome.value})" if above else ""}
    raise RuntimeError(f"{edge.id}: no value of {t.field} in {t.values} keeps the outcome below {t.below}")


# ----------------------------------------------------------------------------- stability twins


def _twins(world: Any, X: np.ndarray, cases: list[Case], n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(x, x_twin) for up to ``n`` world cases, one per user: the twin has bytes_out + 1 and another user
    agent, featurized by the batch path over the whole world (the online path is held bit-identical to it)."""
    picked: list[Case] = []
    users: set[str] = set()
    for c in cases:
        if c.group != "edge" and c.user not in users and len(picked) < n:
            picked.append(c)
            users.add(c.user)
    if not picked:
        return {}
    frame = world.events.copy()
    rows = frame.index[frame["event_id"].isin([c.event_id for c in picked])]
    frame.loc[rows, "bytes_out"] += 1
    frame.loc[rows, "user_agent"] = TWIN_UA
    X_twin = batch_features(frame)
    pos = dict(zip(frame.loc[rows, "event_id"], rows, strict=True))
    return {eid: (X[i], X_twin[i]) for eid, i in pos.items()}


# ----------------------------------------------------------------------------- one case


def _evaluate(case: Case, *, ctx: Any, narrators: dict[str, Runtime], shap: TreeShap, baseline: np.ndarray, spec: Any,
              rng: np.random.Generator, twin: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Any]:
    got = call_tool(ctx, "get_decision", {"event_id": case.event_id})
    d, e = got.decision.model_dump(mode="json"), got.explanation.model_dump(mode="json")
    timeline = call_tool(ctx, "session_timeline", {"session_id": d["session_id"]}).model_dump(mode="json")
    x = E.explanation_vector(e)
    model = shap.model
    scores = [*E.cause_recall(causes=case.causes, explanation=e),
              E.additivity(explanation=e, model_margin=float(model.margin(x[None, :])[0]))]
    if e["risk"] - e["base_risk"] >= 0.05:
        phi = np.array([f["contribution"] for f in sorted(e["factors"], key=lambda f: FEATURE_INDEX[f["feature"]])])
        scores.append(E.deletion(x=x, phi=phi, risk_fn=model.risk, baseline=baseline, max_k=spec.fidelity.max_k,
                                 draws=spec.fidelity.random_draws, rng=rng))
    else:
        scores.append(E.Score("deletion_beats_random", None, detail="risk within 0.05 of the base risk"))
    scores += E.counterfactual_validity(ctx=ctx, decision=d, explanation=e)
    if twin is not None:
        xs = np.array(twin)
        same = bool(np.array_equal(xs[0], x, equal_nan=True))
        phis, _ = shap.contributions(xs)
        s = E.stable_drivers(phi=phis[0], phi_twin=phis[1], x=xs[0], x_twin=xs[1])
        scores.append(E.Score(s.name, s.passed, detail=s.detail + ("" if same else "; batch and online vectors differ")))
    if case.group == "edge":
        scores.append(E.expectations(expect=case.expect.model_dump(), decision=d, explanation=e))
    per_narrator = {}
    for name, nrt in narrators.items():
        (first, d1), (second, d2) = (_explain(nrt, d["decision_id"]) for _ in range(2))
        ns = [*E.faithfulness(narrative=first), E.citation_accuracy(narrative=first, decision=d),
              *E.completeness(narrative=first, decision=d, explanation=e, timeline=timeline),
              E.same_narrative(first=first, second=second)]
        if name != "offline":  # the model's own work, before verification: what it wrote, not what was shown
            ns += E.draft_scores(drafts=(d1, d2), shown=first, decision=d, explanation=e, timeline=timeline)
        per_narrator[name] = {"scores": [asdict(s) for s in ns], "text": first["text"],
                              "fallback_from": first.get("fallback_from"), "calls": [
                                  {**(x.get("narration") or {}), "fallback": (x.get("fallback_from") or {}).get("reason")}
                                  for x in (first, second)]}
    return {"case": case.model_dump(mode="json"),
            "decision": {k: d[k] for k in ("decision_id", "outcome", "risk", "threshold_outcome", "step_up_at",
                                           "deny_at", "policy_id", "threshold_section")},
            "top_family": e["top_family"], "top_drivers": e["top_drivers"],
            "scores": [asdict(s) for s in scores], "narrators": per_narrator}


def _explain(rt: Runtime, decision_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(what was shown, as explain_decision returns it; the narrator's draft as a narrative dict, None if the
    model gave none that parsed)."""
    deps = rt.agent_deps
    ev = gather(deps.tools, Plan(intent=Intent.WHY_DECISION, decision_id=decision_id),
                f"Why was decision {decision_id} made?")
    shown, v, draft = deps.narrate_draft(ev, Audience.ANALYST)
    out = {"text": shown.text, "claims": [c.model_dump(mode="json") for c in shown.claims],
           "citations": [c.model_dump(mode="json") for c in shown.citations], "narrator": shown.narrator,
           "verified": v["verified"], "verification_failures": v.get("failures", []),
           "fallback_from": v.get("fallback_from"), "narration": v.get("narration")}
    n = draft.narrative
    return out, (None if n is None else {**n.model_dump(mode="json"), "verified": verify(n, ev).verified,
                                         "fallback_from": None, "verification_failures": [
                                             f.model_dump() for f in verify(n, ev).failures]})


# ----------------------------------------------------------------------------- command line


def rich_stage(console: Any) -> tuple[Any, Stage]:
    """A rich progress display on ``console`` (stderr) and a Stage factory over it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)

    def stage(desc: str, total: int) -> Callable[[int], None]:
        task = prog.add_task(desc, total=max(total, 1))
        return lambda n: prog.advance(task, n)

    return prog, stage


def run_and_print(*, base: Settings, n_cases: int, seed: int, out: Path | None, home: Path | None = None) -> int:
    """Run with progress on stderr, print the summary table on stdout; returns the exit code (1: gate failed)."""
    from rich.console import Console
    from threadpoolctl import threadpool_limits

    from evals.report import summary_markdown

    err = Console(stderr=True)
    prog, stage = rich_stage(err)
    with threadpool_limits(limits=1, user_api="openmp"), prog:
        report = run_eval(base=base, n_cases=n_cases, seed=seed, out_root=out or base.home / "reports", stage=stage,
                          home=home)
    sys.stdout.write(summary_markdown(report) + "\n")
    failed = [g for g in report["gate"] if not g["passed"]]
    err.print(f"report: {report['paths']['dir']} (also {report['paths']['latest']}); "
              f"{report['meta']['runtime_s']} s; gate {'FAILED: ' + ', '.join(g['name'] for g in failed) if failed else 'passed'}",
              highlight=False)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evals.run_eval", description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=DEFAULT_CASES, help="world cases to sample (edge cases come on top)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None, help="report root (default GLASSGATE_HOME/reports)")
    args = ap.parse_args(argv)
    from integrations.settings import load_settings

    try:
        return run_and_print(base=load_settings(), n_cases=args.cases, seed=args.seed, out=args.out)
    except (DatasetError, EvalHomeRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


__all__ = ["main", "run_and_print", "run_eval"]

if __name__ == "__main__":
    raise SystemExit(main())
