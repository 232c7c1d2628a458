"""Dashboard page timings over a large store: ``python -m evals.bench_ui [--rows 1000000] [--repeat 5]``.

Trains a small model and decides a few hundred real events (their decisions and explanations are the
templates), then bulk-inserts ``--rows`` decision rows copied from them with fresh ids, users, sessions,
times and arrival numbers straight into SQLite (not through the model: the point is the store's size).
Explanation bodies are lean (the top five factors; the feed reads only the top drivers) except on the
rows whose decision page is timed, which carry their template's full explanation.

Then signs in and times each page in-process (FastAPI's TestClient: no network), printing the median and
the worst of ``--repeat`` requests, and the SQLite query plans of the feed's queries. Nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from integrations.api import create_app
from integrations.principals import token_hash
from integrations.runtime import Runtime
from integrations.services import dashboard
from integrations.settings import Settings
from knowledge import POLICY_DIR
from risk.policy import load_policies
from risk.synth import generate_world, row_to_event
from risk.training import train_on_world

TOKEN = "bench-token-for-the-dashboard-0123456789"
FULL_EVERY = 100_000  # rows with a full explanation (their decision pages are timed)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _home(root: Path) -> Runtime:
    config = root / "principals.yaml"
    config.write_text(json.dumps({"principals": [{"id": "bench", "roles": ["policy_owner"],
                                                  "token_sha256": token_hash(TOKEN)}]}))
    rt = Runtime(Settings(home=root / "home", config=config, database_url=None))
    world = generate_world(users=40, days=6, seed=3)
    model, _, _ = train_on_world(world, load_policies(POLICY_DIR), test_days=2, params={"max_iter": 40})
    rt.save_model(model)
    events = [row_to_event(r) for r in world.events.to_dict("records")[-400:]]
    list(rt.engine.score_many(events))
    return rt


def _fill(db: Path, rows: int, *, now_ms: int, days: int = 30, seed: int = 11) -> dict[str, Any]:
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    dcols = [r[1] for r in con.execute("PRAGMA table_info(decisions)")]
    templates = [dict(zip(dcols, r, strict=True)) for r in con.execute("SELECT * FROM decisions")]
    bodies = {k: json.loads(v) for k, v in con.execute("SELECT decision_id, body FROM explanations")}
    fams = dict(con.execute("SELECT decision_id, top_family FROM explanations").fetchall())
    lean = {}
    for k, b in bodies.items():
        top = sorted(b["factors"], key=lambda f: -f["contribution"])[:5]
        lean[k] = json.dumps({**b, "factors": top, "counterfactuals": []})
    full = {k: json.dumps(b) for k, b in bodies.items()}
    contrib = dict(con.execute("SELECT decision_id, contributions FROM explanations").fetchall())
    start_seq = int(con.execute("SELECT coalesce(max(seq), 0) FROM decisions").fetchone()[0]) + 1
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(templates), rows)
    users = rng.integers(0, 2000, rows)
    ts = np.sort(now_ms - rng.integers(0, days * 86_400_000, rows))
    qmarks = ",".join("?" * len(dcols))
    every = min(FULL_EVERY, max(2, rows // 2))
    # indexes are built once after the fill (much faster than maintaining them row by row)
    ddl = [r[0] for r in con.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                                     "AND tbl_name IN ('decisions', 'explanations')")]
    for name, in con.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                             "AND tbl_name IN ('decisions', 'explanations')").fetchall():
        con.execute(f'DROP INDEX "{name}"')
    t0, chunk = time.perf_counter(), 20_000
    timed: list[str] = []
    for lo in range(0, rows, chunk):
        drows, erows = [], []
        for i in range(lo, min(rows, lo + chunk)):
            t = templates[pick[i]]
            did, user = f"dec-b{i:019x}", f"u{users[i]:04d}"
            d = {**t, "decision_id": did, "event_id": f"evt-b{i:012d}", "session_id": f"s-{user}-{i // 40:06d}",
                 "user_id": user, "ts_ms": int(ts[i]), "seq": start_seq + i,
                 "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts[i] / 1000)) + "Z"}
            drows.append(tuple(d[c] for c in dcols))
            is_full = i % every == every // 2
            if is_full:
                timed.append(did)
            erows.append((did, fams[t["decision_id"]], "ok", contrib[t["decision_id"]],
                          (full if is_full else lean)[t["decision_id"]]))
        con.executemany(f"INSERT INTO decisions ({','.join(dcols)}) VALUES ({qmarks})", drows)
        con.executemany("INSERT INTO explanations (decision_id, top_family, status, contributions, body) "
                        "VALUES (?,?,?,?,?)", erows)
        con.commit()
        if lo % 200_000 == 0:
            log(f"  {lo + len(drows):,} rows ({time.perf_counter() - t0:.0f} s)")
    t1 = time.perf_counter()
    for stmt in ddl:
        con.execute(stmt)
    log(f"  indexes rebuilt ({time.perf_counter() - t1:.0f} s)")
    con.execute("ANALYZE")
    con.commit()
    con.close()
    return {"rows": rows, "fill_seconds": round(time.perf_counter() - t0, 1), "timed_decisions": timed,
            "mid_seq": start_seq + rows // 2}


def _plans(db: Path, now_ms: int) -> dict[str, list[str]]:
    """SQLite's plan for the feed's queries (what the service sends, with typical filters)."""
    con = sqlite3.connect(db)
    base = ("SELECT d.decision_id FROM decisions d JOIN explanations e ON e.decision_id = d.decision_id "
            "WHERE {w} ORDER BY d.seq DESC LIMIT 51")
    queries = {
        "feed": base.format(w="1"), "feed outcome": base.format(w="d.outcome = 'deny'"),
        "feed tier": base.format(w="d.sensitivity = 'restricted'"), "feed family": base.format(w="EXISTS (SELECT 1 FROM explanations x WHERE x.decision_id = "
                                                          "d.decision_id AND x.top_family = 'network')"),
        "feed user": base.format(w="d.user_id = 'u0001'"), "feed resource": base.format(w="d.resource_id = 'wiki'"),
        "live poll": "SELECT d.decision_id FROM decisions d JOIN explanations e ON e.decision_id = d.decision_id "
                     "WHERE d.seq > 999000 ORDER BY d.seq LIMIT 100",
        "counts": f"SELECT CASE WHEN d.ts_ms >= {now_ms - 3_600_000} THEN 1 ELSE 0 END AS r, d.outcome, e.top_family, "
                  "count(*) FROM decisions d JOIN explanations e ON e.decision_id = d.decision_id "
                  f"WHERE d.ts_ms >= {now_ms - 86_400_000} GROUP BY r, d.outcome, e.top_family",
    }
    out = {k: [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + q)] for k, q in queries.items()}
    con.close()
    return out


def _time(c: TestClient, path: str, repeat: int) -> dict[str, Any]:
    c.get(path)  # warm: the first read of a page also warms SQLite's page cache
    took = []
    if path.endswith("/counts"):  # the charts reuse a reading for 10 s; time a fresh one each time
        c.app.state.ui_counts = None  # type: ignore[attr-defined]
    for _ in range(repeat):
        if path.endswith("/counts"):
            c.app.state.ui_counts = None  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        r = c.get(path)
        took.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")
    return {"median_ms": round(statistics.median(took), 1), "max_ms": round(max(took), 1)}


def bench_ui(rows: int = 1_000_000, repeat: int = 5, keep: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="glassgate-bench-ui-") as tmp:
        log("training a small model and deciding 400 template events")
        root = keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        rt = _home(root)
        now_ms = int(rt.clock().timestamp() * 1000)
        log(f"bulk-inserting {rows:,} decision rows")
        filled = _fill(rt.settings.home / "glassgate.db", rows, now_ms=now_ms)
        app = create_app(Runtime(rt.settings), start_worker=False)
        c = TestClient(app, follow_redirects=False)
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text).group(1)
        assert c.post("/ui/login", data={"token": TOKEN, "csrf": csrf}).status_code == 303
        did = filled["timed_decisions"][0]
        session = TestClient(app).get(f"/v1/decisions/{did}", headers={"Authorization": f"Bearer {TOKEN}"}) \
            .json()["decision"]["session_id"]
        pages = {"feed": "/ui", "feed's charts (counts, first reading)": "/ui/feed/counts", "feed, deny only": "/ui?outcome=deny", "feed, restricted tier": "/ui?tier=restricted",
                 "feed, network family": "/ui?family=network", "feed, one user": "/ui?user=u0001",
                 "feed, one resource": "/ui?resource=wiki", "feed, a page in the middle": f"/ui?before={filled['mid_seq']}",
                 "feed, last hour": "/ui?since=" + time.strftime("%Y-%m-%dT%H:%M", time.gmtime(now_ms / 1000 - 3600)),
                 "decision": f"/ui/decisions/{did}", "session": f"/ui/sessions/{session}",
                 "approvals": "/ui/approvals", "audit": "/ui/audit",
                 "what-if page": "/ui/whatif?target=POL-ACCESS-001%7Ctier%3Ainternal&deny_at=0.8",
                 "what-if replay of one scope": "/ui/whatif?target=POL-ACCESS-001%7Ctier%3Ainternal&deny_at=0.8&run=1"}
        timings = {}
        for name, path in pages.items():
            timings[name] = _time(c, path, repeat)
            log(f"  {name}: {timings[name]}")
        d = dashboard_deps(app)
        t0 = time.perf_counter()
        dashboard.feed_after(deps=d, filters=dashboard.FeedFilter(), after=filled["mid_seq"] + rows // 2 - 50)
        live_ms = round((time.perf_counter() - t0) * 1000, 1)
        return {"rows": rows, "fill_seconds": filled["fill_seconds"], "repeat": repeat, "pages": timings,
                "live_poll_ms": live_ms, "query_plans": _plans(rt.settings.home / "glassgate.db", now_ms)}


def dashboard_deps(app: Any) -> Any:
    from integrations.ui.views import deps

    return deps(type("Request", (), {"app": app})())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=Path, default=None, help="build the store here and keep it (default: a temporary one)")
    args = ap.parse_args(argv)
    print(json.dumps(bench_ui(args.rows, args.repeat, keep=args.keep), indent=2))


if __name__ == "__main__":
    main()
