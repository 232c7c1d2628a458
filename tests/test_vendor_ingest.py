"""Vendor sign-in logs ingested by the service, the HTTP endpoints and `glassgate import`: scored in shadow,
stored beside the vendor's decision with their agreement; duplicates change nothing; bad records store nothing."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from integrations.api import create_app
from integrations.ingest import Vendor
from integrations.runtime import Runtime
from integrations.services.deps import ServiceDeps
from integrations.services.vendor_ingest import ingest_records
from integrations.settings import Settings
from integrations.webhooks import sign_standard
from risk.store.schema import DecisionRow
from risk.store.vendor import VendorObservationRow
from tests.apiserver import make_home, problem, serving

FIX = Path(__file__).parent / "fixtures" / "vendors"
SAMPLE = Path(__file__).parent.parent / "integrations" / "samples" / "okta-sample.ndjson"
SECRET = "whsec_" + base64.b64encode(b"vendor-ingest-test-key-0123456789").decode()
OKTA_AUTH = "Bearer okta-hook-" + "k" * 24


def load(vendor: str, name: str) -> dict:
    return json.loads((FIX / vendor / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return make_home(tmp_path_factory.mktemp("vendor"))


@pytest.fixture
def deps(home, db_url):
    rt = Runtime(Settings(home=home.home, config=home.config, database_url=db_url))
    return ServiceDeps.from_runtime(rt)


def counts(deps) -> tuple[int, int]:
    with deps.sessions() as s:
        return (int(s.scalar(select(func.count()).select_from(DecisionRow))),
                int(s.scalar(select(func.count()).select_from(VendorObservationRow))))


def test_each_record_is_scored_in_shadow_beside_the_vendor_decision(deps):
    recs = [load("okta", n) for n in ("success", "mfa_challenge", "risky_deny")]
    out = ingest_records(deps=deps, vendor=Vendor.OKTA, records=recs)
    assert (out.received, out.created, out.rejected) == (3, 3, 0)
    with deps.sessions() as s:
        rows = {r.vendor_event_id: r for r in s.scalars(select(VendorObservationRow))}
        deny = rows["f790999f-fe87-467a-9880-6982a583986c"]
        d = s.get(DecisionRow, deny.decision_id)
        assert (deny.outcome, deny.rule, deny.vendor) == ("deny", "Deny high risk", "okta")
        assert deny.observed["risk_level"] == "high"
        assert {r["text"] for r in deny.observed["reasons"]} >= {"Anomalous Location"}
        assert d.event["event_id"] == "okta:f790999f-fe87-467a-9880-6982a583986c"
        want = "agree" if (d.outcome != "allow") else "disagree"  # the vendor denied
        assert deny.agreement == want
    items = {i.vendor_event_id: i for i in out.items}
    assert items["f790999f-fe87-467a-9880-6982a583986c"].vendor_outcome == "deny"


def test_vendor_event_id_is_the_idempotency_key(deps):
    rec = load("entra", "risky_block")
    first = ingest_records(deps=deps, vendor=Vendor.ENTRA, records=[rec])
    before = counts(deps)
    again = ingest_records(deps=deps, vendor=Vendor.ENTRA, records=[rec, rec])
    assert [i.status for i in again.items] == ["duplicate", "duplicate"]
    assert again.items[0].decision_id == first.items[0].decision_id
    assert counts(deps) == before
    changed = copy.deepcopy(rec)
    changed["riskLevelDuringSignIn"] = "low"
    conflict = ingest_records(deps=deps, vendor=Vendor.ENTRA, records=[changed])
    assert conflict.items[0].status == "rejected" and conflict.items[0].errors[0].field == "id"
    assert counts(deps) == before


def test_bad_records_store_nothing_and_name_the_vendor_field(deps):
    before = counts(deps)
    out = ingest_records(deps=deps, vendor=Vendor.OKTA, records=[load("okta", "malformed_outcome"), 42,
                                                                 load("okta", "success")])
    assert [i.status for i in out.items] == ["rejected", "rejected", "created"]
    assert out.items[0].errors[0].field == "outcome.result"
    assert out.items[1].errors[0].field == "(record)"
    assert counts(deps) == (before[0] + 1, before[1] + 1)


def test_failed_attempts_are_counted_from_history_and_mfa_rides_on_the_session(deps):
    fail = load("okta", "proxy_failure")
    recs = []
    for k in range(3):
        r = copy.deepcopy(fail)
        r["uuid"] = f"0a7b1c2d-598d-11ef-8478-2b7584bf8d{k:02d}"
        r["published"] = f"2026-11-29T12:1{k}:00.000Z"
        recs.append(r)
    ingest_records(deps=deps, vendor=Vendor.OKTA, records=recs[:2])  # stored history
    ok = copy.deepcopy(load("okta", "success"))
    ok["uuid"], ok["published"] = "0a7b1c2d-598d-11ef-8478-2b7584bf8dff", "2026-11-29T12:30:00.000Z"
    ok["debugContext"]["debugData"]["factor"] = "OKTA_VERIFY_PUSH"
    sso = copy.deepcopy(load("okta", "success"))
    sso["uuid"], sso["published"], sso["eventType"] = "0a7b1c2d-598d-11ef-8478-2b7584bf8dfe", "2026-11-29T12:50:00.000Z", \
        "user.authentication.sso"
    out = ingest_records(deps=deps, vendor=Vendor.OKTA, records=[recs[2], ok, sso])
    with deps.sessions() as s:
        ev = {i.vendor_event_id: s.get(DecisionRow, i.decision_id).event for i in out.items}
        obs = s.get(VendorObservationRow, out.items[2].decision_id).observed
    assert ev[ok["uuid"]]["auth"]["failed_attempts_1h"] == 3  # two stored, one earlier in this very batch
    assert ev[ok["uuid"]]["auth"]["mfa_method"] == "push" and ev[ok["uuid"]]["auth"]["minutes_since_mfa"] == 0
    assert ev[sso["uuid"]]["auth"]["mfa_method"] == "push" and ev[sso["uuid"]]["auth"]["minutes_since_mfa"] == 20
    assert "auth.minutes_since_mfa" not in {m["field"] for m in obs["missing"]}
    assert out.items[0].agreement == "not_comparable"  # a wrong password is not a risk decision


# ----------------------------------------------------------------------------- HTTP


@pytest.fixture(scope="module")
def service(home):
    rt = Runtime(Settings(home=home.home, config=home.config, database_url=None, okta_hook_authorization=OKTA_AUTH,
                          ingest_webhook_secrets=SECRET))
    with serving(create_app(rt, start_worker=False)) as base:
        yield base


def _signed(body: bytes, msg_id: str = "msg_1") -> dict[str, str]:
    ts = int(time.time())
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign_standard(SECRET, msg_id=msg_id, timestamp=ts, body=body),
            "content-type": "application/json"}


def test_okta_event_hook_verification_and_delivery(service):
    import httpx

    with httpx.Client(base_url=service, timeout=60) as c:
        r = c.get("/v1/ingest/okta", headers={"Authorization": OKTA_AUTH, "X-Okta-Verification-Challenge": "abc123"})
        assert r.status_code == 200 and r.json() == {"verification": "abc123"}
        problem(c.get("/v1/ingest/okta", headers={"X-Okta-Verification-Challenge": "abc123"}), 401)
        problem(c.get("/v1/ingest/okta", headers={"Authorization": "Bearer wrong",
                                                  "X-Okta-Verification-Challenge": "x"}), 401)
        hook = {"eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
                "source": "https://example.okta.com/api/v1/eventHooks/who8tsiyxtGlJFfV70g3", "eventId": "b7e3",
                "eventTime": "2026-11-29T11:02:01.000Z", "contentType": "application/json",
                "data": {"events": [load("okta", "risky_deny"), load("okta", "mfa_challenge")]}}
        r = c.post("/v1/ingest/okta", json=hook, headers={"Authorization": OKTA_AUTH})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["created"] == 2 and {i["vendor_outcome"] for i in body["items"]} == {"deny", "challenge"}
        r = c.post("/v1/ingest/okta", json=hook, headers={"Authorization": OKTA_AUTH})
        assert r.status_code == 200 and r.json()["duplicates"] == 2
        p = problem(c.post("/v1/ingest/okta", json=load("okta", "malformed_outcome"),
                           headers={"Authorization": OKTA_AUTH}), 422)
        assert {e["field"] for e in p["errors"]} == {"outcome.result"}
        problem(c.post("/v1/ingest/okta", json=hook), 401)


def test_entra_and_ocsf_are_standard_webhooks_signed(service):
    import httpx

    with httpx.Client(base_url=service, timeout=60) as c:
        body = json.dumps({"records": [load("entra", "azure_monitor")]}).encode()
        r = c.post("/v1/ingest/entra", content=body, headers=_signed(body))
        assert r.status_code == 201, r.text
        assert r.json()["items"][0]["vendor_outcome"] == "allow"
        problem(c.post("/v1/ingest/entra", content=body, headers={"content-type": "application/json"}), 401)
        tampered = body.replace(b"alice", b"mallory")
        problem(c.post("/v1/ingest/entra", content=tampered, headers=_signed(body)), 401)
        nd = b"\n".join(json.dumps(load("ocsf", n)).encode() for n in ("success", "challenge", "wrong_class"))
        r = c.post("/v1/ingest/ocsf", content=nd, headers={**_signed(nd, "msg_2"), "content-type": "application/x-ndjson"})
        assert r.status_code == 201, r.text
        assert [i["status"] for i in r.json()["items"]] == ["created", "created", "rejected"]
        assert r.json()["items"][2]["errors"][0]["field"] == "class_uid"
        bad_raw = load("entra", "malformed_error_code")
        bad_raw["status"]["errorCode"] = "blocked"  # "53003" as text is the code; a word is not
        bad = json.dumps(bad_raw).encode()
        p = problem(c.post("/v1/ingest/entra", content=bad, headers=_signed(bad, "msg_3")), 422)
        assert {e["field"] for e in p["errors"]} == {"status.errorCode"}


# ----------------------------------------------------------------------------- glassgate import


def test_import_cli_on_the_shipped_sample(home, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), "GLASSGATE_HOME": str(home.home),
           "GLASSGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'import.db'}"}
    cmd = [sys.executable, "-m", "integrations.cli", "import", "--format", "okta", str(SAMPLE)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "43 records, 43 new" in r.stderr
    bad = tmp_path / "bad.ndjson"
    lines = SAMPLE.read_text().splitlines()[:2] + ["{not json", json.dumps(load("okta", "malformed_risk"))]
    bad.write_text("\n".join(lines) + "\n")
    r = subprocess.run(cmd[:-1] + [str(bad)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "record 3: (record): line 3 is not JSON" in r.stderr
    assert "record 4: debugContext.debugData.risk:" in r.stderr
    assert "2 already imported, 2 rejected" in r.stderr


def test_a_file_holding_a_graph_page_is_opened_like_a_push(deps):
    """`glassgate import` hands the decoded file to the service: a Graph list page (the Graph docs' own
    example) is its `value` records, not one record without an id."""
    page = json.loads((Path(__file__).parent / "fixtures" / "vendor_real" / "entra" /
                       "graph_v1_signin_get.json").read_text())
    out = ingest_records(deps=deps, vendor=Vendor.ENTRA, records=[page])
    assert (out.received, out.rejected) == (1, 0)
    assert out.items[0].vendor_event_id == "66ea54eb-6301-4ee5-be62-ff5a759b0100"
