"""The Okta adapter against a small Okta on 127.0.0.1, and the executor's exactly-once guarantees with it:
compare before write, reconciliation after a lost answer or a crash before the record (the vendor is never
called twice: the fake counts its calls), rate limits within and beyond the in-call budget, and the removal of
an exception at its end, across a restart. The executor parts run on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.approval import Kind
from agent.iam_types import ActionMode, Capabilities, IamAction, IamRequest, IamStatus
from integrations.iam.okta import OktaIam
from risk.store.control import ExceptionRow
from tests.fake_okta import FakeOkta
from tests.iam_support import T0, CrashBeforeCommit, Wall, crash_next_commit, open_store

TOKEN = "00a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ-okta"
GROUP = "00gZexceptions"  # sorts last: found on the second page of the user's groups
CAPS = Capabilities(modes={IamAction.REVOKE_SESSION: ActionMode.APPLY, IamAction.GRANT_EXCEPTION: ActionMode.APPLY,
                           IamAction.END_EXCEPTION: ActionMode.APPLY, IamAction.CONFIRM_DENIAL: ActionMode.SUSPEND})
GRANT = {"user_id": "frank@example.com", "resource_id": "payroll-db", "duration_hours": 8, "reason": "quarter close"}


@pytest.fixture
def okta():
    with FakeOkta(token=TOKEN) as fake:
        fake.add_user("frank@example.com", uid="00u1frank")
        fake.add_user("gina@example.com", uid="00u2gina")
        fake.groups.update({GROUP: set(), "00g0everyone": {"00u1frank"}, "00g2finance": {"00u1frank"},
                            "00g3vpn": {"00u1frank"}})
        fake.sessions["102sessFRANK"] = "00u1frank"
        yield fake
        assert fake.problems == []


def adapter(fake: FakeOkta, wall: Wall | None = None, *, budget: float = 10.0, timeout: float = 2.0) -> OktaIam:
    wall = wall or Wall()
    return OktaIam(org_url=fake.url, api_token=TOKEN, exception_group_id=GROUP, capabilities=CAPS,
                   budget_s=budget, timeout=timeout, sleep=wall.sleep, wall=wall)


def req(action: IamAction, **kw) -> IamRequest:
    return IamRequest(idempotency_key="prop-1", proposal_id="prop-1", action=action, window_start=T0, **kw)


# ----------------------------------------------------------------------------- the adapter alone


def test_grant_reads_membership_then_puts_once_with_the_ssws_token(okta):
    a = adapter(okta)
    got = a.execute(req(IamAction.GRANT_EXCEPTION, user_id="frank@example.com"), now=T0)
    assert got.status is IamStatus.APPLIED and got.detail["okta_user_id"] == "00u1frank"
    (put,) = okta.calls("PUT")
    assert put.path == f"/api/v1/groups/{GROUP}/users/00u1frank" and put.body is None
    assert put.headers["authorization"] == f"SSWS {TOKEN}" and put.headers["accept"] == "application/json"
    assert "00u1frank" in okta.groups[GROUP]
    # the user's groups span two pages (Link rel="next"): the group is found on the second, nothing written
    again = a.execute(req(IamAction.GRANT_EXCEPTION, user_id="frank@example.com"), now=T0)
    assert again.status is IamStatus.ALREADY_APPLIED and len(okta.calls("PUT")) == 1
    assert len(okta.calls("GET", "/api/v1/users/00u1frank/groups")) == 4


def test_end_exception_deletes_the_membership_once(okta):
    okta.groups[GROUP].add("00u2gina")
    a = adapter(okta)
    assert a.execute(req(IamAction.END_EXCEPTION, user_id="gina@example.com"), now=T0).status is IamStatus.APPLIED
    assert a.execute(req(IamAction.END_EXCEPTION, user_id="gina@example.com"), now=T0).status is \
        IamStatus.ALREADY_APPLIED
    assert [c.path for c in okta.calls("DELETE")] == [f"/api/v1/groups/{GROUP}/users/00u2gina"]


def test_revoke_clears_the_users_sessions_and_oauth_tokens_once(okta):
    a = adapter(okta)
    r = req(IamAction.REVOKE_SESSION, user_id="frank@example.com", session_id="102sessFRANK")
    assert a.execute(r, now=T0).status is IamStatus.APPLIED
    (d,) = okta.calls("DELETE")
    assert d.path == "/api/v1/users/00u1frank/sessions" and d.query == {"oauthTokens": ["true"]}
    assert a.execute(r, now=T0).status is IamStatus.ALREADY_APPLIED  # the session is gone: nothing to clear
    assert len(okta.calls("DELETE")) == 1


def test_confirm_denial_suspends_an_active_user_once(okta):
    a = adapter(okta)
    r = req(IamAction.CONFIRM_DENIAL, user_id="gina@example.com")
    assert a.execute(r, now=T0).status is IamStatus.APPLIED
    assert a.execute(r, now=T0).status is IamStatus.ALREADY_APPLIED
    assert [c.path for c in okta.calls("POST")] == ["/api/v1/users/00u2gina/lifecycle/suspend"]
    assert okta.users["00u2gina"]["status"] == "SUSPENDED"


def test_an_unknown_user_is_a_final_failure_with_oktas_error(okta):
    got = adapter(okta).execute(req(IamAction.GRANT_EXCEPTION, user_id="nobody@example.com"), now=T0)
    assert got.status is IamStatus.FAILED and "E0000007" in (got.error or "") and got.detail["http_status"] == 404
    assert okta.calls("PUT") == []


def test_a_rate_limit_within_the_budget_waits_until_x_rate_limit_reset_then_applies(okta):
    wall = Wall()
    okta.script["PUT"].append({"status": 429, "headers": {"X-Rate-Limit-Limit": "600", "X-Rate-Limit-Remaining": "0",
                                                          "X-Rate-Limit-Reset": str(int(wall.t) + 3)}})
    a = adapter(okta, wall)
    got = a.execute(req(IamAction.GRANT_EXCEPTION, user_id="frank@example.com"), now=T0)
    assert got.status is IamStatus.APPLIED
    assert a.http.waits == [3.0]  # exactly until the reset
    assert len(okta.calls("PUT")) == 2 and "00u1frank" in okta.groups[GROUP]


def test_retry_after_is_honoured_and_a_wait_beyond_the_budget_is_handed_back(okta):
    wall = Wall()
    okta.script["PUT"].append({"status": 503, "headers": {"Retry-After": "2"}})
    a = adapter(okta, wall)
    assert a.execute(req(IamAction.GRANT_EXCEPTION, user_id="frank@example.com"), now=T0).status is IamStatus.APPLIED
    assert a.http.waits == [2.0]
    okta.groups[GROUP].clear()
    okta.script["PUT"].append({"status": 429, "headers": {"X-Rate-Limit-Reset": str(int(wall.t) + 60)}})
    got = a.execute(req(IamAction.GRANT_EXCEPTION, user_id="frank@example.com"), now=T0)
    assert got.status is IamStatus.TRANSIENT and got.retry_at == T0 + timedelta(seconds=60)
    assert a.http.waits == [2.0]  # no wait beyond the 10 s budget
    assert "00u1frank" not in okta.groups[GROUP]


def test_repeated_5xx_and_timeouts_end_transient_after_the_bounded_attempts(okta):
    okta.hang_s = 0.6
    okta.script["PUT"].extend(["timeout", 500, 502, 500])
    a = adapter(okta, timeout=0.3)
    got = a.execute(req(IamAction.GRANT_EXCEPTION, user_id="frank@example.com"), now=T0)
    assert got.status is IamStatus.TRANSIENT and got.retry_at is not None
    assert len(okta.calls("PUT")) == 4 and "00u1frank" not in okta.groups[GROUP]


def test_a_lost_answer_is_retried_from_the_read_and_never_written_twice(okta):
    okta.script["PUT"].append("drop")  # Okta applied the PUT; the answer never arrived
    a = adapter(okta)
    got = a.execute(req(IamAction.GRANT_EXCEPTION, user_id="frank@example.com"), now=T0)
    assert got.status is IamStatus.ALREADY_APPLIED
    assert len(okta.calls("PUT")) == 1


# ----------------------------------------------------------------------------- through the executor


def test_an_approved_grant_reaches_okta_once_and_its_end_removes_it_once_across_a_restart(okta, db_url, tmp_path,
                                                                                             policy):
    store = open_store(db_url, tmp_path, policy)
    vendor = adapter(okta)
    iam = store.bridge(vendor)
    pid = store.propose_approved(Kind.GRANT_EXCEPTION, GRANT)
    (done,) = store.sweep(iam)
    assert done.status.value == "applied" and done.result["iam_status"] == "applied"
    assert done.result["approvers"] == ["bob"] and done.result["exception_id"].startswith("exc-")
    assert store.execution(pid).adapter == "okta"
    assert store.count(ExceptionRow) == 1  # glassgate's own record of the same exception
    assert store.sweep(iam) == [] and len(okta.calls("PUT")) == 1
    exp = store.expiry(pid)
    assert exp.status == "pending" and exp.due_ms == int((T0 + timedelta(hours=8)).timestamp() * 1000)

    store.clock.advance(hours=7, minutes=59)
    assert store.expire(vendor) == [] and store.overdue() == 0 and okta.calls("DELETE") == []

    store = store.reopen()  # a restart before the end: the expiry is in the database, not in memory
    store.clock.advance(minutes=2)
    assert store.overdue() == 1
    vendor = adapter(okta)
    (out,) = store.expire(vendor)
    assert out.status is IamStatus.APPLIED and store.overdue() == 0
    assert [c.path for c in okta.calls("DELETE")] == [f"/api/v1/groups/{GROUP}/users/00u1frank"]
    assert "00u1frank" not in okta.groups[GROUP]
    assert store.expire(vendor) == [] and len(okta.calls("DELETE")) == 1
    assert store.expiry(pid).status == "done"
    audited = store.audit(pid)
    assert [a.get("kind") for a in audited] == ["grant_exception", "end_exception"]
    assert audited[-1]["status"] == "applied" and audited[-1]["adapter"] == "okta"
    store.db.dispose()


def test_a_crash_after_okta_applied_and_before_the_record_reconciles_without_a_second_call(okta, db_url, tmp_path,
                                                                                            policy):
    store = open_store(db_url, tmp_path, policy)
    iam = store.bridge(adapter(okta))
    pid = store.propose_approved(Kind.GRANT_EXCEPTION, GRANT)
    crash_next_commit(store.sessions)
    with pytest.raises(CrashBeforeCommit):
        store.sweep(iam)
    assert "00u1frank" in okta.groups[GROUP] and len(okta.calls("PUT")) == 1  # Okta has it; glassgate does not
    assert store.status(pid) == "approved" and store.execution(pid) is None

    store = store.reopen()
    (done,) = store.sweep(store.bridge(adapter(okta)))
    assert done.status.value == "applied" and done.result["iam_status"] == "already_applied"
    assert len(okta.calls("PUT")) == 1  # reconciled by reading the membership back
    assert store.expiry(pid).status == "pending"
    store.db.dispose()


def test_a_crash_after_okta_removed_the_membership_reconciles_the_expiry(okta, db_url, tmp_path, policy):
    store = open_store(db_url, tmp_path, policy)
    vendor = adapter(okta)
    pid = store.propose_approved(Kind.GRANT_EXCEPTION, GRANT)
    store.sweep(store.bridge(vendor))
    store.clock.advance(hours=9)
    crash_next_commit(store.sessions)
    with pytest.raises(CrashBeforeCommit):
        store.expire(vendor)
    assert "00u1frank" not in okta.groups[GROUP] and store.expiry(pid).status == "pending" and store.overdue() == 1
    (out,) = store.expire(vendor)
    assert out.status is IamStatus.ALREADY_APPLIED and len(okta.calls("DELETE")) == 1
    assert store.overdue() == 0
    store.db.dispose()


def test_a_rate_limit_beyond_the_budget_leaves_it_approved_with_its_next_attempt_stored(okta, db_url, tmp_path,
                                                                                         policy):
    store = open_store(db_url, tmp_path, policy)
    wall = Wall(store.clock().timestamp())
    reset = int(wall.t) + 300
    okta.script["PUT"].append({"status": 429, "headers": {"X-Rate-Limit-Reset": str(reset)}})
    iam = store.bridge(adapter(okta, wall))
    pid = store.propose_approved(Kind.GRANT_EXCEPTION, GRANT)
    assert store.sweep(iam) == []
    assert store.status(pid) == "approved" and store.execution(pid) is None
    assert store.attempts(pid) == [("transient", reset * 1000)]
    (audited,) = store.audit(pid)
    assert audited["status"] == "transient" and audited["next_attempt_at"] == \
        datetime.fromtimestamp(reset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    puts = len(okta.calls("PUT"))
    store.clock.advance(seconds=299)
    assert store.sweep(iam) == [] and len(okta.calls("PUT")) == puts  # not due: Okta is not even asked
    store.clock.advance(seconds=1)
    (done,) = store.sweep(iam)
    assert done.status.value == "applied" and len(okta.calls("PUT")) == puts + 1
    assert [a for a, _ in store.attempts(pid)] == ["transient", "applied"]
    store.db.dispose()


def test_an_expiry_while_okta_is_down_stays_overdue_and_is_retried(okta, db_url, tmp_path, policy):
    store = open_store(db_url, tmp_path, policy)
    vendor = adapter(okta, budget=0.5)
    store.propose_approved(Kind.GRANT_EXCEPTION, GRANT)
    store.sweep(store.bridge(vendor))
    store.clock.advance(hours=8)
    okta.script["DELETE"].extend([503, 503])  # both attempts the 0.5 s budget allows
    (out,) = store.expire(vendor)
    assert out.status is IamStatus.TRANSIENT and store.overdue() == 1 and "00u1frank" in okta.groups[GROUP]
    assert store.expire(vendor) == []  # its next attempt is not due yet
    store.clock.t = out.retry_at
    (out,) = store.expire(vendor)
    assert out.status is IamStatus.APPLIED and store.overdue() == 0 and "00u1frank" not in okta.groups[GROUP]
    store.db.dispose()


def test_a_final_refusal_marks_the_proposal_failed_with_oktas_error(okta, db_url, tmp_path, policy):
    store = open_store(db_url, tmp_path, policy)
    pid = store.propose_approved(Kind.GRANT_EXCEPTION, {**GRANT, "user_id": "nobody@example.com"})
    (done,) = store.sweep(store.bridge(adapter(okta)))
    assert done.status.value == "failed" and "E0000007" in done.result["detail"]
    assert store.expiry(pid) is None and store.count(ExceptionRow) == 0
    assert [a for a, _ in store.attempts(pid)] == ["failed"]
    store.db.dispose()


def test_a_revocation_finds_the_sessions_user_in_the_decision_store(okta, db_url, tmp_path, policy):
    store = open_store(db_url, tmp_path, policy)
    store.add_decision(decision_id="dec-1", session_id="102sessFRANK", user_id="frank@example.com")
    pid = store.propose_approved(Kind.REVOKE_SESSION, {"session_id": "102sessFRANK", "reason": "token theft"})
    (done,) = store.sweep(store.bridge(adapter(okta)))
    assert done.status.value == "applied" and done.result["iam"]["okta_user_id"] == "00u1frank"
    assert [c.path for c in okta.calls("DELETE")] == ["/api/v1/users/00u1frank/sessions"]
    assert store.execution(pid).status == "applied"
    store.db.dispose()


def test_oauth_private_key_jwt_gets_a_bearer_token_the_management_api_accepts(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from integrations.iam.okta import private_key_jwt_auth

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with FakeOkta(token=TOKEN, client_id="0oa1glassgate", public_key_pem=pub) as fake:
        fake.add_user("frank@example.com", uid="00u1frank")
        fake.groups[GROUP] = set()
        auth = private_key_jwt_auth(org_url=fake.url, client_id="0oa1glassgate", private_key_pem=pem, key_id="k1")
        a = OktaIam(org_url=fake.url, auth=auth, exception_group_id=GROUP, capabilities=CAPS)
        assert a.execute(req(IamAction.GRANT_EXCEPTION, user_id="frank@example.com"), now=T0).status is \
            IamStatus.APPLIED
        (put,) = fake.calls("PUT")
        assert put.headers["authorization"].removeprefix("Bearer ") in fake.bearer
        assert len(fake.calls("POST", "/oauth2/v1/token")) == 1
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        bad = OktaIam(org_url=fake.url, exception_group_id=GROUP, capabilities=CAPS,
                      auth=private_key_jwt_auth(org_url=fake.url, client_id="0oa1glassgate", private_key_pem=other))
        got = bad.execute(req(IamAction.END_EXCEPTION, user_id="frank@example.com"), now=T0)
        assert got.status is IamStatus.FAILED and "invalid_client" in (got.error or "")
        assert fake.problems == [] and len(fake.calls("DELETE")) == 0
