"""``glassgate reexplain``'s throughput: ``python -m evals.bench_reexplain [--quick]`` (a section of ``make bench``).

Scores a few hundred events through the real engine into a fresh SQLite home, copies those decisions
(with new ids) up to the measured size, then re-explains all of them under a second model through the
service the CLI calls, and reads back the stored rows. Prints JSON; nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from integrations.runtime import Runtime
from integrations.services.deps import ServiceDeps
from integrations.services.reexplain import reexplain_decisions
from knowledge import POLICY_DIR
from risk.policy import load_policies
from risk.store.reexplain import ReexplanationRow
from risk.store.schema import DecisionRow, ExplanationRow
from risk.synth import generate_world, row_to_event
from risk.training import train_on_world

SIZES = {"full": dict(rows=30_000, seed_events=300), "quick": dict(rows=5_000, seed_events=100)}


def _copy_decisions(rt: Runtime, n: int) -> int:
    """Copy the stored decisions (and their explanations) with fresh ids until the store holds ``n``."""
    with rt.sessions() as s:
        pairs = s.execute(select(DecisionRow.__table__, ExplanationRow.__table__.c.top_family,
                                 ExplanationRow.__table__.c.status, ExplanationRow.__table__.c.contributions,
                                 ExplanationRow.__table__.c.body).join(
            ExplanationRow.__table__, ExplanationRow.decision_id == DecisionRow.decision_id)).mappings().all()
    have, seq = len(pairs), max(p["seq"] for p in pairs)
    dcols = [c.name for c in DecisionRow.__table__.columns]
    with rt.sessions.begin() as s:
        for start in range(have, n, 10_000):
            ds, es = [], []
            for i in range(start, min(n, start + 10_000)):
                p, seq = pairs[i % have], seq + 1
                did = f"dec-copy-{i}"
                ds.append({**{c: p[c] for c in dcols}, "decision_id": did, "event_id": f"evt-copy-{i}", "seq": seq})
                es.append({"decision_id": did, "top_family": p["top_family"], "status": p["status"],
                           "contributions": p["contributions"], "body": p["body"]})
            s.execute(insert(DecisionRow.__table__), ds)
            s.execute(insert(ExplanationRow.__table__), es)
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(DecisionRow)) or 0)


def bench_reexplain(mode: str = "full") -> dict[str, Any]:
    """Re-explain ``SIZES[mode]['rows']`` stored decisions under a second model; rows/s end to end."""
    from integrations.settings import Settings

    sz = SIZES[mode]
    world = generate_world(users=80, days=10, seed=4)
    policy = load_policies(POLICY_DIR)
    served, _, _ = train_on_world(world, policy, test_days=3, params={"max_iter": 200})
    newer, _, _ = train_on_world(world, policy, test_days=3, params={"max_iter": 200, "learning_rate": 0.05})
    with tempfile.TemporaryDirectory(prefix="glassgate-bench-reexplain-") as d:
        rt = Runtime(Settings(home=Path(d), database_url=None))
        rt.save_model(served)
        events = [row_to_event(r) for r in world.events.to_dict("records")[-sz["seed_events"]:]]
        list(rt.engine.score_many(events))
        stored = _copy_decisions(rt, sz["rows"])
        t = time.perf_counter()
        res = reexplain_decisions(deps=ServiceDeps.from_runtime(rt), model=newer)
        secs = time.perf_counter() - t
        with rt.sessions() as s:
            kept = int(s.scalar(select(func.count()).select_from(ReexplanationRow)) or 0)
        rt.db.dispose()
    return {"decisions_stored": stored, "reexplained": res.reexplained, "rows_stored": kept,
            "unexplainable": res.unexplainable, "engine": res.engine, "seconds": round(secs, 2),
            "rows_per_s": round(res.reexplained / secs, 1), "store": "sqlite",
            "model_trees": len(newer.clf._predictors), "loadavg_1m": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> None:
    """Print the re-explanation figures as JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    print(json.dumps(bench_reexplain("quick" if ap.parse_args(argv).quick else "full"), indent=2))


if __name__ == "__main__":
    main()
