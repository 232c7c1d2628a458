"""The HTTP API over real HTTP on 127.0.0.1: events, decisions, timelines, verdicts, health, and refusals."""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from integrations.api import create_app
from integrations.runtime import Runtime
from integrations.settings import Settings
from tests.apiserver import PRINCIPAL_OF, ROLES, Api, make_home, serving, wait_for
from tests.apiserver import fields as _fields
from tests.apiserver import problem as _problem


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    h = make_home(tmp_path_factory.mktemp("svc"))
    assert not any(t in h.config.read_text() for t in h.tokens.values())  # only hashes are stored
    app = create_app(h.runtime())
    seeded, fresh = h.events(-120, -60), h.events(-60)
    with serving(app) as base:
        a = Api(base=base, home=h.home, tokens={r: h.tokens[r] for r in ROLES}, events=fresh, seeded=seeded,
                app=app)
        with a.client("ingest") as c:
            r = c.post("/v1/events:batch", json={"events": seeded})
            assert r.status_code == 200, r.text
            assert all(x["status"] == 201 for x in r.json()["results"])
        yield a


# ----------------------------------------------------------------------------- events


def test_post_event_is_idempotent_and_conflicts_on_a_different_body(api):
    ev = api.take()
    before = api.counts()
    with api.client("ingest") as c:
        r1 = c.post("/v1/events", json=ev)
        assert r1.status_code == 201, r1.text
        out = r1.json()
        assert set(out) == {"decision", "explanation"}
        assert out["decision"]["event_id"] == ev["event_id"]
        assert out["decision"]["outcome"] in ("allow", "step_up", "deny")
        assert out["explanation"]["factors"]
        assert api.counts()[:2] == (before[0] + 1, before[1] + 1)

        r2 = c.post("/v1/events", json=ev)
        assert r2.status_code == 200, r2.text
        assert r2.json() == out  # the first decision, unchanged

        changed = copy.deepcopy(ev)
        changed["activity"]["bytes_out"] += 1
        p = _problem(c.post("/v1/events", json=changed), 409)
        assert _fields(p) == {"event_id"}
        assert p["decision_id"] == out["decision"]["decision_id"]
    assert api.counts()[:2] == (before[0] + 1, before[1] + 1)
    stored = api.sql("SELECT decision_id, outcome FROM decisions WHERE event_id = :e", e=ev["event_id"])
    assert stored == [(out["decision"]["decision_id"], out["decision"]["outcome"])]


def test_invalid_event_is_422_naming_each_field_and_stores_nothing(api):
    ev = api.take()
    ev["network"].pop("lon", None)
    ev["network"]["lat"] = 52.5
    ev["auth"]["failed_attempts_1h"] = -3
    ev["surprise"] = True
    before = api.counts()
    with api.client("admin") as c:
        p = _problem(c.post("/v1/events", json=ev), 422)
    assert _fields(p) == {"network.lon", "auth.failed_attempts_1h", "surprise"}
    assert api.counts() == before
    assert api.sql("SELECT count(*) FROM decisions WHERE event_id = :e", e=ev["event_id"])[0][0] == 0


def test_batch_answers_per_item_in_order_and_stores_only_the_good_ones(api):
    good1, bad, good2 = api.take(), api.take(), api.take()
    bad["resource"]["kind"] = "mainframe"
    del bad["user"]["privileged"]
    before = api.counts()
    with api.client("ingest") as c:
        r = c.post("/v1/events:batch", json={"events": [good1, bad, good2, good1]})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["index"] for x in res] == [0, 1, 2, 3]
    assert [x["status"] for x in res] == [201, 422, 201, 200]
    assert res[0]["decision"]["event_id"] == good1["event_id"]
    assert res[2]["decision"]["event_id"] == good2["event_id"]
    assert res[3]["decision"] == res[0]["decision"] and res[3]["created"] is False
    assert set(res[1]["error"]["fields"]) == {"resource.kind", "user.privileged"}
    assert "decision" not in res[1]
    assert api.counts()[0] == before[0] + 2
    ids = {r[0] for r in api.sql("SELECT event_id FROM decisions")}
    assert {good1["event_id"], good2["event_id"]} <= ids and bad["event_id"] not in ids


def test_batch_over_the_limit_or_malformed_is_refused_whole(api):
    before = api.counts()
    with api.client("ingest") as c:
        p = _problem(c.post("/v1/events:batch", json={"events": [api.events[0]] * 1001}), 422)
        assert _fields(p) == {"events"} and "1001" in p["errors"][0]["message"]
        p = _problem(c.post("/v1/events:batch", json={"events": [], "extra": 1}), 422)
        assert _fields(p) == {"extra"}
        p = _problem(c.post("/v1/events:batch", json=[api.events[0]]), 422)
        assert _fields(p) == {"(body)"}
        p = _problem(c.post("/v1/events:batch", json={"events": "nope"}), 422)
        assert _fields(p) == {"events"}
    assert api.counts() == before


def test_oversized_bodies_are_413_declared_or_streamed(api):
    ev = api.take()
    ev["device"]["user_agent"] = "x" * (1024 * 1024)
    body = json.dumps(ev).encode()
    before = api.counts()
    with api.client("ingest") as c:
        _problem(c.post("/v1/events", content=body, headers={"content-type": "application/json"}), 413)

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
            for i in range(0, len(body), 64 * 1024):
                yield body[i:i + 64 * 1024]

        _problem(c.post("/v1/events", content=chunks(), headers={"content-type": "application/json"}), 413)
        with api.client("analyst") as a:
            _problem(a.post("/v1/decisions/dec-x/verdict", content=b'{"note": "' + b"n" * 70_000 + b'"}'), 413)
    assert api.counts() == before


@pytest.mark.parametrize("body", [b'{"event_id": "evt-x", ', b"", b"\xff\xfe{}", b"not json", b"[1, 2"])
def test_malformed_json_is_a_400_problem(api, body):
    before = api.counts()
    for role, path in (("admin", "/v1/events"), ("admin", "/v1/events:batch"), ("analyst", "/v1/decisions/dec-x/verdict")):
        with api.client(role) as c:
            p = _problem(c.post(path, content=body, headers={"content-type": "application/json"}), 400)
            assert p["type"].endswith("malformed-json")
    assert api.counts() == before


@pytest.mark.parametrize("body", [[], 42, "event", None, {"event_id": 7}])
def test_wrong_shapes_are_422_never_5xx(api, body):
    before = api.counts()
    with api.client("admin") as c:
        p = _problem(c.post("/v1/events", content=json.dumps(body), headers={"content-type": "application/json"}), 422)
        assert p["errors"]
    assert api.counts() == before


# ----------------------------------------------------------------------------- decisions


def test_decisions_list_filters_agree_with_sql(api):
    user, n = api.sql("SELECT user_id, count(*) c FROM decisions GROUP BY user_id ORDER BY c DESC, user_id")[0]
    assert n >= 2
    with api.client("analyst") as c:
        r = c.get("/v1/decisions", params={"user": user, "limit": 100})
        assert r.status_code == 200, r.text
        got = r.json()
        want = api.sql("SELECT decision_id FROM decisions WHERE user_id = :u ORDER BY ts_ms DESC, seq DESC", u=user)
        assert [d["decision_id"] for d in got["decisions"]] == [w[0] for w in want]
        assert got["total"] == n and got["next_cursor"] is None

        resource = api.sql("SELECT resource_id FROM decisions GROUP BY resource_id ORDER BY count(*) DESC")[0][0]
        for outcome in ("allow", "step_up", "deny"):
            r = c.get("/v1/decisions", params={"resource": resource, "outcome": outcome, "limit": 100})
            assert r.status_code == 200, r.text
            want = {w[0] for w in api.sql("SELECT decision_id FROM decisions WHERE resource_id = :r AND outcome = :o",
                                          r=resource, o=outcome)}
            assert {d["decision_id"] for d in r.json()["decisions"]} == want
            assert all(d["outcome"] == outcome and d["resource_id"] == resource for d in r.json()["decisions"])

        ts = sorted(r[0] for r in api.sql("SELECT ts_ms FROM decisions"))
        lo, hi = ts[len(ts) // 4], ts[3 * len(ts) // 4]
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(lo // 1000)) + f".{lo % 1000:03d}Z"
        until = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(hi // 1000)) + f".{hi % 1000:03d}Z"
        r = c.get("/v1/decisions", params={"since": since, "until": until, "limit": 100})
        assert r.status_code == 200, r.text
        want = {w[0] for w in api.sql("SELECT decision_id FROM decisions WHERE ts_ms >= :a AND ts_ms < :b", a=lo, b=hi)}
        assert want and {d["decision_id"] for d in r.json()["decisions"]} == want


def test_decisions_pages_cover_everything_once_in_order(api):
    want = [w[0] for w in api.sql("SELECT decision_id FROM decisions ORDER BY ts_ms DESC, seq DESC")]
    seen: list[str] = []
    cursor = None
    with api.client("policy_owner") as c:
        for _ in range(len(want)):
            params: dict[str, Any] = {"limit": 7}
            if cursor:
                params["cursor"] = cursor
            r = c.get("/v1/decisions", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            assert page["total"] == len(want)
            assert len(page["decisions"]) <= 7
            seen += [d["decision_id"] for d in page["decisions"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == want


def test_decisions_bad_query_is_422_naming_the_parameter(api):
    with api.client("analyst") as c:
        assert _fields(_problem(c.get("/v1/decisions", params={"outcome": "maybe"}), 422)) == {"outcome"}
        assert _fields(_problem(c.get("/v1/decisions", params={"limit": 0}), 422)) == {"limit"}
        assert _fields(_problem(c.get("/v1/decisions", params={"since": "yesterday-ish"}), 422)) == {"since"}
        assert _fields(_problem(c.get("/v1/decisions", params={"cursor": "!!"}), 422)) == {"cursor"}
        p = _problem(c.get("/v1/decisions", params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}),
                     422)
        assert _fields(p) == {"until"}


def test_get_decision_and_timeline(api):
    ev = api.seeded[0]
    did = api.sql("SELECT decision_id FROM decisions WHERE event_id = :e", e=ev["event_id"])[0][0]
    with api.client("analyst") as c:
        r = c.get(f"/v1/decisions/{did}")
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["decision"]["decision_id"] == did and got["event"]["event_id"] == ev["event_id"]
        assert got["explanation"]["factors"]
        p = _problem(c.get("/v1/decisions/dec-does-not-exist"), 404)
        assert "dec-does-not-exist" in p["detail"]

        r = c.get(f"/v1/sessions/{ev['session_id']}/timeline")
        assert r.status_code == 200, r.text
        n = api.sql("SELECT count(*) FROM decisions WHERE session_id = :s", s=ev["session_id"])[0][0]
        assert len(r.json()["steps"]) == n
        _problem(c.get("/v1/sessions/no-such-session/timeline"), 404)


def test_verdict_is_recorded_with_an_audit_entry(api):
    did = api.sql("SELECT decision_id FROM decisions ORDER BY seq LIMIT 1")[0][0]
    before = api.counts()
    with api.client("analyst") as c:
        r = c.post(f"/v1/decisions/{did}/verdict", json={"verdict": "malicious", "attack_type": "credential_stuffing",
                                                          "note": "confirmed with the user"})
        assert r.status_code == 201, r.text
        assert r.json()["analyst"] == "ana"
        assert api.sql("SELECT verdict, attack_type, analyst, note FROM verdicts WHERE decision_id = :d", d=did) == [
            ("malicious", "credential_stuffing", "ana", "confirmed with the user")]
        audit = api.sql("SELECT kind, payload FROM audit_log WHERE seq = :s", s=r.json()["audit_seq"])
        assert audit[0][0] == "verdict"
        assert json.loads(audit[0][1]) == {"decision_id": did, "verdict": "malicious",
                                           "attack_type": "credential_stuffing", "analyst": "ana",
                                           "note": "confirmed with the user", "verdict_id": r.json()["verdict_id"],
                                           "supersedes": []}
        assert api.counts() == (before[0], before[1], before[2] + 1, before[3] + 1)

        after = api.counts()
        _problem(c.post("/v1/decisions/dec-nope/verdict", json={"verdict": "benign"}), 404)
        assert _fields(_problem(c.post(f"/v1/decisions/{did}/verdict", json={"verdict": "meh"}), 422)) == {"verdict"}
        p = _problem(c.post(f"/v1/decisions/{did}/verdict", json={"verdict": "benign", "analyst": "mallory"}), 422)
        assert _fields(p) == {"analyst"}  # who gave the verdict comes from the token, never the body
        assert api.counts() == after

        # the same analyst changes their mind: a new current verdict, the first kept and marked superseded
        again = c.post(f"/v1/decisions/{did}/verdict", json={"verdict": "benign", "note": "it was the user after all"})
        assert again.status_code == 201 and again.json()["supersedes"] == [r.json()["verdict_id"]]
        assert api.sql("SELECT verdict, superseded_by FROM verdicts WHERE decision_id = :d ORDER BY id", d=did) == [
            ("malicious", again.json()["verdict_id"]), ("benign", None)]
    with api.client("admin") as c:  # an admin does not label decisions
        p = _problem(c.post(f"/v1/decisions/{did}/verdict", json={"verdict": "benign"}), 403)
        assert "analyst" in p["detail"] and "policy_owner" in p["detail"]


# ----------------------------------------------------------------------------- authentication and roles


def _endpoints(api: Api) -> list[tuple[str, str, Any, tuple[str, ...]]]:
    """(method, path, json body, roles that must be refused with 403) for every endpoint except health."""
    ev = api.events[-1]  # valid and not yet stored: a refusal must be the token's doing
    did = api.sql("SELECT decision_id FROM decisions ORDER BY seq LIMIT 1")[0][0]
    sid = api.seeded[0]["session_id"]
    return [
        ("POST", "/v1/events", ev, ("analyst", "policy_owner")),
        ("POST", "/v1/events:batch", {"events": [ev]}, ("analyst", "policy_owner")),
        ("GET", "/v1/decisions", None, ("ingest",)),
        ("GET", f"/v1/decisions/{did}", None, ("ingest",)),
        ("GET", f"/v1/sessions/{sid}/timeline", None, ("ingest",)),
        ("POST", f"/v1/decisions/{did}/verdict", {"verdict": "benign"}, ("ingest", "admin")),
        ("GET", "/metrics", None, ("ingest",)),
    ]


def test_every_endpoint_refuses_missing_wrong_and_underprivileged_tokens(api):
    before = api.counts()
    wrong = [None, secrets.token_urlsafe(32), api.tokens["admin"] + "x", ""]
    for method, path, body, refused in _endpoints(api):
        for tok in wrong:
            with api.client(token=tok) as c:
                r = c.request(method, path, json=body)
            p = _problem(r, 401)
            assert r.headers["www-authenticate"].lower().startswith("bearer"), (path, tok)
            assert p["type"].endswith("unauthenticated")
        with api.client() as c:  # another scheme with a valid token
            _problem(c.request(method, path, json=body, headers={"Authorization": f"Basic {api.tokens['admin']}"}), 401)
        for role in refused:
            with api.client(role) as c:
                p = _problem(c.request(method, path, json=body), 403)
            assert PRINCIPAL_OF[role] in p["detail"]
    assert api.counts() == before


def test_auth_comes_before_the_body_is_read(api):
    before = api.counts()
    with api.client() as c:
        _problem(c.post("/v1/events", content=b"{not json"), 401)
        _problem(c.post("/v1/events", content=b"x" * (2 * 1024 * 1024)), 401)
    with api.client("analyst") as c:
        _problem(c.post("/v1/events", content=b"{not json"), 403)
    assert api.counts() == before


def test_allowed_roles_get_through(api):
    for role in ("analyst", "policy_owner", "admin"):
        with api.client(role) as c:
            assert c.get("/v1/decisions", params={"limit": 1}).status_code == 200
    with api.client("admin") as c:
        r = c.post("/v1/events", json=api.take())
        assert r.status_code == 201, r.text


# ----------------------------------------------------------------------------- health and the contract


def test_health_and_readiness_need_no_token(api):
    with api.client() as c:
        r = c.get("/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        assert set(r.json()["checks"]) == {"database", "model", "policy"}


def test_readiness_names_what_is_missing(tmp_path):
    rt = Runtime(Settings(home=tmp_path / "empty-home", database_url=None))
    with serving(rt) as base, httpx.Client(base_url=base) as c:
        p = _problem(c.get("/readyz"), 503)
    assert p["not_ready"] == ["model"]
    assert "model" in p["detail"]


def test_unknown_routes_and_methods_are_problems(api):
    with api.client("admin") as c:
        _problem(c.get("/v1/nothing-here"), 404)
        _problem(c.delete("/v1/events"), 405)


def test_openapi_lists_the_paths(api):
    with httpx.Client(base_url=api.base) as c:
        r = c.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {"/v1/events", "/v1/events:batch", "/v1/decisions", "/v1/decisions/{decision_id}",
            "/v1/decisions/{decision_id}/verdict", "/v1/sessions/{session_id}/timeline", "/healthz",
            "/readyz"} <= set(paths)
    assert "post" in paths["/v1/events"] and "requestBody" in paths["/v1/events"]["post"]
    # the bearer scheme is declared, on exactly the operations that refuse a request without a token
    doc = r.json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"] == {**doc["components"]["securitySchemes"]["HTTPBearer"],
                                                                   "type": "http", "scheme": "bearer"}
    secured = {(p, m) for p, ops in paths.items() for m, op in ops.items() if op.get("security") == [{"HTTPBearer": []}]}
    open_ = {(p, m) for p, ops in paths.items() for m in ops} - secured
    signed_deliveries = {("/v1/ingest/okta", "get"), ("/v1/ingest/okta", "post"), ("/v1/ingest/entra", "post"),
                         ("/v1/ingest/ocsf", "post")}  # vendor pushes: their own signatures, no bearer token
    assert open_ == {("/healthz", "get"), ("/readyz", "get"), ("/v1/webhooks/tickets", "post")} | signed_deliveries
    with httpx.Client(base_url=api.base) as c:
        for p, m in sorted(secured):
            path = p.replace("{decision_id}", "x").replace("{session_id}", "x").replace("{proposal_id}", "x") \
                .replace("{policy_id}", "x").replace("{ticket_id}", "x")
            assert c.request(m.upper(), path).status_code == 401, (m, p)


def test_paging_steps_through_decisions_at_the_same_instant(api):
    base = api.take()
    ties = []
    for i in range(8):
        ev = copy.deepcopy(base)
        ev["event_id"] = f"evt-tie-{i:02d}"
        ev["user"]["id"] = "tie-user"
        ev["session_id"] = "s-tie"
        ties.append(ev)
    with api.client("ingest") as c:
        r = c.post("/v1/events:batch", json={"events": ties})
        assert [x["status"] for x in r.json()["results"]] == [201] * 8
    want = [w[0] for w in api.sql("SELECT decision_id FROM decisions WHERE user_id = 'tie-user' "
                                  "ORDER BY ts_ms DESC, seq DESC")]
    assert len(want) == 8 and len({r[0] for r in api.sql("SELECT ts_ms FROM decisions WHERE user_id = 'tie-user'")}) == 1
    seen: list[str] = []
    cursor = None
    with api.client("analyst") as c:
        for _ in range(10):
            r = c.get("/v1/decisions", params={"user": "tie-user", "limit": 3, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            seen += [d["decision_id"] for d in r.json()["decisions"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
    assert seen == want


# ----------------------------------------------------------------------------- concurrent ingestion

def test_concurrent_posts_share_one_chunk_and_each_gets_its_own_decision(api):
    """Requests arriving while the writer is busy are decided together, in one engine chunk, and each
    request still gets exactly its own results; the same event posted at once by several clients is
    decided once (one 201, the rest 200 with the same decision)."""
    fresh = [api.take() for _ in range(6)]
    dup = api.take()
    bodies = [*fresh, dup, dup, dup]
    group = api.app.state.group_commit
    before_batches, before = dict(group.batches), api.counts()
    api.app.state.write_lock.acquire()  # the writer is busy: requests queue up behind it
    try:
        pool = ThreadPoolExecutor(max_workers=len(bodies))
        clients = [api.client("ingest") for _ in bodies]
        futures = [pool.submit(c.post, "/v1/events", json=b) for c, b in zip(clients, bodies, strict=True)]
        wait_for(lambda: len(group._pending) == len(bodies), what="every request to be queued")
    finally:
        api.app.state.write_lock.release()
    responses = [f.result(timeout=60) for f in futures]
    pool.shutdown()
    for c in clients:
        c.close()
    assert {k: v - before_batches.get(k, 0) for k, v in group.batches.items()
            if v != before_batches.get(k, 0)} == {len(bodies): 1}  # one shared chunk
    for body, r in zip(bodies[:6], responses[:6], strict=True):
        assert r.status_code == 201, r.text
        assert r.json()["decision"]["event_id"] == body["event_id"]
    dups = responses[6:]
    assert sorted(r.status_code for r in dups) == [200, 200, 201]
    assert len({json.dumps(r.json(), sort_keys=True) for r in dups}) == 1
    assert api.counts()[:2] == (before[0] + 7, before[1] + 7)


class _Breaks:
    """The real engine, except that a chunk holding the event ``boom_id`` fails as a bug would."""

    def __init__(self, engine: Any, boom_id: str):
        self.engine, self.boom_id = engine, boom_id

    def score_many(self, raws: list[Any], **kw: Any) -> Any:
        raws = list(raws)
        if any(isinstance(r, dict) and r.get("event_id") == self.boom_id for r in raws):
            raise RuntimeError("simulated defect")
        return self.engine.score_many(raws, **kw)


def test_a_request_that_breaks_a_shared_chunk_fails_alone(api):
    good1, boom, good2 = api.take(), api.take(), api.take()
    rt = api.app.state.runtime
    real = rt.engine
    before = api.counts()
    rt.__dict__["engine"] = _Breaks(real, boom["event_id"])
    api.app.state.write_lock.acquire()
    try:
        pool = ThreadPoolExecutor(max_workers=3)
        clients = [api.client("ingest") for _ in range(3)]
        futures = [pool.submit(c.post, "/v1/events", json=b) for c, b in zip(clients, (good1, boom, good2), strict=True)]
        wait_for(lambda: len(api.app.state.group_commit._pending) == 3, what="the three requests to be queued")
    finally:
        api.app.state.write_lock.release()
    try:
        r1, rb, r2 = (f.result(timeout=60) for f in futures)
    finally:
        rt.__dict__["engine"] = real
        pool.shutdown()
        for c in clients:
            c.close()
    assert r1.status_code == 201 and r1.json()["decision"]["event_id"] == good1["event_id"]
    assert r2.status_code == 201 and r2.json()["decision"]["event_id"] == good2["event_id"]
    p = _problem(rb, 500)
    assert "simulated" not in p["detail"]  # internals are logged, not sent
    assert api.counts()[:2] == (before[0] + 2, before[1] + 2)
    assert not api.sql("SELECT 1 FROM decisions WHERE event_id = :e", e=boom["event_id"])


# ----------------------------------------------------------------------------- metrics

def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_count_requests_by_route_template_and_decisions_by_outcome(api):
    with api.client("analyst") as c:
        before = _samples(c.get("/metrics").text)
        did = api.sql("SELECT decision_id FROM decisions ORDER BY seq LIMIT 1")[0][0]
        for _ in range(3):
            assert c.get(f"/v1/decisions/{did}").status_code == 200
        assert c.get("/v1/decisions/no-such-decision").status_code == 404
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = _samples(r.text)
    ok = 'glassgate_http_requests_total{method="GET",route="/v1/decisions/{decision_id}",status="200"}'
    missing = ok.replace('"200"', '"404"')
    assert after[ok] - before.get(ok, 0) == 3
    assert after[missing] - before.get(missing, 0) == 1
    assert not any(did in k for k in after)  # raw paths never become label values
    assert after['glassgate_http_request_duration_seconds_count{method="GET",route="/v1/decisions/{decision_id}"}'] >= 4
    by_outcome = dict(api.sql("SELECT outcome, count(*) FROM decisions GROUP BY outcome"))
    for outcome, n in by_outcome.items():
        assert after[f'glassgate_decisions{{outcome="{outcome}"}}'] == n
