"""`glassgate serve` as its own process: it serves over an existing home, stops cleanly, and refuses to
start with a placeholder secret, a half-configured channel or a port in use, saying which."""

from __future__ import annotations

import signal
import socket

import httpx
import pytest

from integrations.settings import Settings
from tests.apiserver import Home, make_home
from tests.procserver import ServiceProcess, service


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Home:
    return make_home(tmp_path_factory.mktemp("serve"))


def test_serve_answers_over_the_home_and_stops_on_sigterm(home, tmp_path):
    with service(home, tmp_path) as svc:
        svc.start()
        r = httpx.get(f"{svc.base}/readyz", timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "ready", r.text
        with svc.client("analyst") as c:
            assert c.get("/v1/decisions").status_code == 200
        assert httpx.get(f"{svc.base}/v1/decisions", timeout=10).status_code == 401
        # uvicorn shuts down gracefully, then exits by the signal it received (so a supervisor sees why)
        assert svc.stop() in (0, -signal.SIGTERM)
        assert "Traceback" not in svc.log()


@pytest.mark.parametrize(("env", "named"), [
    ({"SLACK_SIGNING_SECRET": "changeme", "SLACK_BOT_TOKEN": "xoxb-real-looking-token-1234"}, "SLACK_SIGNING_SECRET"),
    ({"GLASSGATE_WEBHOOK_SECRETS": "whsec_<your-secret>"}, "GLASSGATE_WEBHOOK_SECRETS item 1"),
])
def test_serve_refuses_a_channel_with_a_placeholder_or_missing_secret(home, tmp_path, env, named):
    svc = ServiceProcess(home, tmp_path)
    res = svc.cli("serve", "--port", str(svc.port), **env)
    assert res.returncode == 2, res.stderr
    assert named in " ".join(res.stderr.split()), res.stderr
    assert "serving on" not in res.stderr
    for value in env.values():  # a secret is never echoed whole
        if len(value.strip()) > 8:
            assert value not in res.stderr


def test_serve_refuses_a_port_in_use(home, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = ServiceProcess(home, tmp_path).cli("serve", "--port", str(port))
    assert res.returncode == 2
    assert f"127.0.0.1:{port}" in res.stderr and "--port" in res.stderr


def test_channel_problems_accept_real_secrets_and_name_every_bad_one(tmp_path):
    good = Settings(home=tmp_path, webhook_secrets="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_c2Vjb25kLXNlY3JldC0xMjM0NTY3ODkwYWI=",
                    jira_webhook_secret="j1r4-w3bh00k-s3cr3t-value-0123456789", slack_signing_secret="8f742231b10e8888abcd99yyyzzz85a5",
                    slack_bot_token="xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
                    jira_url="https://acme.atlassian.net", jira_email="soc@acme.example", jira_api_token="ATATT3xFfGF0abc")
    assert good.channel_problems() == []
    assert good.webhook_secret_list == ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                        "whsec_c2Vjb25kLXNlY3JldC0xMjM0NTY3ODkwYWI="]
    assert Settings(home=tmp_path).channel_problems() == []  # nothing switched on, nothing to refuse
    for kwargs, named in (({"slack_signing_secret": "0123456789abcdef0123456789abcdef"}, "SLACK_BOT_TOKEN is not set"),
                          ({"webhook_secrets": ""}, "GLASSGATE_WEBHOOK_SECRETS is set but empty"),
                          ({"jira_webhook_secret": "  "}, "GLASSGATE_JIRA_WEBHOOK_SECRET is empty or a placeholder"),
                          ({"jira_url": "https://acme.atlassian.net"}, "GLASSGATE_JIRA_EMAIL is not set")):
        assert any(named in p for p in Settings(home=tmp_path, **kwargs).channel_problems()), kwargs
    bad = Settings(home=tmp_path, webhook_secrets="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,secret",
                   slack_bot_token="xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy", slack_signing_secret="TODO",
                   jira_url="ftp://jira", jira_email="soc@acme.example", jira_api_token="<token>")
    problems = " | ".join(bad.channel_problems())
    for named in ("GLASSGATE_WEBHOOK_SECRETS item 2", "SLACK_SIGNING_SECRET", "GLASSGATE_JIRA_URL",
                  "GLASSGATE_JIRA_API_TOKEN"):
        assert named in problems
    assert "SLACK_BOT_TOKEN" not in problems


def test_weak_secrets_and_a_fixed_clock_are_refused_naming_the_variable(tmp_path):
    weak = Settings(home=tmp_path, webhook_secrets="whsec_AAAA", jira_webhook_secret="a")
    problems = " | ".join(weak.channel_problems())
    assert "GLASSGATE_WEBHOOK_SECRETS item 1 has a 3-byte key" in problems
    assert "GLASSGATE_JIRA_WEBHOOK_SECRET is 1 characters; at least 32" in problems
    fixed = Settings(home=tmp_path, now="2026-11-29T10:00:00Z")
    assert any("GLASSGATE_NOW" in p and "GLASSGATE_ALLOW_FIXED_CLOCK" in p for p in fixed.channel_problems())
    assert Settings(home=tmp_path, now="2026-11-29T10:00:00Z", allow_fixed_clock=True).channel_problems() == []
