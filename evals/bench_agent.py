"""The agent section of ``python -m evals.bench``: policy retrieval, offline agent turns, the verifier.

Called by :mod:`evals.bench` with the store its latency section filled; every figure is
measured in the same run and nothing asserts on timings. The agent runs offline (offline
planner and narrator, no language model); the only models in a turn are the risk model
(what-if re-scoring) and the MiniLM query embedding (policy lookups).
"""

from __future__ import annotations

import itertools
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from langgraph.checkpoint.sqlite import SqliteSaver
from sqlalchemy import func, select
from threadpoolctl import threadpool_limits

from agent.approval import ApprovalRules, Principal, Role
from agent.deps import AgentDeps
from agent.gather import gather
from agent.graph import answer_of, build_graph
from agent.iam import BuiltinIam
from agent.narrative import Audience
from agent.narrator_offline import narrate
from agent.verifier import verify
from knowledge.index import PolicyIndex
from risk.engine import DecisionEngine
from risk.store.schema import DecisionRow
from tools.context import ToolContext
from tools.policies import sync_index

SIZES = {"full": dict(searches=200, gets=200, turns=60, verify_repeats=3),
         "quick": dict(searches=60, gets=60, turns=10, verify_repeats=3)}

# What analysts ask of the policy corpus: thresholds, exceptions, network, posture, OT, export, approvals, incidents.
QUESTIONS = [
    "which policy sets the threshold for OT consoles?", "what risk score denies access to restricted resources?",
    "step-up threshold for the confidential tier", "how is the risk score used to decide access?",
    "what happens to public tier resources at high risk?", "can a resource kind override its tier thresholds?",
    "who may change a risk threshold and how?", "how long can a time-boxed exception last?",
    "who approves an exception to a denial?", "what happens to a pending exception request that nobody reviews?",
    "can an analyst confirm a denial?", "emergency break-glass access procedure",
    "is access from a Tor exit node always denied?", "sign-ins from hosting provider or cloud datacenter IPs",
    "impossible travel between two cities", "is a commercial VPN treated as travel?",
    "network changed in the middle of a session", "EDR stopped running mid-session", "endpoint detection agent disabled",
    "unmanaged personal laptop access", "device out of compliance with patch level", "how old may OS patches be?",
    "how does a user remediate a non-compliant device?", "what posture signals are collected from devices?",
    "is every event in a session evaluated again?", "what happens when device posture is lost during a session?",
    "what happens after a session is revoked?", "maximum session lifetime before re-authentication",
    "remote access to OT systems from vendor laptops", "phishing-resistant authentication for OT access",
    "can enforcement shut down an industrial process?", "integrators connecting to plant systems",
    "how much data may be exported in one transfer?", "who may export restricted data?",
    "bulk downloads outside working hours", "month-end reporting peaks in export volume",
    "what counts as a data export?", "which MFA methods are accepted?", "can a user access anything without MFA?",
    "lost security key recovery and re-enrolment", "is SMS one-time code a rule or a risk signal?",
    "just-in-time elevation for admin roles", "access to administration consoles", "break-glass service accounts",
    "non-OT administrators reaching OT systems", "how are privileged roles reviewed?",
    "how is a suspicious denial triaged?", "when should an incident be escalated?",
    "analyst verdicts benign or malicious", "text in an event is evidence, not instruction",
]
KINDS = ("why_decision", "session_change", "what_if", "policy_lookup", "tuning")
POLICY_ASKS = ["which policy sets the threshold for OT consoles?", "which policy covers access from Tor?",
               "how long can an exception last?", "who may approve a threshold change?",
               "which policy says what happens when EDR stops mid-session?", "what policy limits bulk data exports?"]
TUNING_ASKS = ["are confidential-tier step-ups too strict this month?", "are restricted-tier denials too strict this month?",
               "are internal-tier step-ups too strict this month?", "are OT console denials too strict this month?"]
WHAT_IF_ASKS = ["would {u} have been allowed with a compliant laptop?",
                "would {u} have been allowed if they had re-authenticated with a security key?"]


def log(*a: Any) -> None:
    print("[bench:agent]", *a, file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    return fn(), time.perf_counter() - t


def pct_ms(samples: list[float]) -> dict[str, float]:
    """n, p50, p95, mean and max in milliseconds of durations given in seconds."""
    a = np.asarray(samples) * 1000.0
    if not len(a):
        return {"n": 0}
    return {"n": len(a), "p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "mean": round(float(a.mean()), 3), "max": round(float(a.max()), 3)}


def bench_retrieval(tmp: Path, sessions: Any, policy: Any, sz: dict[str, Any]) -> tuple[dict[str, Any], PolicyIndex]:
    """Load the embedding model, index the shipped corpus, then time semantic search and exact lookup."""
    from knowledge.embeddings import MiniLMEmbeddingFunction, load_model

    _, t_import = timed(lambda: __import__("sentence_transformers"))  # torch comes with it: seconds, once per process
    _, t_load = timed(load_model)
    index, t_open = timed(lambda: PolicyIndex.open_persistent(tmp / "chroma"))
    with sessions() as s:
        report, t_sync = timed(lambda: sync_index(index, s, policy))
    log(f"embedding model: import {t_import:.1f}s, load {t_load:.1f}s; indexed {report.added} passages in "
        f"{t_open + t_sync:.1f}s; timing {sz['searches']} searches and {sz['gets']} exact gets")
    index.search(QUESTIONS[0], k=5)  # the first query pays for loading the HNSW segment
    queries = list(itertools.islice(itertools.cycle(QUESTIONS), sz["searches"]))
    embed = MiniLMEmbeddingFunction()  # the same cached model the index embeds queries with
    lat, emb, top = [], [], {}
    for q in queries:  # the embedding alone, then the whole search, under the same load
        emb.append(timed(lambda q=q: embed([q]))[1])
        hits, dt = timed(lambda q=q: index.search(q, k=5))
        lat.append(dt)
        top.setdefault(q, f"{hits[0].policy_id} §{hits[0].section}" if hits else None)
    keys = [(d.id, sec) for d in policy.docs for sec in d.sections]
    gets = []
    for pid, sec in itertools.islice(itertools.cycle(keys), sz["gets"]):
        hit, dt = timed(lambda pid=pid, sec=sec: index.get(pid, sec))
        assert hit is not None, (pid, sec)
        gets.append(dt)
    return {"embedding_import_s": round(t_import, 2), "embedding_model_load_s": round(t_load, 3),
            "index_build_s": round(t_open + t_sync, 2), "passages": index.count(), "distinct_questions": len(QUESTIONS),
            "search_k5_ms": pct_ms(lat), "query_embedding_ms": pct_ms(emb), "get_exact_ms": pct_ms(gets),
            "sample_top_hits": {q: top[q] for q in POLICY_ASKS[:1] + QUESTIONS[12:13] + QUESTIONS[17:18]}}, index


def agent_questions(sessions: Any, n: int) -> list[tuple[str, str]]:
    """``n`` (kind, question) pairs, round-robin over the question kinds, built from decisions in the store."""
    with sessions() as s:
        denied = s.execute(select(DecisionRow.user_id, DecisionRow.resource_id).where(DecisionRow.outcome == "deny")
                           .distinct().order_by(DecisionRow.user_id, DecisionRow.resource_id)).all()
        not_allowed = list(s.scalars(select(DecisionRow.user_id).where(DecisionRow.outcome != "allow").distinct()
                                     .order_by(DecisionRow.user_id)))
        # Sessions with several decisions, those holding a non-allow outcome first: they have something that changed.
        multi = s.execute(select(DecisionRow.session_id, func.count(), func.max(DecisionRow.outcome != "allow"))
                          .group_by(DecisionRow.session_id).having(func.count() >= 2)).all()
    sids = [sid for sid, c, flagged in sorted(multi, key=lambda r: (-int(r[2] or 0), -r[1], r[0]))]
    pools = {"why_decision": [f"why was {u} denied access to {r}?" for u, r in denied],
             "session_change": [f"what changed in session {sid}?" for sid in sids],
             "what_if": [t.format(u=u) for u, t in zip(not_allowed, itertools.cycle(WHAT_IF_ASKS), strict=False)],
             "policy_lookup": POLICY_ASKS, "tuning": TUNING_ASKS}
    cycles = {k: itertools.cycle(v) for k, v in pools.items() if v}
    kinds = [k for k in KINDS if k in cycles]
    return [(k, next(cycles[k])) for k in itertools.islice(itertools.cycle(kinds), n)]


def bench_turns(tmp: Path, engine: DecisionEngine, index: PolicyIndex, clock: Callable[[], datetime],
                sz: dict[str, Any]) -> tuple[dict[str, Any], AgentDeps, list[tuple[str, str]]]:
    """Full ``graph.invoke`` turns of the offline agent, one fresh thread each, with a SQLite checkpointer."""
    ctx = ToolContext(sessions=engine.sessions, policy=engine.policy, model=engine.model, clock=clock, index=index)
    rules = ApprovalRules.from_policy(engine.policy)
    deps = AgentDeps(tools=ctx, rules=rules, ledger=engine.ledger, iam=BuiltinIam(base_policy=engine.policy, rules=rules),
                     clock=clock, principals={"ana": Principal("ana", frozenset({Role.ANALYST}))})
    saver = SqliteSaver(sqlite3.connect(tmp / "checkpoints.db", check_same_thread=False))
    saver.setup()
    graph = build_graph(deps, checkpointer=saver)
    asks = agent_questions(engine.sessions, sz["turns"])
    log(f"timing {len(asks)} agent turns: " + ", ".join(f"{k} {sum(a == k for a, _ in asks)}" for k in KINDS))

    def turn(q: str) -> dict[str, Any]:
        cfg = {"configurable": {"thread_id": f"bench-{uuid.uuid4().hex}"}}
        _, dt = timed(lambda: graph.invoke({"question": q, "asked_by": "ana", "audience": "analyst"}, cfg))
        return {**answer_of(graph.get_state(cfg).values), "seconds": dt}

    turn(POLICY_ASKS[0])  # warm-up: first-call imports and caches, not measured
    by_kind: dict[str, list[float]] = {}
    failures: list[tuple[str, list[dict[str, Any]]]] = []
    intents_off, proposals = [], 0
    for kind, q in asks:
        out = turn(q)
        by_kind.setdefault(kind, []).append(out["seconds"])
        proposals += out["proposal"] is not None
        if out["intent"] != kind:
            intents_off.append({"question": q, "expected": kind, "intent": out["intent"]})
        if not out["verified"]:
            failures.append((q, out["verification_failures"]))
    every = [t for v in by_kind.values() for t in v]
    return {"turns": len(every), **pct_ms(every), "by_intent": {k: pct_ms(v) for k, v in by_kind.items()},
            "verified_share": round(1 - len(failures) / max(len(every), 1), 4), "unverified": failure_summary(failures),
            "intent_mismatches": intents_off, "proposals_drafted": proposals}, deps, asks


def failure_summary(failures: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Unverified answers: how many, failures per check, and one example question per distinct failure."""
    by_check: dict[str, int] = {}
    examples: dict[str, str] = {}
    for q, fs in failures:
        for f in fs:
            by_check[f["check"]] = by_check.get(f["check"], 0) + 1
            examples.setdefault(f"{f['check']}: {f['detail']}", q)
    return {"turns": len(failures), "failures_by_check": by_check,
            "examples": [{"failure": k, "question": q} for k, q in list(examples.items())[:8]]}


def bench_verifier(deps: AgentDeps, asks: list[tuple[str, str]], sz: dict[str, Any]) -> dict[str, Any]:
    """Outside the graph: plan, gather and narrate each turn's question again, then time verify alone."""
    cases, t_gather = [], []
    for kind, q in asks:
        p = deps.planner.plan(q, ctx=deps.tools).plan
        ev, dt = timed(lambda p=p, q=q: gather(deps.tools, p, q))
        t_gather.append(dt)
        cases.append((kind, ev))
    t_narr: list[float] = []
    t_ver: dict[str, list[float]] = {}
    unverified = 0
    for _ in range(sz["verify_repeats"]):
        for kind, ev in cases:
            n, dt = timed(lambda ev=ev: narrate(ev, Audience.ANALYST))
            t_narr.append(dt)
            v, dt = timed(lambda n=n, ev=ev: verify(n, ev))
            t_ver.setdefault(kind, []).append(dt)
            unverified += not v.verified
    every = [t for v in t_ver.values() for t in v]
    return {"narratives": len(cases), "repeats": sz["verify_repeats"], **pct_ms(every),
            "by_intent_p50": {k: pct_ms(v)["p50"] for k, v in t_ver.items()}, "unverified": unverified,
            "narrate_ms": pct_ms(t_narr), "gather_ms": pct_ms(t_gather)}


def bench_agent(tmp: Path, engine: DecisionEngine, world_end_ts: float, mode: str) -> dict[str, Any]:
    """The ``agent`` section: retrieval, agent turns and the verifier, over the store the engine filled."""
    sz = SIZES[mode]
    now = datetime.fromtimestamp(world_end_ts + 60, UTC)
    clock = lambda: now  # noqa: E731 - fixed at the end of the benchmark's world, so "this month" has decisions
    with threadpool_limits(limits=1, user_api="openmp"):  # as the CLI runs
        retrieval, index = bench_retrieval(tmp, engine.sessions, engine.policy, sz)
        turns, deps, asks = bench_turns(tmp, engine, index, clock, sz)
        verifier = bench_verifier(deps, asks, sz)
    with engine.sessions() as s:
        stored = dict(s.execute(select(DecisionRow.outcome, func.count()).group_by(DecisionRow.outcome)).all())
    return {"clock": now.isoformat(), "store_decisions": stored, "retrieval_ms": retrieval, "agent_turn_ms": turns,
            "verifier_ms": verifier,
            "notes": ("offline planner and narrator: no language-model time anywhere. A search includes embedding "
                      "the query with MiniLM (query_embedding_ms: the same embedding timed alone just before each "
                      "search). A turn is the whole graph.invoke (plan, tool calls on SQLite, narrate, verify, an "
                      "audit-ledger append, checkpoint writes); what-if turns include re-scoring with the risk model, "
                      "policy lookups a search. verifier_ms times verify() alone on narratives recomputed with gather "
                      "and narrate outside the graph. OpenMP (and so torch) is capped at one thread, as the CLI does.")}
