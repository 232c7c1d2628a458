"""The Entra adapter against a small Entra / Graph on 127.0.0.1: msal's real client credentials flow (its
requests carried to the loopback server), the revokeSignInSessions status quirk, group membership by $ref,
risky users, rate limits, and the executor's reconciliation with it on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agent.approval import Kind
from agent.iam_types import ActionMode, Capabilities, IamAction, IamRequest, IamStatus
from integrations.iam.entra import EntraIam, msal_token_source
from integrations.settings import Settings
from tests.fake_entra import FakeEntra, LoopbackHttp
from tests.iam_support import T0, CrashBeforeCommit, Wall, crash_next_commit, open_store

TENANT = "4f2c1d3e-0000-4aaa-bbbb-7c6d5e4f3a2b"
CLIENT = "8a7b6c5d-1111-4ccc-dddd-0e1f2a3b4c5d"
SECRET = "Qx8~Rk2.Lm5_Vn7-Tp9sWz3YbC6dF1gH4jK0"
GROUP = "c0ffee00-exceptions"
UID = "1b2c3d4e-frank"
CAPS = Capabilities(modes={IamAction.REVOKE_SESSION: ActionMode.APPLY, IamAction.GRANT_EXCEPTION: ActionMode.APPLY,
                           IamAction.END_EXCEPTION: ActionMode.APPLY,
                           IamAction.CONFIRM_DENIAL: ActionMode.CONFIRM_COMPROMISED,
                           IamAction.CONFIRM_BENIGN: ActionMode.DISMISS})


@pytest.fixture
def entra():
    with FakeEntra(tenant=TENANT, client_id=CLIENT, client_secret=SECRET) as fake:
        fake.add_user("frank@contoso.example", uid=UID)
        fake.groups.update({GROUP: set(), "g-a": {UID}, "g-b": {UID}})
        fake.risk[UID] = "atRisk"
        yield fake
        assert fake.problems == []


def settings(secret: str = SECRET) -> Settings:
    return Settings(iam="entra", entra_tenant_id=TENANT, entra_client_id=CLIENT, entra_client_secret=secret,
                    entra_exception_group_id=GROUP)


def adapter(fake, *, secret: str = SECRET, wall=None) -> EntraIam:
    wall = wall or Wall()
    tokens = msal_token_source(settings(secret), http_client=LoopbackHttp(fake))
    return EntraIam(graph_url=fake.url, tokens=tokens, exception_group_id=GROUP, capabilities=CAPS,
                    sleep=wall.sleep, wall=wall)


def req(action, **kw) -> IamRequest:
    return IamRequest(idempotency_key="prop-1", proposal_id="prop-1", action=action, user_id="frank@contoso.example",
                      window_start=T0, **kw)


def test_msal_gets_a_token_by_client_credentials_and_graph_sees_it(entra):
    a = adapter(entra)
    assert a.execute(req(IamAction.GRANT_EXCEPTION), now=T0).status is IamStatus.APPLIED
    (form,) = entra.token_forms
    assert form["grant_type"] == "client_credentials" and form["scope"] == "https://graph.microsoft.com/.default"
    (post,) = entra.calls("POST", f"/v1.0/groups/{GROUP}/members/$ref")
    assert post.body == {"@odata.id": f"{entra.url}/v1.0/directoryObjects/{UID}"}
    assert post.headers["authorization"].removeprefix("Bearer ") in entra.tokens
    # the group sits on the second page of the user's direct groups: found there, not added again
    assert a.execute(req(IamAction.GRANT_EXCEPTION), now=T0).status is IamStatus.ALREADY_APPLIED
    assert len(entra.calls("POST", f"/v1.0/groups/{GROUP}/members/$ref")) == 1
    assert a.execute(req(IamAction.END_EXCEPTION), now=T0).status is IamStatus.APPLIED
    assert a.execute(req(IamAction.END_EXCEPTION), now=T0).status is IamStatus.ALREADY_APPLIED
    assert [c.path for c in entra.calls("DELETE")] == [f"/v1.0/groups/{GROUP}/members/{UID}/$ref"]
    assert len(entra.token_forms) == 1  # msal's token is reused


def test_revoke_accepts_200_value_true_and_is_not_repeated_once_sessions_are_valid_from_after_the_approval(entra):
    a = adapter(entra)
    r = req(IamAction.REVOKE_SESSION, session_id="s-1")
    got = a.execute(r, now=T0)
    assert got.status is IamStatus.APPLIED
    assert a.execute(r, now=T0).status is IamStatus.ALREADY_APPLIED
    assert len(entra.calls("POST", f"/v1.0/users/{UID}/revokeSignInSessions")) == 1


def test_confirm_compromised_and_dismiss_read_the_risk_state_first(entra):
    a = adapter(entra)
    assert a.execute(req(IamAction.CONFIRM_DENIAL), now=T0).status is IamStatus.APPLIED
    assert entra.risk[UID] == "confirmedCompromised"
    assert a.execute(req(IamAction.CONFIRM_DENIAL), now=T0).status is IamStatus.ALREADY_APPLIED
    (c,) = entra.calls("POST", "/v1.0/identityProtection/riskyUsers/confirmCompromised")
    assert c.body == {"userIds": [UID]}
    assert a.execute(req(IamAction.CONFIRM_BENIGN), now=T0).status is IamStatus.APPLIED
    assert entra.risk[UID] == "dismissed"


def test_a_wrong_secret_is_a_final_failure_naming_the_error(entra):
    got = adapter(entra, secret="Wrong~Secret.0000000000000000000000").execute(req(IamAction.GRANT_EXCEPTION), now=T0)
    assert got.status is IamStatus.FAILED and "invalid_client" in (got.error or "")
    assert entra.calls("POST", f"/v1.0/groups/{GROUP}/members/$ref") == []


def test_graph_throttling_with_retry_after_is_waited_out_or_handed_back(entra):
    entra.script["POST"].extend(["ok", {"status": 429, "headers": {"Retry-After": "3"}}])  # token, then the add
    a = adapter(entra)
    assert a.execute(req(IamAction.GRANT_EXCEPTION), now=T0).status is IamStatus.APPLIED
    assert a.http.waits == [3.0]
    entra.script["DELETE"].append({"status": 429, "headers": {"Retry-After": "600"}})
    got = a.execute(req(IamAction.END_EXCEPTION), now=T0)
    assert got.status is IamStatus.TRANSIENT and got.retry_at == T0 + timedelta(seconds=600)
    assert UID in entra.groups[GROUP]


def test_the_executor_reconciles_a_crash_after_graph_applied(entra, db_url, tmp_path, policy):
    store = open_store(db_url, tmp_path, policy)
    store.propose_approved(Kind.GRANT_EXCEPTION, {"user_id": "frank@contoso.example", "resource_id": "payroll-db",
                                                  "duration_hours": 4, "reason": "audit week"})
    crash_next_commit(store.sessions)
    with pytest.raises(CrashBeforeCommit):
        store.sweep(store.bridge(adapter(entra)))
    store = store.reopen()
    (done,) = store.sweep(store.bridge(adapter(entra)))
    assert done.result["iam_status"] == "already_applied"
    assert len(entra.calls("POST", f"/v1.0/groups/{GROUP}/members/$ref")) == 1
    store.clock.advance(hours=4)
    (out,) = store.expire(adapter(entra))
    assert out.status is IamStatus.APPLIED and UID not in entra.groups[GROUP]
    store.db.dispose()
