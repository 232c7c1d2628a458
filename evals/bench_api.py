"""Benchmarks of the service over loopback: ``python -m evals.bench_api [--quick]`` (also part of
``make bench``).

The service runs as its own process (`glassgate serve`, the same command users run); this process is the
client. Figures:

- ``POST /v1/events``: throughput and p50/p95/p99 latency at several client concurrencies, errors, and
  whether the count of stored decisions equals the count accepted; the baseline is the same engine scoring
  the same kind of events in this process, one at a time (no HTTP, no JSON), measured in the same run.
- webhook to enrichment: from a signed ticket webhook's POST to its enrichment being readable at
  ``GET /v1/tickets/{id}/enrichment``, with the offline narrator.

Nothing asserts on timings; figures are printed as JSON on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from sqlalchemy import create_engine, text
from threadpoolctl import threadpool_limits

from integrations.principals import token_hash
from integrations.runtime import Runtime
from integrations.settings import Settings
from risk.synth import generate_world, row_to_event
from risk.training import train_on_world

SIZES = {"full": dict(users=200, days=14, baseline=300, events=1500, concurrency=(1, 4, 16), tickets=40),
         "quick": dict(users=60, days=10, baseline=50, events=150, concurrency=(1, 4), tickets=5)}
log = functools.partial(print, "[bench-api]", file=sys.stderr, flush=True)
GLASSGATE = str(Path(sys.executable).with_name("glassgate"))


def pct(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000.0
    if not len(a):
        return {"n": 0}
    return {"n": len(a), **{f"p{q}": round(float(np.percentile(a, q)), 2) for q in (50, 95, 99)},
            "mean": round(float(a.mean()), 2)}


def sign_standard_webhook(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """`glassgate serve` over a prepared home, as a child process."""

    def __init__(self, home: Path, config: Path, env: dict[str, str]):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full = {**{k: v for k, v in os.environ.items() if not k.startswith(("GLASSGATE_", "SLACK_"))},
                "GLASSGATE_HOME": str(home), "GLASSGATE_CONFIG": str(config), **env}
        self.proc = subprocess.Popen([GLASSGATE, "serve", "--port", str(self.port)], env=full,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"glassgate serve exited: {self.proc.communicate()[1]}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("glassgate serve did not become ready within 120 s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def prepare(root: Path, sz: dict[str, Any]) -> tuple[Path, Path, dict[str, str], str, list[dict[str, Any]]]:
    """A home with a trained model and principals; returns (home, config, tokens, webhook secret, events)."""
    from knowledge import POLICY_DIR
    from risk.policy import load_policies

    home, config = root / "home", root / "principals.yaml"
    home.mkdir()
    tokens = {"ingest": secrets.token_urlsafe(32), "analyst": secrets.token_urlsafe(32)}
    config.write_text(yaml.safe_dump({"principals": [
        {"id": "gw", "roles": ["ingest"], "token_sha256": token_hash(tokens["ingest"])},
        {"id": "ana", "roles": ["analyst"], "token_sha256": token_hash(tokens["analyst"])}]}))
    world = generate_world(users=sz["users"], days=sz["days"], seed=21)
    with threadpool_limits(limits=1, user_api="openmp"):
        model, _, _ = train_on_world(world, load_policies(POLICY_DIR), test_days=3)
    Runtime(Settings(home=home, config=config)).save_model(model)
    events = [row_to_event(r) for r in world.events.to_dict("records")]
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    return home, config, tokens, secret, events


def baseline_in_process(home: Path, config: Path, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The same engine, in this process, one event at a time: what HTTP adds is measured against this."""
    rt = Runtime(Settings(home=home, config=config))
    lat = []
    with threadpool_limits(limits=1, user_api="openmp"):
        for ev in events:
            t = time.perf_counter()
            rt.engine.score(ev)
            lat.append(time.perf_counter() - t)
    rt.db.dispose()
    return {"latency_ms": pct(lat), "events_per_s": round(len(lat) / sum(lat), 1)}


def load_events(base: str, token: str, events: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """POST each event once from ``concurrency`` client threads (keep-alive connections)."""
    lat: list[float] = []
    statuses: dict[int, int] = {}
    clients = [httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
               for _ in range(concurrency)]

    def post(i: int) -> tuple[int, float]:
        t = time.perf_counter()
        r = clients[i % concurrency].post("/v1/events", json=events[i])
        return r.status_code, time.perf_counter() - t
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for status, dt in pool.map(post, range(len(events))):
            statuses[status] = statuses.get(status, 0) + 1
            lat.append(dt)
    wall = time.perf_counter() - t0
    for c in clients:
        c.close()
    return {"concurrency": concurrency, "events": len(events), "events_per_s": round(len(events) / wall, 1),
            "latency_ms": pct(lat), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "errors": sum(v for k, v in statuses.items() if k >= 400)}


def webhook_to_enrichment(base: str, secret: str, token: str, decision_ids: list[str]) -> dict[str, Any]:
    """Post one signed generic ticket per decision, then time until its enrichment is readable."""
    times, failed = [], []
    with httpx.Client(base_url=base, timeout=60) as c:
        for did in decision_ids:
            ticket = f"TCK-{uuid.uuid4().hex[:8]}"
            body = json.dumps({"ticket": {"id": ticket, "title": "Access denied, please check",
                                          "description": f"User reports a block; decision {did}.",
                                          "reporter": "bench", "fields": {"decision_id": did}}}).encode()
            msg_id, ts = f"msg_{uuid.uuid4().hex}", int(time.time())
            headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "content-type": "application/json",
                       "webhook-signature": sign_standard_webhook(secret, msg_id, ts, body)}
            t = time.perf_counter()
            r = c.post("/v1/webhooks/tickets", content=body, headers=headers)
            if r.status_code != 202:
                failed.append(f"{r.status_code}: {r.text[:200]}")
                continue
            deadline = t + 60
            while time.perf_counter() < deadline:
                got = c.get(f"/v1/tickets/{ticket}/enrichment", headers={"Authorization": f"Bearer {token}"})
                if got.status_code == 200:
                    times.append(time.perf_counter() - t)
                    break
                time.sleep(0.005)
            else:
                failed.append(f"{ticket}: not enriched within 60 s")
    return {"tickets": len(decision_ids), "latency_ms": pct(times), "failed": failed}


def stored_decisions(home: Path) -> int:
    eng = create_engine(f"sqlite:///{home / 'glassgate.db'}")
    with eng.connect() as c:
        n = int(c.execute(text("SELECT count(*) FROM decisions")).scalar_one())
    eng.dispose()
    return n


def bench_api(mode: str) -> dict[str, Any]:
    sz = SIZES[mode]
    with tempfile.TemporaryDirectory(prefix="glassgate-bench-api-") as d:
        home, config, tokens, secret, events = prepare(Path(d), sz)
        log(f"baseline: {sz['baseline']} events scored in process")
        base_events, rest = events[-sz["baseline"]:], events[: -sz["baseline"]]
        baseline = baseline_in_process(home, config, base_events)
        svc = Service(home, config, {"GLASSGATE_WEBHOOK_SECRETS": secret})
        try:
            runs, start = [], len(rest) - sz["events"] * len(sz["concurrency"])
            assert start > 30, "the world is too small for the requested load"
            warm = load_events(svc.base, tokens["ingest"], rest[start - 30: start], 1)  # first requests load lazily
            accepted = warm["statuses"].get("201", 0)
            for i, conc in enumerate(sz["concurrency"]):
                chunk = rest[start + i * sz["events"]: start + (i + 1) * sz["events"]]
                log(f"POST /v1/events: {len(chunk)} events at concurrency {conc}")
                run = load_events(svc.base, tokens["ingest"], chunk, conc)
                accepted += run["statuses"].get("201", 0)
                runs.append(run)
            stored = stored_decisions(home) - len(base_events)
            with httpx.Client(base_url=svc.base, headers={"Authorization": f"Bearer {tokens['analyst']}"}) as c:
                page = c.get("/v1/decisions", params={"limit": sz["tickets"]}).json()
            dids = [x["decision_id"] for x in page["decisions"]]
            log(f"webhook to enrichment: {len(dids)} tickets")
            hook = webhook_to_enrichment(svc.base, secret, tokens["analyst"], dids)
        finally:
            svc.stop()
    best = max(runs, key=lambda r: r["events_per_s"])
    return {"events": runs, "accepted": accepted, "stored": stored, "stored_equals_accepted": stored == accepted,
            "baseline_in_process": baseline,
            "throughput_ratio_best_http_vs_in_process": round(best["events_per_s"] / baseline["events_per_s"], 2),
            "p50_ratio_http_c1_vs_in_process": round(runs[0]["latency_ms"]["p50"] / baseline["latency_ms"]["p50"], 2),
            "webhook_to_enrichment": hook}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    mode = "quick" if ap.parse_args(argv).quick else "full"
    t0, load0 = time.perf_counter(), os.getloadavg()
    out = bench_api(mode)
    out["loadavg_1m_start_end"] = [round(load0[0], 2), round(os.getloadavg()[0], 2)]
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({"mode": mode, "api": out}, indent=2))


if __name__ == "__main__":
    main()
