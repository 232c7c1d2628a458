"""The dashboard without a browser (FastAPI's TestClient over a real home): sign-in and its cookie, CSRF on
every form, the CSP, role views, paging and filters of the feed, the live cursor, the waterfall's numbers,
approvals through the one approval path, and event text rendered as data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient

from integrations.api import create_app
from integrations.services import dashboard
from integrations.ui.views import deps
from tests.apiserver import Home, make_home, sqlite_rows

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return make_home(tmp_path_factory.mktemp("ui"))


@pytest.fixture(scope="module")
def app(home: Home) -> Iterator[Any]:
    app = create_app(home.runtime(), start_worker=False)
    with TestClient(app) as c:
        r = c.post("/v1/events:batch", json={"events": home.events(0, 160)},
                   headers={"Authorization": f"Bearer {home.tokens['ingest']}"})
        assert r.status_code == 200 and all(x["status"] == 201 for x in r.json()["results"]), r.text
    yield app


def sign_in(app: Any, token: str, *, base_url: str = "http://testserver") -> TestClient:
    c = TestClient(app, base_url=base_url, follow_redirects=False)
    form = c.get("/ui/login")
    r = c.post("/ui/login", data={"token": token, "csrf": CSRF.search(form.text).group(1)})
    assert r.status_code == 303 and r.headers["location"] == "/ui", r.text
    return c


def csrf_of(c: TestClient, path: str = "/ui") -> str:
    return CSRF.search(c.get(path).text).group(1)


class _Audit(HTMLParser):
    """Collects every <script> and every inline event-handler attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))
        self.handlers += [k for k, _ in attrs if k.startswith("on")]
        self.styles += [k for k, _ in attrs if k == "style"]


def test_sign_in_sets_a_strict_cookie_and_never_the_token(app: Any, home: Home) -> None:
    c = sign_in(app, home.tokens["analyst"])
    cookie = c.cookies.get("gg_session")
    assert cookie and home.tokens["analyst"] not in cookie
    page = c.get("/ui")
    assert page.status_code == 200 and "ana" in page.text
    tls = TestClient(app, base_url="https://testserver", follow_redirects=False)
    form = tls.get("/ui/login")
    r = tls.post("/ui/login", data={"token": home.tokens["analyst"], "csrf": CSRF.search(form.text).group(1)})
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "secure" in set_cookie
    plain = TestClient(app, follow_redirects=False)
    form = plain.get("/ui/login")
    r = plain.post("/ui/login", data={"token": home.tokens["analyst"], "csrf": CSRF.search(form.text).group(1)})
    assert "secure" not in r.headers["set-cookie"].lower().replace("samesite", "")  # plain HTTP: no Secure flag


def test_bad_token_bad_login_form_and_ingest_role_are_refused(app: Any, home: Home) -> None:
    c = TestClient(app, follow_redirects=False)

    def form() -> str:  # each answer to the form issues a new pre-session cookie and token
        return CSRF.search(c.get("/ui/login").text).group(1)

    assert c.post("/ui/login", data={"token": "nope", "csrf": form()}).status_code == 401
    assert c.post("/ui/login", data={"token": home.tokens["analyst"]}).status_code == 403  # no login CSRF token
    assert c.post("/ui/login", data={"token": home.tokens["analyst"], "csrf": "x" * 64}).status_code == 403
    r = c.post("/ui/login", data={"token": home.tokens["ingest"], "csrf": form()})
    assert r.status_code == 403 and "ingest" in r.text and "gg_session" not in r.headers.get("set-cookie", "")


def test_without_a_session_pages_redirect_and_the_stream_is_401(app: Any) -> None:
    c = TestClient(app, follow_redirects=False)
    for path in ("/ui", "/ui/approvals", "/ui/whatif", "/ui/audit", "/ui/audit/export"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login", path
    assert c.get("/ui/feed/stream").status_code == 401
    c.cookies.set("gg_session", "eyJwIjogImRhbmEifQ.forged", domain="testserver.local", path="/ui")
    assert c.get("/ui").status_code == 303


def test_every_ui_response_carries_the_csp_and_pages_have_no_inline_script(app: Any, home: Home) -> None:
    c = sign_in(app, home.tokens["policy_owner"])
    did = re.search(r'data-decision="([^"]+)"', c.get("/ui").text).group(1)
    for path in ("/ui", f"/ui/decisions/{did}", "/ui/approvals", "/ui/whatif", "/ui/audit", "/ui/login",
                 "/ui/static/app.js"):
        r = c.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        if path.endswith(".js"):
            continue
        audit = _Audit()
        audit.feed(r.text)
        assert audit.scripts and all(s.get("src", "").startswith("/ui/static/") for s in audit.scripts), path
        assert audit.handlers == [] and audit.styles == [], path
    assert "content-security-policy" not in c.get("/healthz").headers  # the API's own answers are untouched


def test_csrf_is_required_on_every_form(app: Any, home: Home) -> None:
    c = sign_in(app, home.tokens["analyst"])
    other = sign_in(app, home.tokens["policy_owner"])
    did = re.search(r'data-decision="([^"]+)"', c.get("/ui").text).group(1)
    before = sqlite_rows(home.home, "SELECT count(*) FROM verdicts")[0][0]
    url = f"/ui/decisions/{did}/verdict"
    assert c.post(url, data={"verdict": "benign"}).status_code == 403
    assert c.post(url, data={"verdict": "benign", "csrf": csrf_of(other)}).status_code == 403  # another session's
    assert c.post("/ui/logout", data={}).status_code == 403
    assert c.post("/ui/audit/verify", data={"csrf": "0" * 64}).status_code == 403
    assert sqlite_rows(home.home, "SELECT count(*) FROM verdicts")[0][0] == before
    r = c.post(url, data={"verdict": "benign", "note": "travel confirmed", "csrf": csrf_of(c)})
    assert r.status_code == 303
    rows = sqlite_rows(home.home, "SELECT analyst, verdict, note FROM verdicts WHERE decision_id = :d", d=did)
    assert ("ana", "benign", "travel confirmed") in rows
    kinds = sqlite_rows(home.home, "SELECT kind FROM audit_log WHERE subject_id = :d", d=did)
    assert ("verdict",) in kinds


def test_feed_pages_are_disjoint_and_filters_hold(app: Any, home: Home) -> None:
    c = sign_in(app, home.tokens["analyst"])
    first = c.get("/ui").text
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', first)]
    assert len(seqs) == dashboard.PAGE and seqs == sorted(seqs, reverse=True)
    older = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = [int(s) for s in re.findall(r'data-seq="(\d+)"', c.get(older).text)]
    assert second and max(second) < min(seqs)
    total = sqlite_rows(home.home, "SELECT count(*) FROM decisions")[0][0]
    assert len(seqs) + len(second) <= total
    denied = c.get("/ui?outcome=deny").text
    rows = re.findall(r'<tr id="d-[^"]+" class="row o-(\w+)', denied)
    want = sqlite_rows(home.home, "SELECT count(*) FROM decisions WHERE outcome = 'deny'")[0][0]
    assert len(rows) == min(want, dashboard.PAGE) and set(rows) <= {"deny"}
    tier = c.get("/ui?tier=restricted").text
    assert set(re.findall(r"<small>(\w+) · ", tier)) <= {"restricted"}
    bad = c.get("/ui?outcome=maybe")
    assert bad.status_code == 200 and "Ignored: outcome" in bad.text


def test_live_cursor_returns_exactly_what_arrived_after_it(app: Any, home: Home) -> None:
    c = TestClient(app)
    d = deps(type("R", (), {"app": app})())  # type: ignore[arg-type]
    cursor = dashboard.newest_seq(d)
    new = home.events(160, 163)
    r = c.post("/v1/events:batch", json={"events": new}, headers={"Authorization": f"Bearer {home.tokens['ingest']}"})
    assert r.status_code == 200
    got = dashboard.feed_after(deps=d, filters=dashboard.FeedFilter(), after=cursor)
    assert [row.summary.event_id for row in got] == [e["event_id"] for e in new]
    only = dashboard.feed_after(deps=d, filters=dashboard.FeedFilter(user=new[0]["user"]["id"]), after=cursor)
    assert {row.summary.user_id for row in only} == {new[0]["user"]["id"]}


def test_waterfall_bars_are_the_explanations_points(app: Any, home: Home) -> None:
    c = sign_in(app, home.tokens["analyst"])
    did = sqlite_rows(home.home, "SELECT decision_id FROM decisions ORDER BY risk DESC LIMIT 1")[0][0]
    page = c.get(f"/ui/decisions/{did}").text
    bars = {f: float(p) for f, p in re.findall(r'data-feature="([^"]+)" data-family="[^"]+" data-points="([^"]+)"', page)}
    api = TestClient(app).get(f"/v1/decisions/{did}", headers={"Authorization": f"Bearer {home.tokens['analyst']}"})
    e = api.json()["explanation"]
    assert bars == pytest.approx({f["feature"]: f["points"] for f in e["factors"]}, abs=1e-12)
    assert e["base_risk"] + sum(bars.values()) == pytest.approx(e["risk"], abs=1e-9)
    ends = [float(x) for x in re.findall(r'data-end="([^"]+)"', page)]
    assert ends[-1] == pytest.approx(e["risk"], abs=1e-9)  # the last bar ends at the decision's risk


def test_event_text_is_rendered_as_data(app: Any, home: Home) -> None:
    ev = home.events(170, 171)[0]
    ev["device"]["user_agent"] = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    r = TestClient(app).post("/v1/events", json=ev, headers={"Authorization": f"Bearer {home.tokens['ingest']}"})
    assert r.status_code == 201, r.text
    c = sign_in(app, home.tokens["analyst"])
    page = c.get(f"/ui/decisions/{r.json()['decision']['decision_id']}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    audit = _Audit()
    audit.feed(page)
    assert audit.handlers == []


def test_threshold_change_drafted_in_what_if_is_refused_to_its_requester_and_approved_by_another(
        app: Any, home: Home) -> None:
    owner, admin, analyst = (sign_in(app, home.tokens[r]) for r in ("policy_owner", "admin", "analyst"))
    assert "Draft this change" not in analyst.get("/ui/whatif").text  # per-role view: analysts replay only
    page = owner.get("/ui/whatif?target=POL-ACCESS-001%7Ctier%3Ainternal&step_up_at=0.4&deny_at=0.8&run=1")
    assert 'id="replay-summary"' in page.text
    r = owner.post("/ui/whatif/draft", data={"target": "POL-ACCESS-001|tier:internal", "step_up_at": "0.4",
                                             "deny_at": "0.8", "csrf": csrf_of(owner)})
    assert r.status_code == 303
    pid = r.headers["location"].split("#p-")[1]
    r = owner.post(f"/ui/approvals/{pid}/approve", data={"csrf": csrf_of(owner)})
    assert r.status_code == 403 and 'data-refusal="self_approval"' in r.text and "§7-changing-a-threshold" in r.text
    r = admin.post(f"/ui/approvals/{pid}/approve", data={"csrf": csrf_of(admin)})
    assert r.status_code == 200 and 'data-ok="true"' in r.text
    rows = sqlite_rows(home.home, "SELECT principal, decision, channel FROM approvals WHERE proposal_id = :p", p=pid)
    assert rows == [("dana", "approve", "api")]


def test_grafana_dashboard_queries_only_metrics_the_service_exposes(app: Any, home: Home) -> None:
    import json
    from pathlib import Path

    import integrations.ui

    dash = json.loads((Path(integrations.ui.__file__).parent / "grafana" / "glassgate.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"\bglassgate_[a-z_]+", e)}
    from integrations.witness import Checkpointer

    app.state.checkpointer = Checkpointer(app.state.runtime, interval=3600)
    app.state.checkpointer.run_once()  # the audit gauges appear once a checkpoint has run
    c = TestClient(app)
    c.get("/ui/login")  # so the request metrics have a /ui route
    exposed = c.get("/metrics", headers={"Authorization": f"Bearer {home.tokens['analyst']}"}).text
    missing = {n for n in names if not re.search(rf"^({n}[{{ ]|# TYPE {n} )", exposed, re.M)}
    assert names and missing == set()


def test_session_secret_is_private_and_shared_by_every_process_on_a_home(tmp_path: Any) -> None:
    from integrations.ui.auth import load_secret

    first, second = load_secret(tmp_path), load_secret(tmp_path)
    assert first == second and len(first) == 32
    assert (tmp_path / "ui-secret").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["ui-secret"]  # no temporary file left behind


def test_rotating_a_token_ends_its_dashboard_sessions(app: Any, home: Home) -> None:
    c = sign_in(app, home.tokens["analyst"])
    assert c.get("/ui").status_code == 200
    entries = app.state.principal_entries
    ana = entries["ana"]
    try:
        entries["ana"] = ana.model_copy(update={"token_sha256": "0" * 64})  # the file now holds a new token
        r = c.get("/ui")
        assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    finally:
        entries["ana"] = ana
