"""The service with a language model that answers badly: `POST /v1/ask` still answers, verified, with the
fallbacks named in the answer and the audit entry, and counted on `/metrics` by stage and reason."""

from __future__ import annotations

import json

from integrations.llm_fallbacks import snapshot
from risk.synth import row_to_event
from tests.apiserver import ROLES, Api, make_home, serving
from tests.fake_openai import content, serve, slow, tool_call
from tests.test_api import _samples

KEY = "sk-service-test-123456"


def test_fallbacks_are_answered_recorded_and_counted(tmp_path_factory):
    h = make_home(tmp_path_factory.mktemp("llmsvc"))
    with serve(api_key=KEY) as fake:
        rt = h.runtime(llm_base_url=fake.base_url, llm_model="small", openai_api_key=KEY, llm_timeout_seconds=1.5)
        with serving(rt) as base:
            api = Api(base=base, home=h.home, tokens={r: h.tokens[r] for r in ROLES}, events=[], seeded=[])
            with api.client("ingest") as c:
                # the last 80 events and the world's last labelled attacks, in time order: some are not allowed
                w = h.world.events
                picked = sorted(set(w.index[-80:]) | set(w.index[w["label"] == 1][-12:]))
                rows = w.to_dict("records")
                events = [row_to_event(rows[i]) for i in picked]
                assert c.post("/v1/events:batch", json={"events": events}).status_code == 200
            user, resource, outcome = api.sql("SELECT user_id, resource_id, outcome FROM decisions WHERE outcome "
                                              "!= 'allow' ORDER BY seq LIMIT 1")[0]
            before = snapshot()
            fake.queue(tool_call("make_plan", {"intent": "why_decision", "user_id": user}),  # the outcome dropped
                       slow(content({"sentences": []}), 30))  # the narrator does not answer in time
            with api.client("analyst") as c:
                said = {"deny": "denied", "step_up": "stepped up"}[outcome]
                r = c.post("/v1/ask", json={"question": f"why was {user} {said} on {resource}?"})
                metrics = _samples(c.get("/metrics").text)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["verified"] is True and a["narrator"] == "offline" and a["intent"] == "why_decision"
    assert a["planning"]["fallback"]["reason"] == "dropped_outcome" and a["fallback_from"]["reason"] == "timeout"
    (payload,) = api.sql("SELECT payload FROM audit_log WHERE kind = 'narrative' ORDER BY seq DESC LIMIT 1")[0]
    entry = json.loads(payload)
    assert entry["planning"]["fallback"]["reason"] == "dropped_outcome"
    assert entry["verification"]["fallback_from"]["reason"] == "timeout"
    for stage, reason in (("planner", "dropped_outcome"), ("narrator", "timeout")):
        name = f'glassgate_llm_fallbacks{{reason="{reason}",stage="{stage}"}}'
        assert metrics[name] == before.get((stage, reason), 0) + 1
