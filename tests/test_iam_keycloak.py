"""The Keycloak adapter against a small Keycloak on 127.0.0.1: client credentials, compare before write,
logout of sessions older than the approval, rate limits, and the executor with it on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agent.approval import Kind
from agent.iam_types import ActionMode, Capabilities, IamAction, IamRequest, IamStatus
from integrations.iam.keycloak import KeycloakIam
from tests.fake_keycloak import FakeKeycloak
from tests.iam_support import T0, CrashBeforeCommit, Wall, crash_next_commit, open_store

SECRET = "kc-7f3a9b2c1d4e5f60718293a4b5c6d7e8"
GROUP = "5b0c1e7e-exceptions"
UID = "9e1f3c2a-frank"
CAPS = Capabilities(modes={IamAction.REVOKE_SESSION: ActionMode.APPLY, IamAction.GRANT_EXCEPTION: ActionMode.APPLY,
                           IamAction.END_EXCEPTION: ActionMode.APPLY})
T0_MS = int(T0.timestamp() * 1000)


@pytest.fixture
def kc():
    with FakeKeycloak(realm="acme", client_id="glassgate", client_secret=SECRET) as fake:
        fake.users[UID] = "frank"
        fake.groups.update({GROUP: set(), "g-staff": {UID}})
        fake.sessions["kc-s1"] = {"userId": UID, "start": T0_MS - 3_600_000}
        yield fake
        assert fake.problems == []


def adapter(fake, wall=None, **kw) -> KeycloakIam:
    wall = wall or Wall()
    return KeycloakIam(base_url=fake.url, realm="acme", client_id="glassgate", client_secret=SECRET,
                       exception_group_id=GROUP, capabilities=CAPS, sleep=wall.sleep, wall=wall, **kw)


def req(action, **kw) -> IamRequest:
    return IamRequest(idempotency_key="prop-1", proposal_id="prop-1", action=action, user_id="frank",
                      window_start=T0, **kw)


def test_grant_and_end_use_the_group_membership_once_each_with_a_client_credentials_token(kc):
    a = adapter(kc)
    assert a.execute(req(IamAction.GRANT_EXCEPTION), now=T0).status is IamStatus.APPLIED
    assert a.execute(req(IamAction.GRANT_EXCEPTION), now=T0).status is IamStatus.ALREADY_APPLIED
    (put,) = kc.calls("PUT")
    assert put.path == f"/admin/realms/acme/users/{UID}/groups/{GROUP}"
    assert put.headers["authorization"].removeprefix("Bearer ") in kc.tokens
    assert len(kc.calls("POST", kc.token_path)) == 1  # the token is kept while it is valid
    assert a.execute(req(IamAction.END_EXCEPTION), now=T0).status is IamStatus.APPLIED
    assert a.execute(req(IamAction.END_EXCEPTION), now=T0).status is IamStatus.ALREADY_APPLIED
    assert len(kc.calls("DELETE")) == 1 and UID not in kc.groups[GROUP]


def test_revoke_logs_out_sessions_older_than_the_approval_once(kc):
    a = adapter(kc)
    assert a.execute(req(IamAction.REVOKE_SESSION, session_id="kc-s1"), now=T0).status is IamStatus.APPLIED
    (logout,) = kc.calls("POST", f"/admin/realms/acme/users/{UID}/logout")
    assert logout.body is None
    kc.sessions["kc-s2"] = {"userId": UID, "start": T0_MS + 60_000}  # signed in again after the approval
    assert a.execute(req(IamAction.REVOKE_SESSION, session_id="kc-s1"), now=T0).status is IamStatus.ALREADY_APPLIED
    assert len(kc.calls("POST", f"/admin/realms/acme/users/{UID}/logout")) == 1 and "kc-s2" in kc.sessions


def test_an_expired_token_is_replaced_once_and_bad_credentials_are_final(kc):
    a = adapter(kc)
    a.execute(req(IamAction.GRANT_EXCEPTION), now=T0)
    kc.tokens.clear()  # Keycloak restarted: the token is no longer known
    assert a.execute(req(IamAction.END_EXCEPTION), now=T0).status is IamStatus.APPLIED
    assert len(kc.calls("POST", kc.token_path)) == 2
    assert kc.problems == ["GET /admin/realms/acme/users: wrong or missing authentication"]  # the one 401
    kc.problems.clear()
    bad = KeycloakIam(base_url=kc.url, realm="acme", client_id="glassgate", client_secret="wrong-secret-000",
                      exception_group_id=GROUP, capabilities=CAPS)
    got = bad.execute(req(IamAction.GRANT_EXCEPTION), now=T0)
    assert got.status is IamStatus.FAILED and "unauthorized_client" in (got.error or "")


def test_429_with_retry_after_beyond_the_budget_is_transient_with_that_time(kc):
    kc.script["PUT"].append({"status": 429, "headers": {"Retry-After": "120"}})
    got = adapter(kc).execute(req(IamAction.GRANT_EXCEPTION), now=T0)
    assert got.status is IamStatus.TRANSIENT and got.retry_at == T0 + timedelta(seconds=120)
    assert UID not in kc.groups[GROUP]


def test_the_executor_reconciles_a_crash_after_keycloak_applied(kc, db_url, tmp_path, policy):
    store = open_store(db_url, tmp_path, policy)
    pid = store.propose_approved(Kind.GRANT_EXCEPTION, {"user_id": "frank", "resource_id": "payroll-db",
                                                        "duration_hours": 2, "reason": "incident bridge"})
    crash_next_commit(store.sessions)
    with pytest.raises(CrashBeforeCommit):
        store.sweep(store.bridge(adapter(kc)))
    store = store.reopen()
    (done,) = store.sweep(store.bridge(adapter(kc)))
    assert done.result["iam_status"] == "already_applied" and len(kc.calls("PUT")) == 1
    store.clock.advance(hours=2)
    (out,) = store.expire(adapter(kc))
    assert out.status is IamStatus.APPLIED and UID not in kc.groups[GROUP] and store.overdue() == 0
    assert store.expiry(pid).status == "done"
    store.db.dispose()
