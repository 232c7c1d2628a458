"""ServiceNow beside Jira: an incident delivered with a Standard Webhooks signature is enriched by the same
job queue and verifier, and the narrative lands as one work note through the Table API (a small ServiceNow on
127.0.0.1 that checks what it receives), even when an answer is lost."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from typing import Any

import httpx
import pytest

from integrations.api import create_app
from integrations.enrichment import KIND, make_handler
from integrations.jobs import JobQueue, run_one, wall_ms
from integrations.servicenow import ServiceNowTicketing
from integrations.webhooks import sign_standard
from tests.apiserver import Home, make_home, serving, sqlite_rows, wait_for
from tests.fake_servicenow import FakeServiceNow

SYS_ID = "9d385017c611228701d22104cc95c371"
USER, PASSWORD = "glassgate.integration", "Sn0w-" + "x7Qp2LmR9tVw"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Home:
    h = make_home(tmp_path_factory.mktemp("servicenow"))
    rt = h.runtime()
    list(rt.engine.score_many(h.events(-60)))
    rt.db.dispose()
    return h


@pytest.fixture
def snow():
    with FakeServiceNow(user=USER, password=PASSWORD) as fake:
        fake.add("incident", SYS_ID, "INC0010023")
        yield fake
        assert fake.problems == []


def _secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _delivery(event_id: str, **extra: Any) -> bytes:
    rec = {"table": "incident", "sys_id": SYS_ID, "number": "INC0010023", "caller": "ana@example.com",
           "short_description": "Blocked from payroll", "description": f"request {event_id} was refused", **extra}
    return json.dumps({"servicenow": rec}).encode()


def _headers(secret: str, body: bytes) -> dict[str, str]:
    mid, ts = f"msg_{uuid.uuid4().hex}", int(time.time())
    return {"webhook-id": mid, "webhook-timestamp": str(ts), "content-type": "application/json",
            "webhook-signature": sign_standard(secret, msg_id=mid, timestamp=ts, body=body)}


def _event_id(home: Home) -> tuple[str, str]:
    (row,) = sqlite_rows(home.home, "SELECT decision_id, event_id FROM decisions ORDER BY ts_ms DESC LIMIT 1")
    return row[0], row[1]


def test_a_signed_incident_gets_one_work_note_naming_its_decision(home, snow):
    secret = _secret()
    rt = home.runtime(webhook_secrets=secret, worker_poll_seconds=0.05, servicenow_url=snow.url,
                      servicenow_user=USER, servicenow_password=PASSWORD)
    decision_id, event_id = _event_id(home)
    body = _delivery(event_id)
    headers = _headers(secret, body)
    with serving(create_app(rt)) as base, httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/v1/webhooks/tickets", content=body, headers=headers)
        assert r.status_code == 202 and r.json()["ticket_id"] == "INC0010023", r.text
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {home.tokens['analyst']}"}) as a:
            got = wait_for(lambda: (x := a.get("/v1/tickets/INC0010023/enrichment")).status_code == 200 and x.json(),
                           what="the enrichment of INC0010023")
        again = c.post("/v1/webhooks/tickets", content=body, headers=headers)  # ServiceNow retries the delivery
        assert again.json()["duplicate"] is True
    (patch,) = snow.calls("PATCH")
    assert patch.path == f"/api/now/table/incident/{SYS_ID}" and set(patch.body) == {"work_notes"}
    assert decision_id in patch.body["work_notes"] and f"glassgate delivery {headers['webhook-id']}" in \
        patch.body["work_notes"]
    assert got["posted_to"] == "servicenow" and got["source"] == "servicenow"
    assert got["external_ref"] == f"incident/{SYS_ID}" and got["decision_ids"] == [decision_id]
    assert snow.calls("GET") == []  # a first attempt does not read the journal


def test_a_work_note_whose_answer_was_lost_is_not_written_twice(home, snow):
    secret = _secret()
    rt = home.runtime(webhook_secrets=secret, servicenow_url=snow.url, servicenow_user=USER,
                      servicenow_password=PASSWORD)
    _, event_id = _event_id(home)
    body = _delivery(event_id)
    with serving(create_app(rt, start_worker=False)) as base, httpx.Client(base_url=base, timeout=30) as c:
        job_id = c.post("/v1/webhooks/tickets", content=body, headers=_headers(secret, body)).json()["job_id"]
    clock = {"now": wall_ms()}
    queue = JobQueue(sessions=rt.sessions, clock_ms=lambda: clock["now"])
    adapter = ServiceNowTicketing(base_url=snow.url, user=USER, password=PASSWORD)
    handlers = {KIND: make_handler(rt, adapter_for=lambda t: adapter)}
    snow.script["PATCH"].append("drop")  # ServiceNow wrote the note; the answer never came back
    try:
        assert run_one(queue, handlers).id == job_id
        clock["now"] += 2_000
        assert run_one(queue, handlers).id == job_id
    finally:
        adapter.close()
    assert len(snow.calls("PATCH")) == 1 and len(snow.notes[("incident", SYS_ID)]) == 1
    (get,) = snow.calls("GET")
    assert get.query["sysparm_fields"] == ["work_notes"]
    assert sqlite_rows(home.home, "SELECT status, attempts FROM jobs WHERE id = :i", i=job_id) == [("done", 2)]


def test_a_servicenow_delivery_with_an_unknown_field_is_422_naming_it(home):
    secret = _secret()
    rt = home.runtime(webhook_secrets=secret)
    body = _delivery("evt-x", assignment_group="ops")
    with serving(create_app(rt, start_worker=False)) as base, httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/v1/webhooks/tickets", content=body, headers=_headers(secret, body))
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["servicenow.assignment_group"]
