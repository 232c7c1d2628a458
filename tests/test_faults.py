"""Nothing lost under faults, against the real service process (`glassgate serve`):

- SIGKILL with proposals pending and enrichment jobs queued: after a restart every proposal is still pending
  with the same approvals, and every job finishes exactly once;
- SIGKILL between a committed approval and the IAM call (the ``after_approval_commit`` failpoint): the
  restarted service's sweep applies the action, exactly once;
- PostgreSQL (a private cluster started by the test) stopped for a while: requests get a 503 problem with
  Retry-After, not a 500 or a hang; the service recovers by itself and every event answered 201/200 before
  or after, or retried after a 503, is stored exactly once;
- the audit ledger tampered with in the database (modify, delete, reorder, truncate): both
  ``GET /v1/audit/verify`` and ``glassgate audit verify`` name the first bad entry.

The bounded variants run by default; the ``reliability`` ones (``make reliability``) run longer: the killed
worker's job taken over after its real 120 s lease, the kill on a two-approver change as well, a longer
outage under concurrent load.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import shutil
import signal
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from integrations.runtime import Runtime
from integrations.webhooks import sign_jira, sign_standard
from tests import privatepg
from tests.apiserver import PROBLEM, Home, make_home, wait_for
from tests.conftest import IN_CI
from tests.fake_jira import FakeJira
from tests.procserver import ServiceProcess, service
from tools.registry import call_tool

JIRA_EMAIL = "glassgate-bot@example.com"


# ----------------------------------------------------------------------------- shared set-up


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Home:
    """A home with a trained model and 120 decided events (each test serves a copy of it)."""
    h = make_home(tmp_path_factory.mktemp("faults"))
    rt = h.runtime()
    list(rt.engine.score_many(h.events(-180, -60)))
    rt.db.dispose()
    return h


@pytest.fixture
def home(seeded, tmp_path) -> Home:
    """A private copy of the seeded home (database, witness, model): a test may kill or tamper freely."""
    dst = tmp_path / "home"
    shutil.copytree(seeded.home, dst)
    shutil.copytree(seeded.settings().audit_dir, tmp_path / "home-audit")  # its signing key and sink, beside it
    return dataclasses.replace(seeded, home=dst)


def _whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sql(home: Home, query: str, **params: Any) -> list[tuple[Any, ...]]:
    eng = create_engine(f"sqlite:///{home.home / 'glassgate.db'}")
    try:
        with eng.connect() as c:
            return [tuple(r) for r in c.execute(text(query), params).all()]
    finally:
        eng.dispose()


def propose(home: Home, by: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Draft a proposal as ``by`` through the registry's propose_action tool (the agent's own path), in this
    process, into the database the service uses."""
    rt = Runtime(home.settings())
    try:
        ctx = dataclasses.replace(rt.tool_context(with_index=False, with_model=False), principal=by)
        out: dict[str, Any] = call_tool(ctx, "propose_action", {"kind": kind, "payload": payload}).proposal
        return out
    finally:
        rt.db.dispose()


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    p = r.json()
    assert p["status"] == status and p["detail"] and p["type"].startswith("urn:glassgate:problem:"), p
    return p


def _verify_ok(svc: ServiceProcess) -> dict[str, Any]:
    with svc.client("admin") as c:
        rep = c.get("/v1/audit/verify").json()
    assert rep["ok"] is True, rep
    return rep


# ----------------------------------------------------------------------------- 1. SIGKILL with work in flight


class SlowJira:
    """A Jira that accepts every connection and answers one byte of a header per second, for ever: an HTTP
    client with per-read timeouts waits on it indefinitely, so the worker's job in hand stays in hand."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._dribble, args=(conn,), daemon=True).start()

    def _dribble(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not self._stop.wait(1.0):
                    conn.sendall(b"a")
            except OSError:
                return  # the client went away (it was killed)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def _std_headers(secret: str, body: bytes) -> dict[str, str]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    ts = int(time.time())
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "content-type": "application/json",
            "webhook-signature": sign_standard(secret, msg_id=msg_id, timestamp=ts, body=body)}


def _generic(ticket_id: str, decision_id: str) -> bytes:
    return json.dumps({"ticket": {"id": ticket_id, "title": "Access denied", "description": "I could not get in.",
                                  "reporter": "ana@example.com", "fields": {"decision_id": decision_id}}}).encode()


def _jira(key: str) -> bytes:
    return json.dumps({
        "timestamp": time.time_ns() // 1_000_000, "webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": {"accountId": "557058:f58131cb", "displayName": "Ana"},
        "issue": {"id": "10042", "self": "https://example.atlassian.net/rest/api/3/issue/10042", "key": key,
                  "fields": {"summary": "Blocked from the payroll database", "description": "blocked this morning",
                             "reporter": {"accountId": "557058:f58131cb", "displayName": "Ana"},
                             "issuetype": {"name": "Access request"}, "project": {"key": key.split("-")[0]}}}}).encode()


def _proposal_view(p: dict[str, Any]) -> dict[str, Any]:
    return {k: p[k] for k in ("proposal_id", "kind", "status", "requested_by", "payload", "approvals", "expires_at",
                              "result")}


def _kill_with_work_in_flight(home: Home, tmp_path: Path, *, wait_lease: bool, deliveries: int) -> None:
    whsec, jira_secret, jira_token = _whsec(), secrets.token_urlsafe(24), secrets.token_urlsafe(16)
    slow = SlowJira()
    env = {"GLASSGATE_WEBHOOK_SECRETS": whsec, "GLASSGATE_JIRA_WEBHOOK_SECRET": jira_secret,
           "GLASSGATE_JIRA_URL": slow.url, "GLASSGATE_JIRA_EMAIL": JIRA_EMAIL, "GLASSGATE_JIRA_API_TOKEN": jira_token,
           "GLASSGATE_WORKER_POLL_SECONDS": "0.2"}
    decisions = [r[0] for r in sql(home, "SELECT decision_id FROM decisions ORDER BY seq DESC LIMIT :n", n=deliveries)]
    with service(home, tmp_path, **env) as svc, FakeJira(email=JIRA_EMAIL, token=jira_token) as jira:
        svc.start()
        # proposals: one half-approved two-approver change, two awaiting their only approval
        thr = propose(home, "ana", "change_threshold", {"policy_id": "POL-ACCESS-001", "scope": "tier:internal",
                                                        "step_up_at": 0.45, "deny_at": 0.8})
        exc = propose(home, "ana", "grant_exception", {"user_id": "frank", "resource_id": "crm",
                                                       "duration_hours": 4, "reason": "customer visit"})
        rev = propose(home, "bob", "revoke_session", {"session_id": "s-fault-1", "reason": "token theft suspected"})
        with svc.client("policy_owner") as c:
            r = c.post(f"/v1/proposals/{thr['proposal_id']}/approve", json={"reason": "replay looks right"})
            assert r.status_code == 200 and r.json()["status"] == "pending", r.text
            before = {p["proposal_id"]: _proposal_view(c.get(f"/v1/proposals/{p['proposal_id']}").json())
                      for p in (thr, exc, rev)}
        assert [a["principal"] for a in before[thr["proposal_id"]]["approvals"]] == ["bob"]

        # the worker takes a Jira delivery and hangs on Jira; the generic deliveries queue up behind it
        with svc.client() as c:
            body = _jira("SEC-77")
            r = c.post("/v1/webhooks/tickets", content=body,
                       headers={"X-Hub-Signature": sign_jira(jira_secret, body), "content-type": "application/json"})
            assert r.status_code == 202, r.text
            held = r.json()["job_id"]
            wait_for(lambda: slow.connections >= 1, what="the worker to call the (slow) Jira")
            jobs: dict[str, int] = {}
            for i, did in enumerate(decisions):
                body = _generic(f"INC-F{i}", did)
                headers = _std_headers(whsec, body)
                r = c.post("/v1/webhooks/tickets", content=body, headers=headers)
                assert r.status_code == 202, r.text
                jobs[f"INC-F{i}"] = r.json()["job_id"]
                if i == 0:  # the sender retries a delivery: the same job, nothing new
                    again = c.post("/v1/webhooks/tickets", content=body, headers=headers)
                    assert again.status_code == 202, again.text
                    assert (again.json()["job_id"], again.json()["duplicate"]) == (r.json()["job_id"], True)
        in_flight = dict(sql(home, "SELECT id, status FROM jobs"))
        assert in_flight[held] == "running" and {in_flight[j] for j in jobs.values()} == {"queued"}, in_flight
        dead_pid = svc.pid
        assert svc.kill() == -signal.SIGKILL

        # after the crash: the same rows, nothing half-written
        assert dict(sql(home, "SELECT id, status FROM jobs")) == in_flight
        started = svc.start(GLASSGATE_JIRA_URL=jira.url)
        t0 = time.monotonic()

        def all_done() -> bool:
            got = dict(sql(home, "SELECT id, status FROM jobs"))
            return all(got[j] == "done" for j in jobs.values())

        wait_for(all_done, timeout=60, what="every queued job to finish after the restart")
        drained = time.monotonic() - t0
        for ticket, job_id in jobs.items():
            assert sql(home, "SELECT status, attempts, locked_by FROM jobs WHERE id = :i", i=job_id) == [
                ("done", 1, None)], ticket
            assert sql(home, "SELECT count(*) FROM ticket_enrichments WHERE ticket_id = :t", t=ticket) == [(1,)]
            assert sql(home, "SELECT count(*) FROM audit_log WHERE subject_id = :s", s=f"ticket:{ticket}") == [(1,)]
        assert sql(home, "SELECT count(*) FROM jobs") == [(len(jobs) + 1,)]
        # the Jira delivery is recorded under two keys: its signed body's hash, and its issue and event time
        assert sql(home, "SELECT count(*) FROM inbound_deliveries") == [(len(jobs) + 2,)]

        # every proposal is still pending, with the same id and the same approvals; and can be decided
        with svc.client("policy_owner") as c:
            after = {pid: _proposal_view(c.get(f"/v1/proposals/{pid}").json()) for pid in before}
            assert after == before
            listed = {p["proposal_id"] for p in c.get("/v1/proposals", params={"status": "pending"}).json()["proposals"]}
            assert set(before) <= listed
            r = c.post(f"/v1/proposals/{exc['proposal_id']}/approve", json={"reason": "confirmed by phone"})
            assert r.status_code == 200 and r.json()["status"] == "applied", r.text
        with svc.client("admin") as c:
            r = c.post(f"/v1/proposals/{thr['proposal_id']}/approve", json={"reason": "second approver"})
            assert r.status_code == 200 and r.json()["status"] == "applied", r.text
            assert [a["principal"] for a in r.json()["approvals"]] == ["bob", "dana"]
        assert sql(home, "SELECT count(*) FROM executions WHERE proposal_id IN (:a, :b)",
                   a=exc["proposal_id"], b=thr["proposal_id"]) == [(2,)]

        # the job the killed worker held stays under its lease (120 s), then is taken over, once
        status, attempts, locked_by = sql(home, "SELECT status, attempts, locked_by FROM jobs WHERE id = :i", i=held)[0]
        if not wait_lease:
            assert (status, attempts) == ("running", 1) and f":{dead_pid}:" in locked_by, (status, locked_by)
        else:
            wait_for(lambda: sql(home, "SELECT status FROM jobs WHERE id = :i", i=held) == [("done",)], timeout=240,
                     what="the dead worker's job to be taken over after its lease")
            assert sql(home, "SELECT attempts, locked_by FROM jobs WHERE id = :i", i=held) == [(2, None)]
            assert [p.path for p in jira.posts()] == ["/rest/api/3/issue/SEC-77/comment"]
            assert sql(home, "SELECT count(*) FROM ticket_enrichments WHERE ticket_id = 'SEC-77'") == [(1,)]
        assert slow.connections == 1, "only the killed process ever called the slow Jira"
        _verify_ok(svc)
        print(f"\nrestart answered in {started:.1f} s; {len(jobs)} queued jobs drained in {drained:.1f} s")
    slow.close()


def test_sigkill_with_proposals_pending_and_jobs_queued_loses_nothing(home, tmp_path):
    _kill_with_work_in_flight(home, tmp_path, wait_lease=False, deliveries=6)


@pytest.mark.reliability
def test_sigkill_with_work_in_flight_and_the_held_job_taken_over_after_its_lease(home, tmp_path):
    _kill_with_work_in_flight(home, tmp_path, wait_lease=True, deliveries=40)


# ----------------------------------------------------------------------------- 2. SIGKILL after the approval commit

FAILPOINT = {"GLASSGATE_FAILPOINTS": "after_approval_commit=kill"}


def _approve_into_the_failpoint(svc: ServiceProcess, role: str, pid: str) -> None:
    """Approve ``pid`` as ``role``; the approval completes it, the service commits it and dies."""
    with svc.client(role) as c, pytest.raises(httpx.TransportError):
        c.post(f"/v1/proposals/{pid}/approve", json={"reason": "ok"})
    assert svc.wait_exit() == -signal.SIGKILL
    assert f"failpoint after_approval_commit fired for {pid}" in svc.log()


def _applied_once(home: Home, pid: str) -> None:
    assert sql(home, "SELECT status FROM proposals WHERE proposal_id = :p", p=pid) == [("applied",)]
    assert sql(home, "SELECT adapter, status FROM executions WHERE proposal_id = :p", p=pid) == [("builtin", "applied")]
    assert sql(home, "SELECT count(*) FROM audit_log WHERE kind = 'action' AND subject_id = :p", p=pid) == [(1,)]


def _sigkill_after_approval_commit(home: Home, tmp_path: Path, *, full: bool) -> None:
    grant = propose(home, "ana", "grant_exception", {"user_id": "frank", "resource_id": "payroll-db",
                                                     "duration_hours": 8, "reason": "quarter close"})
    gid = grant["proposal_id"]
    with service(home, tmp_path, **FAILPOINT) as svc:
        svc.start()
        assert "FAILPOINTS ARMED" in svc.log() and "after_approval_commit=kill" in svc.log()
        _approve_into_the_failpoint(svc, "policy_owner", gid)
        # the approval is durable, the action has not run
        assert sql(home, "SELECT status FROM proposals WHERE proposal_id = :p", p=gid) == [("approved",)]
        assert sql(home, "SELECT principal, decision FROM approvals WHERE proposal_id = :p", p=gid) == [("bob", "approve")]
        assert sql(home, "SELECT count(*) FROM executions WHERE proposal_id = :p", p=gid) == [(0,)]
        assert sql(home, "SELECT count(*) FROM access_exceptions WHERE proposal_id = :p", p=gid) == [(0,)]

        # restart (the failpoint still armed: the recovery sweep is not a place it fires)
        svc.start()
        assert f"recovered proposal {gid}" in svc.log()
        _applied_once(home, gid)
        assert sql(home, "SELECT user_id, resource_id FROM access_exceptions WHERE proposal_id = :p", p=gid) == [
            ("frank", "payroll-db")]
        with svc.client("policy_owner") as c:
            got = c.get(f"/v1/proposals/{gid}").json()
            assert got["status"] == "applied" and got["result"]["exception_id"].startswith("exc-")
            again = _problem(c.post(f"/v1/proposals/{gid}/approve", json={"reason": "again"}), 409)
            assert again["reason"] == "not_pending"

        if full:  # a two-approver change: the first approval runs nothing, the second kills, the restart applies
            thr = propose(home, "ana", "change_threshold", {"policy_id": "POL-ACCESS-001", "scope": "tier:internal",
                                                            "step_up_at": 0.4, "deny_at": 0.85})
            tid = thr["proposal_id"]
            with svc.client("policy_owner") as c:
                r = c.post(f"/v1/proposals/{tid}/approve", json={"reason": "first"})
                assert r.status_code == 200 and r.json()["status"] == "pending", r.text
            _approve_into_the_failpoint(svc, "admin", tid)
            assert sql(home, "SELECT status FROM proposals WHERE proposal_id = :p", p=tid) == [("approved",)]
            versions = sql(home, "SELECT count(*) FROM policy_versions")
            svc.start(GLASSGATE_FAILPOINTS="")
            assert "FAILPOINTS ARMED" not in svc.log()
            _applied_once(home, tid)
            assert sql(home, "SELECT count(*) FROM policy_versions") == [(versions[0][0] + 1,)]
            assert svc.stop() in (0, -signal.SIGTERM)  # one more (graceful) restart: the sweep finds nothing
            svc.start(GLASSGATE_FAILPOINTS="")
            assert "recovered proposal" not in svc.log()
            _applied_once(home, tid)
        _applied_once(home, gid)
        _verify_ok(svc)


def test_sigkill_between_approval_and_iam_call_applies_the_action_once_after_restart(home, tmp_path):
    _sigkill_after_approval_commit(home, tmp_path, full=False)


@pytest.mark.reliability
def test_sigkill_after_the_last_of_two_approvals_and_restarts_apply_each_action_once(home, tmp_path):
    _sigkill_after_approval_commit(home, tmp_path, full=True)


# ----------------------------------------------------------------------------- 3. PostgreSQL unavailable


@pytest.fixture
def private_pg() -> Iterator[privatepg.PrivatePg]:
    why = privatepg.missing()
    if why is not None:
        if IN_CI:
            pytest.fail(f"a private PostgreSQL is needed in CI: {why}")
        pytest.skip(f"{why} (allowed outside CI only)")
    pg = privatepg.PrivatePg()
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


@dataclasses.dataclass
class Answers:
    """What the service answered for each event posted."""

    stored: dict[str, str] = dataclasses.field(default_factory=dict)  # event_id -> decision_id (201/200)
    refused: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # events answered 503, by id
    statuses: list[int] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    slowest: float = 0.0

    def post(self, c: httpx.Client, ev: dict[str, Any], *, outage: bool) -> int:
        t0 = time.monotonic()
        r = c.post("/v1/events", json=ev)
        took = time.monotonic() - t0
        with self.lock:
            self.slowest = max(self.slowest, took) if outage else self.slowest
            self.statuses.append(r.status_code)
            if r.status_code in (200, 201):
                self.stored[ev["event_id"]] = r.json()["decision"]["decision_id"]
            elif r.status_code == 503:
                p = _problem(r, 503)
                assert p["type"].endswith("database-unavailable") and r.headers["retry-after"] == "5", p
                self.refused[ev["event_id"]] = ev
            else:
                raise AssertionError(f"{ev['event_id']}: {r.status_code} {r.text}")
        return r.status_code


def _outage(home: Home, tmp_path: Path, pg: privatepg.PrivatePg, *, outage_s: float, clients: int) -> None:
    whsec = _whsec()
    events = home.events(-60)
    for ev in events:
        ev["event_id"] = "pgf-" + ev["event_id"]
    before, during, after = events[:15], events[15:45], events[45:]
    led = Answers()
    with service(home, tmp_path, GLASSGATE_DATABASE_URL=pg.url, GLASSGATE_WEBHOOK_SECRETS=whsec,
                 GLASSGATE_WORKER_POLL_SECONDS="0.2") as svc:
        svc.start()
        with svc.client("ingest", timeout=20) as c:
            assert all(led.post(c, ev, outage=False) == 201 for ev in before)

        pg.stop()
        t_down = time.monotonic()
        fresh = list(during)
        qlock = threading.Lock()

        failures: list[BaseException] = []

        def hammer(k: int) -> None:
            try:
                with svc.client("ingest", timeout=20) as c:
                    n = 0
                    while time.monotonic() - t_down < outage_s:
                        with qlock:  # a new event, or (none left) the client retries one it was refused
                            ev = fresh.pop() if fresh else list(led.refused.values())[(k + n) % len(led.refused)]
                        n += 1
                        assert led.post(c, ev, outage=True) == 503
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread below
                failures.append(exc)

        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(clients)]

        for t in threads:
            t.start()
        with svc.client("admin", timeout=20) as c:  # reads, deliveries and readiness say so too
            _problem(c.get(f"/v1/decisions/{next(iter(led.stored.values()))}"), 503)
            _problem(c.get("/readyz"), 503)
            assert c.get("/healthz").status_code == 200
            body = _generic("INC-PG-1", next(iter(led.stored.values())))
            headers = _std_headers(whsec, body)
            _problem(c.post("/v1/webhooks/tickets", content=body, headers=headers), 503)
        for t in threads:
            t.join()
        assert not failures, failures
        assert led.refused and set(led.statuses[len(before):]) == {503}
        assert led.slowest < 10, f"a request took {led.slowest:.1f} s while the database was down"

        pg.start()
        t_up = time.monotonic()
        outage = t_up - t_down
        first = next(iter(led.refused.values()))
        with svc.client("ingest", timeout=20) as c:
            def back() -> bool:
                r = c.post("/v1/events", json=first)
                assert r.status_code in (201, 503), r.text  # refused or taken, nothing else
                return r.status_code == 201

            wait_for(back, timeout=60, what="the service to recover by itself")
            recovered = time.monotonic() - t_up
            retried = list(led.refused.values())
            led.refused.clear()
            for ev in retried:  # the client retries what was refused; the first one is in already (200)
                assert led.post(c, ev, outage=False) == (200 if ev is first else 201)
            for ev in after:
                assert led.post(c, ev, outage=False) == 201
            for ev in before[:3]:  # a retry of an event stored before the outage is the same decision
                assert led.post(c, ev, outage=False) == 200
        with svc.client("admin", timeout=20) as c:
            r = c.post("/v1/webhooks/tickets", content=body, headers=_std_headers(whsec, body))
            assert r.status_code == 202, r.text
            wait_for(lambda: c.get("/v1/tickets/INC-PG-1/enrichment").status_code == 200, timeout=60,
                     what="the delivery refused during the outage, retried, to be enriched")
            assert c.get("/readyz").status_code == 200
        _verify_ok(svc)

    posted = {ev["event_id"] for ev in before + after} | {ev["event_id"] for ev in retried}
    eng = create_engine(pg.url)
    try:
        with eng.connect() as con:
            rows = con.execute(text("SELECT event_id, decision_id FROM decisions WHERE event_id LIKE 'pgf-%'")).all()
            audit = con.execute(text("SELECT subject_id, count(*) FROM audit_log WHERE kind = 'decision' "
                                     "GROUP BY subject_id HAVING count(*) > 1")).all()
            jobs = con.execute(text("SELECT status, attempts FROM jobs")).all()
    finally:
        eng.dispose()
    assert sorted(r[0] for r in rows) == sorted(posted), "each accepted event stored exactly once"
    assert dict(rows) == {k: v for k, v in led.stored.items() if k in posted}
    assert audit == [] and jobs == [("done", 1)]
    print(f"\noutage {outage:.1f} s: {led.statuses.count(503)} requests answered 503 (slowest {led.slowest:.2f} s); "
          f"recovered {recovered:.2f} s after PostgreSQL was back; {len(posted)} events stored once each")


def test_database_outage_is_503_then_recovers_by_itself_without_losing_events(home, tmp_path, private_pg):
    _outage(home, tmp_path, private_pg, outage_s=2.0, clients=1)


@pytest.mark.reliability
def test_longer_database_outage_under_concurrent_load(home, tmp_path, private_pg):
    _outage(home, tmp_path, private_pg, outage_s=20.0, clients=4)


@pytest.mark.reliability
def test_agent_turns_recover_after_a_database_restart(home, tmp_path, private_pg):
    question = {"question": "which policy sets the threshold for OT consoles?"}
    with service(home, tmp_path, GLASSGATE_DATABASE_URL=private_pg.url) as svc:
        svc.start()
        with svc.client("analyst") as c:
            assert c.post("/v1/ask", json=question).status_code == 200
            private_pg.stop()
            _problem(c.post("/v1/ask", json=question), 503)
            private_pg.start()
            assert c.get("/v1/decisions").status_code == 200  # the engine's pool has recovered

            def answered() -> bool:
                r = c.post("/v1/ask", json=question)
                assert r.status_code in (200, 503), r.text
                return r.status_code == 200

            wait_for(answered, timeout=20, what="an agent turn to be answered again")


# ----------------------------------------------------------------------------- 4. tampering, named by API and CLI

_COLS = ("seq", "kind", "subject_id", "at", "payload", "prev_hash", "leaf_hash")


def _tamper(db: Path, how: str, k: int) -> list[tuple[Any, ...]]:
    """Tamper with the ledger at entry ``k``; returns the rows from ``k`` on as they were (to restore)."""
    con = sqlite3.connect(db)
    try:
        with con:
            saved = con.execute(f"SELECT {', '.join(_COLS)} FROM audit_log WHERE seq >= ? ORDER BY seq", (k,)).fetchall()
            if how == "modify":
                con.execute("UPDATE audit_log SET subject_id = subject_id || '-x' WHERE seq = ?", (k,))
            elif how == "delete":
                con.execute("DELETE FROM audit_log WHERE seq = ?", (k,))
            elif how == "reorder":
                rest = ", ".join(f"{c} = ?" for c in _COLS[1:])
                a, b = saved[0], saved[1]
                con.execute(f"UPDATE audit_log SET {rest} WHERE seq = ?", (*b[1:], k))
                con.execute(f"UPDATE audit_log SET {rest} WHERE seq = ?", (*a[1:], k + 1))
            elif how == "truncate":
                con.execute("DELETE FROM audit_log WHERE seq >= ?", (k,))
            else:
                raise AssertionError(how)
        return saved
    finally:
        con.close()


def _restore(db: Path, k: int, saved: list[tuple[Any, ...]]) -> None:
    con = sqlite3.connect(db)
    try:
        with con:
            con.execute("DELETE FROM audit_log WHERE seq >= ?", (k,))
            con.executemany(f"INSERT INTO audit_log ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))})",
                            saved)
    finally:
        con.close()


def _tampering(home: Home, tmp_path: Path, kinds: tuple[str, ...], *, cli_for: tuple[str, ...]) -> None:
    db = home.home / "glassgate.db"
    with service(home, tmp_path) as svc:
        svc.start()
        with svc.client("ingest") as c:  # a few more entries through the live service
            for ev in home.events(-8):
                assert c.post("/v1/events", json=ev).status_code == 201
        n = _verify_ok(svc)["size"]
        assert n == sql(home, "SELECT count(*) FROM audit_log")[0][0]
        for i, how in enumerate(kinds):
            k = n // 3 + 7 * i
            saved = _tamper(db, how, k)
            with svc.client("analyst") as c:
                r = c.get("/v1/audit/verify")
            assert r.status_code == 200, r.text
            rep = r.json()
            assert rep["ok"] is False and rep["first_bad_seq"] == k and rep["root"] is None, (how, rep)
            assert f"entry {k}" in rep["problem"] or f"first missing entry is {k}" in rep["problem"], rep
            assert rep["size"] == (k if how == "truncate" else n - 1 if how == "delete" else n), rep
            if how in cli_for:
                res = svc.cli("audit", "verify")
                assert res.returncode == 1, res.stdout + res.stderr
                assert f"audit ledger FAILED at entry {k}: {rep['problem']}" in res.stdout, res.stdout
            _restore(db, k, saved)
            assert _verify_ok(svc)["size"] == n, how
        if len(cli_for) == len(kinds):
            res = svc.cli("audit", "verify")
            assert res.returncode == 0 and f"audit ledger OK: {n} entries" in res.stdout, res.stdout + res.stderr


def test_tampered_ledger_is_named_by_the_service_and_the_cli(home, tmp_path):
    _tampering(home, tmp_path, ("modify", "delete", "reorder", "truncate"), cli_for=("reorder",))


@pytest.mark.reliability
def test_tampered_ledger_is_named_by_the_cli_for_every_kind_of_tampering(home, tmp_path):
    _tampering(home, tmp_path, ("truncate", "reorder", "delete", "modify"),
               cli_for=("truncate", "reorder", "delete", "modify"))


# ----------------------------------------------------------------------------- the pieces, in process


def test_decide_commits_the_approval_and_concurrent_sweeps_execute_it_exactly_once(db_url, policy, tmp_path):
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from agent.approval import ApprovalRules, Channel, Kind, Principal, Role, Status
    from agent.iam import BuiltinIam
    from agent.proposals import approved_without_execution, create, decide, execute_approved
    from risk.audit import AuditEntry
    from risk.audit import Ledger as AuditLedger
    from risk.store.control import ExecutionRow, RevocationRow
    from risk.store.db import make_engine, session_factory
    from risk.store.migrate import upgrade

    db = make_engine(db_url)
    upgrade(db)
    sessions = session_factory(db)
    rules = ApprovalRules.from_policy(policy)
    ledger = AuditLedger(witness_path=tmp_path / "w.json")
    with sessions() as s:
        ledger.init(s, ledger_id="test")  # the first witness (`glassgate audit init`)

    def clock() -> datetime:
        return datetime(2026, 11, 29, 9, 0, tzinfo=UTC)

    iam = BuiltinIam(base_policy=policy, rules=rules)
    with sessions.begin() as s:
        pid = create(s, kind=Kind.REVOKE_SESSION, payload={"session_id": "s-sweep", "reason": "token replay"},
                     evidence={}, requested_by="ana", rules=rules, ledger=ledger, clock=clock).proposal_id
    with sessions.begin() as s:
        rec = decide(s, proposal_id=pid, principal=Principal("bob", frozenset({Role.POLICY_OWNER})), approve=True,
                     channel=Channel.API, rules=rules, ledger=ledger, clock=clock)
    assert rec.status is Status.APPROVED and rec.result is None  # committed; nothing applied yet

    def count(model: Any) -> int:
        with sessions() as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)

    with sessions() as s:
        assert approved_without_execution(s) == [pid]
    assert (count(ExecutionRow), count(RevocationRow)) == (0, 0)
    barrier = threading.Barrier(4)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait()
            results.append([r.proposal_id for r in execute_approved(sessions, iam=iam, ledger=ledger, clock=clock,
                                                                    rules=rules)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(results) == [[], [], [], [pid]], "four concurrent sweeps, one execution"
    assert (count(ExecutionRow), count(RevocationRow)) == (1, 1)
    assert execute_approved(sessions, iam=iam, ledger=ledger, clock=clock, rules=rules, proposal_id=pid) == []
    with sessions() as s:
        assert approved_without_execution(s) == []
        assert [e.kind for e in ledger.entries(s)] == ["proposal", "approval", "action"]
        assert ledger.verify(s).ok and count(AuditEntry) == 3
    db.dispose()


def test_failpoints_are_off_by_default_and_refuse_unknown_names():
    from integrations.faults import Failpoint, FailpointError, FaultAction, hook, parse
    from integrations.settings import Settings

    assert Settings().failpoints is None and parse(Settings().failpoints) == {} and parse(" , ") == {}
    armed = parse("after_approval_commit=kill")
    assert armed == {Failpoint.AFTER_APPROVAL_COMMIT: FaultAction.KILL}
    assert hook({}, Failpoint.AFTER_APPROVAL_COMMIT) is None and callable(hook(armed, Failpoint.AFTER_APPROVAL_COMMIT))
    for bad in ("after_approval_commit", "after_approval_commit=crash", "before_everything=kill"):
        with pytest.raises(FailpointError, match=bad.split("=")[0]):
            parse(bad)


def test_database_unavailable_is_told_from_a_bug_by_type_and_code(tmp_path):
    import psycopg
    from sqlalchemy.exc import OperationalError

    from integrations.api.errors import database_unavailable
    from tests.procserver import free_port

    port = free_port()  # nothing listens there
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=5)
    assert database_unavailable(refused.value)
    eng = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres")
    with pytest.raises(OperationalError) as wrapped:
        eng.connect()
    assert database_unavailable(wrapped.value)
    eng.dispose()

    db = tmp_path / "x.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(db, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as busy:
        other.execute("INSERT INTO t VALUES (1)")
    assert database_unavailable(busy.value), "locked: try again later"
    holder.execute("ROLLBACK")
    with pytest.raises(sqlite3.OperationalError) as bug:
        other.execute("SELECT * FROM no_such_table")
    assert not database_unavailable(bug.value), "a missing table is a bug, not an outage"
    holder.close()
    other.close()
