"""SIGKILL through the real service (`glassgate serve`) with the Okta adapter: the process dies after Okta
applied the action and before glassgate recorded it (the ``after_iam_call`` failpoint), for the grant of an
exception (bounded, in make test) and also for its removal at the end of its window (``reliability``: one
more restart, each takes tens of seconds on a loaded machine). Each restart reconciles by reading Okta's
state back: Okta receives each write exactly once, and the ledger has each action once."""

from __future__ import annotations

import dataclasses
import shutil
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.apiserver import Home, make_home, wait_for
from tests.fake_okta import FakeOkta
from tests.procserver import service
from tests.test_faults import propose, sql

TOKEN = "00c9Lk2Jh5Gf8Ds1Aq4Wz7Xe0Rv3Bt6Ny-okta"
GROUP = "00gExceptionsForZT"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Home:
    h = make_home(tmp_path_factory.mktemp("iamfaults"))
    rt = h.runtime()
    list(rt.engine.score_many(h.events(-40)))
    rt.db.dispose()
    return h


@pytest.fixture
def home(seeded, tmp_path) -> Home:
    dst = tmp_path / "home"
    shutil.copytree(seeded.home, dst)
    return dataclasses.replace(seeded, home=dst)


@pytest.fixture
def okta():
    with FakeOkta(token=TOKEN) as fake:
        fake.add_user("frank", uid="00u1frank")
        fake.groups[GROUP] = set()
        yield fake
        assert fake.problems == []


def _at(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _sigkill_after_okta_applied(home: Home, okta: FakeOkta, tmp_path: Path, *, kill_expiry: bool) -> None:
    # The service runs on a fixed clock, so that how long a restart takes on this machine cannot move the
    # exception's window (it starts at the approval): the grant is recovered while its window is open, and
    # its end comes when the clock is set past it.
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    env = {"GLASSGATE_IAM": "okta", "GLASSGATE_OKTA_ORG_URL": okta.url, "GLASSGATE_OKTA_API_TOKEN": TOKEN,
           "GLASSGATE_OKTA_EXCEPTION_GROUP_ID": GROUP, "GLASSGATE_IAM_EXPIRY_SECONDS": "0.5",
           "GLASSGATE_FAILPOINTS": "after_iam_call=kill", "GLASSGATE_NOW": _at(t0),
           "GLASSGATE_ALLOW_FIXED_CLOCK": "1"}
    pid = propose(home, "ana", "grant_exception", {"user_id": "frank", "resource_id": "payroll-db",
                                                   "duration_hours": 0.5, "reason": "incident bridge"})["proposal_id"]
    with service(home, tmp_path, **env) as svc:
        svc.start()
        with svc.client("policy_owner") as c, pytest.raises(httpx.TransportError):
            c.post(f"/v1/proposals/{pid}/approve", json={"reason": "ok"})
        assert svc.wait_exit() == -signal.SIGKILL
        assert f"failpoint after_iam_call fired for {pid}" in svc.log()
        # Okta has the membership; glassgate recorded nothing of the execution
        assert "00u1frank" in okta.groups[GROUP] and len(okta.calls("PUT")) == 1
        assert sql(home, "SELECT status FROM proposals WHERE proposal_id = :p", p=pid) == [("approved",)]
        assert sql(home, "SELECT count(*) FROM executions") == [(0,)]

        # restart, the window still open: the start-up sweep reads the membership back instead of writing
        # again (a failpoint still armed does not fire: nothing is applied)
        svc.start(**({} if kill_expiry else {"GLASSGATE_FAILPOINTS": ""}))
        assert f"recovered proposal {pid}" in svc.log()
        assert sql(home, "SELECT adapter, status FROM executions WHERE proposal_id = :p", p=pid) == [("okta", "applied")]
        assert len(okta.calls("PUT")) == 1
        (result,) = sql(home, "SELECT result FROM proposals WHERE proposal_id = :p", p=pid)
        assert '"iam_status": "already_applied"' in result[0]
        ((due_ms,),) = sql(home, "SELECT due_ms FROM iam_expiries WHERE proposal_id = :p", p=pid)
        assert due_ms == int((t0 + timedelta(minutes=30)).timestamp() * 1000)  # 30 minutes from the approval

        # the clock past the window's end: the expiry task removes the membership from Okta
        svc.stop()
        svc.start(GLASSGATE_NOW=_at(t0 + timedelta(minutes=31)),
                  **({} if kill_expiry else {"GLASSGATE_FAILPOINTS": ""}))
        expiry_status = "already_applied" if kill_expiry else "applied"
        if kill_expiry:  # ... and the process dies before recording it; the next start reconciles
            assert svc.wait_exit(timeout=60) == -signal.SIGKILL
            assert f"failpoint after_iam_call fired for {pid}:end" in svc.log()
            assert "00u1frank" not in okta.groups[GROUP] and len(okta.calls("DELETE")) == 1
            assert sql(home, "SELECT status FROM iam_expiries WHERE proposal_id = :p", p=pid) == [("pending",)]
            svc.start(GLASSGATE_FAILPOINTS="", GLASSGATE_NOW=_at(t0 + timedelta(minutes=31)))
        wait_for(lambda: sql(home, "SELECT status FROM iam_expiries WHERE proposal_id = :p", p=pid) == [("done",)],
                 timeout=60, what="the expiry to be recorded")
        assert "00u1frank" not in okta.groups[GROUP]
        assert len(okta.calls("DELETE")) == 1 and len(okta.calls("PUT")) == 1
        (res,) = sql(home, "SELECT result FROM iam_expiries WHERE proposal_id = :p", p=pid)
        assert f'"status": "{expiry_status}"' in res[0]
        assert sql(home, "SELECT count(*) FROM audit_log WHERE kind = 'action' AND subject_id = :p", p=pid) == [(2,)]
        with svc.client("admin") as c:
            assert c.get("/v1/audit/verify").json()["ok"] is True
            metrics = c.get("/metrics").text
        assert "glassgate_iam_expiries_overdue 0.0" in metrics
        assert 'glassgate_iam_expiries{status="done"} 1.0' in metrics


@pytest.mark.slow
def test_sigkill_after_okta_applied_the_grant_reaches_okta_once_and_the_expiry_removes_it_once(home, okta,
                                                                                                tmp_path):
    _sigkill_after_okta_applied(home, okta, tmp_path, kill_expiry=False)


@pytest.mark.reliability
def test_sigkill_after_okta_applied_the_grant_and_again_after_its_removal(home, okta, tmp_path):
    _sigkill_after_okta_applied(home, okta, tmp_path, kill_expiry=True)
