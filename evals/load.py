"""A load run against the real service from a separate client process on loopback:
``python -m evals.load [--seconds 60] [--rate 50] [--ask-rate 1] [--webhook-rate 2] ...``.

`glassgate serve` runs as a child process over a freshly prepared home (``evals.bench_api``'s ``Service``
and ``prepare``); this process is the client. For ``--seconds`` it sends, on three independent open-loop
schedules (request *i* of a kind is sent at ``t0 + i / rate`` whether or not earlier ones have been
answered, so a slow server cannot slow the offered load down and hide its own latency):

- ``POST /v1/events`` at ``--rate``: fresh events, each once;
- ``POST /v1/ask`` at ``--ask-rate``: questions about decisions accepted earlier in the run;
- ``POST /v1/webhooks/tickets`` at ``--webhook-rate``: Standard Webhooks-signed tickets naming an accepted
  decision, or a user and a time.

Latency is measured from each request's *scheduled* send time to its answer (what a client on that
schedule would see), and separately from the moment it was actually sent (``service_ms``); the client's
own lateness against the schedule is reported too. After the last answer, the run waits (at most
``--drain-seconds``) for the enrichment jobs, then checks the database: stored decisions == accepted
events (201), and every accepted webhook ended in exactly one enrichment (its job done, one enrichment
row carrying its delivery id, one ``narrative`` audit entry for its ticket).

Everything is bounded: ``rate x seconds`` requests per kind, per-request timeouts, the drain timeout.
JSON on stdout, a markdown table and progress on stderr; nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from evals.bench_api import Service, load_events, pct, prepare, sign_standard_webhook, stored_decisions
from integrations.enrichment import KIND as ENRICH_KIND
from integrations.webhooks import SignatureScheme

_T0 = time.monotonic()


def log(*args: Any) -> None:
    print(f"[load {time.monotonic() - _T0:6.1f}s]", *args, file=sys.stderr, flush=True)


EXPECTED = {"events": 201, "ask": 200, "webhook": 202}
WARMUP_EVENTS = 30
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Sample:
    scheduled: float
    started: float
    ended: float
    status: str  # the HTTP status, or "exception:<name>" when no answer came


@dataclass
class Kind:
    """One request kind's schedule and what came back."""

    name: str
    rate: float
    count: int
    workers: int
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, s: Sample) -> None:
        with self.lock:
            self.samples.append(s)


class Accepted:
    """Decisions accepted so far (from 201 answers), for questions and tickets to refer to."""

    def __init__(self, seed: list[dict[str, Any]]):
        self._lock = threading.Lock()
        self._items = list(seed)

    def add(self, decision: dict[str, Any]) -> None:
        with self._lock:
            self._items.append(decision)

    def pick(self, i: int) -> dict[str, Any]:
        with self._lock:
            return self._items[-1 - (i * 7919) % min(len(self._items), 200)]  # spread over the recent ones


def open_loop(kind: Kind, t0: float, send: Callable[[int], int | str]) -> threading.Thread:
    """Send request ``i`` at ``t0 + i / rate`` from a pool of ``workers`` threads, regardless of answers."""
    pool = ThreadPoolExecutor(max_workers=kind.workers, thread_name_prefix=f"load-{kind.name}")

    def one(i: int, scheduled: float) -> None:
        started = time.perf_counter()
        try:
            status: int | str = send(i)
        except httpx.HTTPError as exc:
            status = f"exception:{type(exc).__name__}"
        kind.record(Sample(scheduled, started, time.perf_counter(), str(status)))

    def schedule() -> None:
        for i in range(kind.count):
            at = t0 + i / kind.rate
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, i, at)
        pool.shutdown(wait=True)

    th = threading.Thread(target=schedule, name=f"schedule-{kind.name}", daemon=True)
    th.start()
    return th


def summarize(kind: Kind, t0: float) -> dict[str, Any]:
    s = kind.samples
    ok = [x for x in s if x.status == str(EXPECTED[kind.name])]
    # over the schedule's window, or until the last answer when that came later
    window = max(max((x.ended for x in s), default=t0) - t0, kind.count / kind.rate)
    return {"offered_rate_per_s": kind.rate, "scheduled": kind.count, "answered": len(s),
            "ok": len(ok), "throughput_ok_per_s": round(len(ok) / window, 2),
            "latency_ms": pct([x.ended - x.scheduled for x in s]),
            "service_ms": pct([x.ended - x.started for x in s]),
            "client_lag_ms": pct([x.started - x.scheduled for x in s]),
            "statuses": dict(sorted(Counter(x.status for x in s).items())),
            "errors": sum(1 for x in s if x.status != str(EXPECTED[kind.name]))}


def integrity(home: Path, *, stored_before: int, accepted: int, deliveries: dict[str, str]) -> dict[str, Any]:
    """What the database holds after the run, against what the client was told."""
    stored = stored_decisions(home) - stored_before
    eng = create_engine(f"sqlite:///{home / 'glassgate.db'}")
    try:
        with eng.connect() as c:
            keys = {f"{SignatureScheme.STANDARD.value}:{m}" for m in deliveries.values()}
            jobs = Counter(r[1] for r in c.execute(text("SELECT key, status FROM jobs WHERE kind = :k"),
                                                   {"k": ENRICH_KIND}) if r[0] in keys)
            rows = {r[0]: r[1] for r in c.execute(text("SELECT ticket_id, delivery_id FROM ticket_enrichments"))}
            audits = Counter(r[0] for r in c.execute(text(
                "SELECT subject_id FROM audit_log WHERE kind = 'narrative' AND subject_id LIKE 'ticket:%'")))
    finally:
        eng.dispose()
    not_once = [t for t, msg in deliveries.items() if rows.get(t) != msg or audits.get(f"ticket:{t}") != 1]
    return {"accepted_events": accepted, "stored_decisions": stored, "stored_equals_accepted": stored == accepted,
            "webhooks_accepted": len(deliveries), "webhook_jobs_by_status": dict(sorted(jobs.items())),
            "webhooks_enriched_exactly_once": len(deliveries) - len(not_once),
            "every_webhook_enriched_exactly_once": not not_once, "not_exactly_once": not_once[:20]}


def _wait_for_enrichments(base: str, token: str, tickets: list[str], deadline_s: float) -> int:
    """Poll until every ticket's enrichment is readable or the deadline passes; how many are."""
    pending, end = set(tickets), time.monotonic() + deadline_s
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as c:
        while pending and time.monotonic() < end:
            pending = {t for t in pending if c.get(f"/v1/tickets/{t}/enrichment").status_code != 200}
            if pending:
                time.sleep(0.2)
    return len(tickets) - len(pending)


def run(*, seconds: float, rate: float, ask_rate: float, webhook_rate: float, users: int, days: int,
        drain_seconds: float = 60.0) -> dict[str, Any]:
    kinds = {k.name: k for k in (Kind("events", rate, int(rate * seconds), workers=64),
                                 Kind("ask", ask_rate, int(ask_rate * seconds), workers=8),
                                 Kind("webhook", webhook_rate, int(webhook_rate * seconds), workers=8))}
    with tempfile.TemporaryDirectory(prefix="glassgate-load-") as d:
        log(f"preparing a home: {users} users x {days} days, training the model")
        home, config, tokens, secret, events = prepare(Path(d), {"users": users, "days": days})
        need = WARMUP_EVENTS + kinds["events"].count
        if len(events) < need:
            raise SystemExit(f"the world has {len(events)} events, the run needs {need}: raise --users or --days")
        events = events[-need:]
        svc = Service(home, config, {"GLASSGATE_WEBHOOK_SECRETS": secret})
        try:
            return _drive(svc, home, tokens, secret, events, kinds, seconds=seconds, drain_seconds=drain_seconds)
        finally:
            svc.stop()


def _drive(svc: Service, home: Path, tokens: dict[str, str], secret: str, events: list[dict[str, Any]],
           kinds: dict[str, Kind], *, seconds: float, drain_seconds: float) -> dict[str, Any]:
    log(f"warm-up: {WARMUP_EVENTS} events, one question, one webhook (the first requests load lazily)")
    warm = load_events(svc.base, tokens["ingest"], events[:WARMUP_EVENTS], 1)
    if warm["errors"]:
        raise RuntimeError(f"warm-up failed: {warm['statuses']}")
    reader = httpx.Client(base_url=svc.base, headers={"Authorization": f"Bearer {tokens['analyst']}"},
                          timeout=REQUEST_TIMEOUT_S, limits=httpx.Limits(max_connections=32))
    ingest = httpx.Client(base_url=svc.base, headers={"Authorization": f"Bearer {tokens['ingest']}"},
                          timeout=REQUEST_TIMEOUT_S, limits=httpx.Limits(max_connections=64))
    hooks = httpx.Client(base_url=svc.base, timeout=REQUEST_TIMEOUT_S, limits=httpx.Limits(max_connections=16))
    accepted = Accepted([x for x in reader.get("/v1/decisions", params={"limit": 50}).json()["decisions"]])
    deliveries: dict[str, str] = {}  # ticket id -> webhook-id, for accepted deliveries
    deliveries_lock = threading.Lock()
    fresh = events[WARMUP_EVENTS:]

    def post_event(i: int) -> int:
        r = ingest.post("/v1/events", json=fresh[i])
        if r.status_code == 201:
            accepted.add(r.json()["decision"])
        return r.status_code

    def ask(i: int) -> int:
        d = accepted.pick(i)
        q = (f"Why was decision {d['decision_id']} made?" if i % 2 == 0 else
             f"why did {d['user_id']} get {d['outcome']} at {d['timestamp'][11:16]} on {d['timestamp'][:10]}?")
        return reader.post("/v1/ask", json={"question": q}).status_code

    def webhook(i: int) -> int:
        d, ticket = accepted.pick(i), f"LOAD-{uuid.uuid4().hex[:10]}"
        fields = ({"decision_id": d["decision_id"]} if i % 2 == 0 else
                  {"user_id": d["user_id"], "occurred_at": d["timestamp"]})
        body = json.dumps({"ticket": {"id": ticket, "title": "Access problem", "reporter": "load",
                                      "description": "User reports being blocked.", "fields": fields}}).encode()
        msg_id, ts = f"msg_{uuid.uuid4().hex}", int(time.time())
        r = hooks.post("/v1/webhooks/tickets", content=body, headers={
            "content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign_standard_webhook(secret, msg_id, ts, body)})
        if r.status_code == 202:
            with deliveries_lock:
                deliveries[ticket] = msg_id
        return r.status_code

    for warm_up in (lambda: ask(0), lambda: webhook(0)):
        if (status := warm_up()) >= 400:
            raise RuntimeError(f"warm-up request failed with {status}")
    warm_deliveries = dict(deliveries)
    stored_before = stored_decisions(home)

    log(" ".join(f"{k.name}: {k.count} at {k.rate}/s;" for k in kinds.values()) + f" for {seconds} s, open loop")
    t0 = time.perf_counter() + 0.2
    threads = [open_loop(kinds["events"], t0, post_event), open_loop(kinds["ask"], t0, ask),
               open_loop(kinds["webhook"], t0, webhook)]
    next_report = t0 + 5
    while any(t.is_alive() for t in threads):
        time.sleep(0.1)
        if time.perf_counter() >= next_report:
            next_report += 5
            log(f"t={time.perf_counter() - t0:5.1f}s answered {({k.name: len(k.samples) for k in kinds.values()})}")
    wall = time.perf_counter() - t0
    for c in (reader, ingest, hooks):
        c.close()

    log(f"draining: waiting up to {drain_seconds} s for {len(deliveries)} enrichments")
    t_drain = time.perf_counter()
    readable = _wait_for_enrichments(svc.base, tokens["analyst"], list(deliveries), drain_seconds)
    drain = time.perf_counter() - t_drain
    ev = kinds["events"].samples
    summaries = {name: summarize(k, t0) for name, k in kinds.items()}
    out: dict[str, Any] = {
           "wall_seconds": round(wall, 2), "drain_seconds": round(drain, 2), "enrichments_readable": readable,
           "kinds": summaries,
           "integrity": integrity(home, stored_before=stored_before, deliveries=deliveries,
                                  accepted=sum(1 for x in ev if x.status == "201")),
           "warm_up": {"events": warm["statuses"], "webhooks_accepted": len(warm_deliveries)}}
    out["errors"] = {"total": sum(k["errors"] for k in summaries.values()),
                     "by_kind_and_status": {f"{n} {s}": c for n, k in summaries.items()
                                            for s, c in k["statuses"].items() if s != str(EXPECTED[n])}}
    return out


def markdown(out: dict[str, Any]) -> str:
    rows = ["| kind | offered /s | ok / scheduled | ok /s | p50 ms | p95 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, k in out["kinds"].items():
        lat = k["latency_ms"]
        rows.append(f"| {name} | {k['offered_rate_per_s']} | {k['ok']} / {k['scheduled']} | "
                    f"{k['throughput_ok_per_s']} | {lat.get('p50', '-')} | {lat.get('p95', '-')} | "
                    f"{lat.get('p99', '-')} | {k['errors']} |")
    i = out["integrity"]
    rows.append("")
    rows.append(f"stored decisions {i['stored_decisions']} / accepted {i['accepted_events']} "
                f"(equal: {i['stored_equals_accepted']}); webhooks enriched exactly once "
                f"{i['webhooks_enriched_exactly_once']} / {i['webhooks_accepted']}; errors {out['errors']['total']}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the load window")
    ap.add_argument("--rate", type=float, default=50.0, help="events per second (open loop)")
    ap.add_argument("--ask-rate", type=float, default=1.0, help="questions per second (open loop)")
    ap.add_argument("--webhook-rate", type=float, default=2.0, help="signed ticket webhooks per second (open loop)")
    ap.add_argument("--users", type=int, default=60, help="synthetic world size: users")
    ap.add_argument("--days", type=int, default=10, help="synthetic world size: days")
    ap.add_argument("--drain-seconds", type=float, default=60.0, help="at most this long to wait for enrichments")
    a = ap.parse_args(argv)
    started, load0 = datetime.now().astimezone().isoformat(timespec="seconds"), os.getloadavg()
    out = run(seconds=a.seconds, rate=a.rate, ask_rate=a.ask_rate, webhook_rate=a.webhook_rate, users=a.users,
              days=a.days, drain_seconds=a.drain_seconds)
    out["config"] = vars(a) | {"started": started, "cpus": os.cpu_count()}
    out["loadavg_1m_start_end"] = [round(load0[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(out, indent=2))
    log("\n" + markdown(out))


if __name__ == "__main__":
    main()
