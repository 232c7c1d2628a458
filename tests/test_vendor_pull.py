"""The pull connectors against loopback Okta and Graph servers that page, throttle and fail mid-page: every
record is stored exactly once, the cursor survives a restart, and throttling waits as long as the vendor asks."""

from __future__ import annotations

import copy
import json
import ssl
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from integrations.ingest.entra_pull import GraphSignIns, MsalTokens
from integrations.ingest.okta_pull import OktaLogs
from integrations.ingest.pull import Throttle
from integrations.runtime import Runtime
from integrations.services.deps import ServiceDeps
from integrations.services.vendor_pull import load_cursor, poll_once
from integrations.settings import Settings
from risk.store.vendor import VendorObservationRow
from tests.apiserver import make_home
from tests.fake_vendor_logs import GraphHandler, Log, OktaHandler, self_signed, serve

FIX = Path(__file__).parent / "fixtures" / "vendors"
START = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)


def okta_events(n: int, *, first: int = 0) -> list[dict]:
    base = json.loads((FIX / "okta" / "success.json").read_text())
    out = []
    for i in range(first, first + n):
        e = copy.deepcopy(base)
        e["uuid"] = f"00000000-0000-4000-8000-{i:012d}"
        e["published"] = f"2026-11-29T10:{i:02d}:00.000Z"
        out.append(e)
    return out


def entra_signins(times: list[str]) -> list[dict]:
    base = json.loads((FIX / "entra" / "success.json").read_text())
    out = []
    for i, t in enumerate(times):
        e = copy.deepcopy(base)
        e["id"], e["createdDateTime"] = f"00000000-0000-4000-9000-{i:012d}", t
        out.append(e)
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return make_home(tmp_path_factory.mktemp("pull"))


@pytest.fixture
def deps(home, db_url):
    return ServiceDeps.from_runtime(Runtime(Settings(home=home.home, config=home.config, database_url=db_url)))


def stored(deps, vendor: str) -> list[str]:
    with deps.sessions() as s:
        return sorted(s.scalars(select(VendorObservationRow.vendor_event_id).where(VendorObservationRow.vendor == vendor)))


def test_okta_pages_throttles_fails_mid_page_and_resumes(deps):
    log = Log(records=okta_events(5), script={2: ("throttle", 7), 4: ("fail", 500)})
    OktaHandler.log, OktaHandler.token = log, "00abcSSWStoken"
    server = serve(OktaHandler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    waits: list[float] = []

    def source():
        return OktaLogs(org_url=base, token="00abcSSWStoken", start=START, client=httpx.Client(timeout=10), limit=2,
                        throttle=Throttle(sleep=waits.append, now=lambda: log.now))

    try:
        first = poll_once(deps=deps, source=source())
        # request 1: page 1; request 2: 429 (waited out); request 3: page 2; request 4: 500 mid-paging
        assert first.error and "500" in first.error
        assert (first.pages, first.created) == (2, 4) and waits == [7.0]
        assert load_cursor(deps, source().name)["next"].endswith("after=4&limit=2&sortOrder=ASCENDING")
        again = poll_once(deps=deps, source=source())  # "restarted": a new source, the stored cursor
        assert again.error is None and again.created == 1 and again.duplicates == 0
        assert stored(deps, "okta") == sorted(e["uuid"] for e in log.records)
        log.records += okta_events(2, first=5)  # new events arrive
        third = poll_once(deps=deps, source=source())
        assert (third.created, third.duplicates) == (2, 0)
        assert len(stored(deps, "okta")) == 7
        assert not log.problems, log.problems
        firsts = [q for m, p, q in log.requests if "since" in q]
        assert len(firsts) == 1 and firsts[0]["since"] == "2026-11-29T00:00:00Z"  # only the very first poll
    finally:
        server.shutdown()


def test_okta_next_link_off_the_org_is_refused(deps):
    log = Log(records=okta_events(1))

    class Evil(OktaHandler):
        def end_headers(self):  # the Link header points at another host
            self._headers_buffer = [h.replace(b"127.0.0.1", b"attacker.example") if h.startswith(b"Link") else h
                                    for h in self._headers_buffer]
            super().end_headers()

    Evil.log, Evil.token = log, "t"
    server = serve(Evil)
    try:
        src = OktaLogs(org_url=f"http://127.0.0.1:{server.server_address[1]}", token="t", start=START,
                       client=httpx.Client(timeout=10), throttle=Throttle(sleep=lambda s: None))
        out = poll_once(deps=deps, source=src)
        assert out.error and "off the Okta org" in out.error and out.created == 0
    finally:
        server.shutdown()


def test_entra_over_msal_pages_throttles_and_takes_each_sign_in_once(deps, tmp_path):
    cert, key = self_signed(tmp_path)
    times = ["2026-11-29T10:00:00Z", "2026-11-29T10:05:00Z", "2026-11-29T10:05:00Z", "2026-11-29T10:09:00Z"]
    log = Log(records=entra_signins(times), script={2: ("throttle", 3), 3: ("fail", 503)})
    GraphHandler.log, GraphHandler.tenant = log, "tenant-1"
    GraphHandler.client_id, GraphHandler.client_secret, GraphHandler.tokens_issued = "app-1", "s3cret-value", []
    server = serve(GraphHandler, tls=(cert, key))
    host = f"https://127.0.0.1:{server.server_address[1]}"
    http = httpx.Client(timeout=10, verify=ssl.create_default_context(cafile=str(cert)))
    waits: list[float] = []

    def source():
        tokens = MsalTokens(authority_host=host, tenant_id="tenant-1", client_id="app-1", client_secret="s3cret-value",
                            http_client=http)
        return GraphSignIns(graph_url=f"{host}/v1.0", token=tokens, start=START, client=http, top=2,
                            throttle=Throttle(sleep=waits.append))

    try:
        first = poll_once(deps=deps, source=source())
        assert first.error and "503" in first.error and first.created == 2 and waits == [3.0]
        cur = load_cursor(deps, source().name)
        assert cur == {"since": "2026-11-29T10:05:00Z", "ids": ["00000000-0000-4000-9000-000000000001"]}
        again = poll_once(deps=deps, source=source())
        assert again.error is None and (again.created, again.duplicates) == (2, 0)
        assert stored(deps, "entra") == sorted(r["id"] for r in log.records)
        filters = [q["$filter"] for m, p, q in log.requests if "$filter" in q]
        assert filters[0] == "createdDateTime ge 2026-11-29T00:00:00Z"
        assert filters[-1] == "createdDateTime ge 2026-11-29T10:05:00Z"  # resumed at the cursor, not the start
        assert not log.problems, log.problems
        assert any(p.endswith("/oauth2/v2.0/token") for m, p, q in log.requests if m == "POST")
    finally:
        server.shutdown()
        http.close()


def test_a_wrong_client_secret_is_a_named_failure(deps, tmp_path):
    cert, key = self_signed(tmp_path)
    GraphHandler.log, GraphHandler.tenant = Log(records=[]), "tenant-1"
    GraphHandler.client_id, GraphHandler.client_secret, GraphHandler.tokens_issued = "app-1", "right", []
    server = serve(GraphHandler, tls=(cert, key))
    host = f"https://127.0.0.1:{server.server_address[1]}"
    http = httpx.Client(timeout=10, verify=ssl.create_default_context(cafile=str(cert)))
    try:
        src = GraphSignIns(graph_url=f"{host}/v1.0", token=MsalTokens(
            authority_host=host, tenant_id="tenant-1", client_id="app-1", client_secret="wrong", http_client=http),
            start=START, client=http)
        out = poll_once(deps=deps, source=src)
        assert out.error and "invalid_client" in out.error
        with deps.sessions() as s:
            assert s.scalar(select(func.count()).select_from(VendorObservationRow)) == 0
    finally:
        server.shutdown()
        http.close()


def test_connector_run_once_cli(home, tmp_path):
    import os
    import subprocess
    import sys

    log = Log(records=okta_events(3))
    OktaHandler.log, OktaHandler.token = log, "cli-token-123456789"
    server = serve(OktaHandler)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), "GLASSGATE_HOME": str(home.home),
           "GLASSGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'pull.db'}",
           "GLASSGATE_OKTA_ORG_URL": f"http://127.0.0.1:{server.server_address[1]}",
           "GLASSGATE_OKTA_API_TOKEN": "cli-token-123456789", "GLASSGATE_CONNECTOR_START": "2026-11-29T00:00:00Z"}
    cmd = [sys.executable, "-m", "integrations.cli", "connector", "run", "okta", "--once"]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert "3 records, 3 new" in r.stderr
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)  # a restart: nothing again
        assert r.returncode == 0 and "0 records, 0 new" in r.stderr, r.stderr
        log.script[log.data_requests + 1] = ("fail", 502)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and "vendor API failed" in r.stderr
    finally:
        server.shutdown()
