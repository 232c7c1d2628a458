"""HTTP ingest on PostgreSQL, one `glassgate serve` against two: ``python -m evals.bench_two [--quick] [--pg URL]``.

Each run gets a fresh PostgreSQL schema. One process: single posts at 1, 4 and 16 clients, and the batch
endpoint. Two processes on one schema: the same client count split over both. Every run reports
events/s, latency percentiles, statuses, and stored = accepted. Prints JSON; nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from evals.bench_api import Service, load_events, pct, prepare
from risk.store.db import make_engine

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SIZES = {"full": dict(users=150, days=10, events=400, batch=100, concurrency=(1, 4, 16)),
         "quick": dict(users=60, days=8, events=60, batch=30, concurrency=(1, 4))}


@contextmanager
def fresh_schema(pg: str) -> Iterator[str]:
    """A new schema on ``pg`` (dropped afterwards); yields a URL whose search_path is that schema."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(pg)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _stored(url: str) -> int:
    eng = make_engine(url)
    with eng.connect() as c:
        n = int(c.execute(text("SELECT count(*) FROM decisions")).scalar_one())
    eng.dispose()
    return n


def _batch(base: str, token: str, events: list[dict[str, Any]], size: int) -> dict[str, Any]:
    lat, created, errors = [], 0, 0
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
        t0 = time.perf_counter()
        for i in range(0, len(events), size):
            t = time.perf_counter()
            r = c.post("/v1/events:batch", json={"events": events[i: i + size]})
            lat.append(time.perf_counter() - t)
            if r.status_code != 200:
                errors += 1
                continue
            created += sum(1 for x in r.json()["results"] if x.get("created"))
        wall = time.perf_counter() - t0
    return {"events": len(events), "batch_size": size, "events_per_s": round(len(events) / wall, 1),
            "request_latency_ms": pct(lat), "created": created, "errors": errors}


def _split_load(services: list[Service], token: str, events: list[dict[str, Any]], conc: int) -> dict[str, Any]:
    """``conc`` clients per service, all at once, each service taking every other event."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(services)) as pool:
        runs = list(pool.map(lambda k: load_events(services[k].base, token, events[k::len(services)], conc),
                             range(len(services))))
    wall = time.perf_counter() - t0
    return {"processes": len(services), "clients_per_process": conc, "events": len(events),
            "events_per_s": round(len(events) / wall, 1), "errors": sum(r["errors"] for r in runs),
            "accepted": sum(r["statuses"].get("201", 0) for r in runs),
            "p99_ms": max(r["latency_ms"]["p99"] for r in runs)}


def bench_two(mode: str = "full", pg: str = PG) -> dict[str, Any]:
    """One process (1/4/16 clients and the batch endpoint) and two processes, each on a fresh schema."""
    sz = SIZES[mode]
    out: dict[str, Any] = {"store": "postgresql", "loadavg_1m_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="glassgate-bench-two-") as d:
        home, config, tokens, _, events = prepare(Path(d), {"users": sz["users"], "days": sz["days"]})
        n, conc_max = sz["events"], max(sz["concurrency"])
        pools = [events[-(i + 1) * n: len(events) - i * n] for i in range(len(sz["concurrency"]) + 3)]
        with fresh_schema(pg) as url:
            svc = Service(home, config, {"GLASSGATE_DATABASE_URL": url})
            try:
                load_events(svc.base, tokens["ingest"], pools[-1][:20], 1)  # warm up
                runs = [load_events(svc.base, tokens["ingest"], pools[i], c) for i, c in enumerate(sz["concurrency"])]
                batch = _batch(svc.base, tokens["ingest"], pools[len(runs)], sz["batch"])
                one = _split_load([svc], tokens["ingest"], pools[len(runs) + 1], conc_max)
            finally:
                svc.stop()
            accepted = sum(r["statuses"].get("201", 0) for r in runs) + batch["created"] + one["accepted"] + 20
            out["one_process"] = {"single_posts": runs, "batch_endpoint": batch, "stored": _stored(url),
                                  "accepted": accepted}
        with fresh_schema(pg) as url:
            svcs = [Service(home, config, {"GLASSGATE_DATABASE_URL": url})]
            svcs.append(Service(home, config, {"GLASSGATE_DATABASE_URL": url}))  # after the first migrated
            try:
                for k, s in enumerate(svcs):  # warm up each: its engine and kernel load on first use
                    load_events(s.base, tokens["ingest"], pools[-1][20 + 10 * k: 30 + 10 * k], 1)
                two = _split_load(svcs, tokens["ingest"], pools[len(runs) + 1], conc_max // 2 or 1)
            finally:
                for s in svcs:
                    s.stop()
            two["stored"] = _stored(url) - 20
        out["two_processes"] = two
        out["same_load_one_process"] = one
        out["throughput_two_over_one"] = round(two["events_per_s"] / one["events_per_s"], 2)
    out["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the figures as JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pg", default=PG, help="PostgreSQL URL (a fresh schema is created per run)")
    a = ap.parse_args(argv)
    print(json.dumps(bench_two("quick" if a.quick else "full", a.pg), indent=2))


if __name__ == "__main__":
    main()
