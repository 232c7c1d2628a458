"""No lock is held across a language-model call: while an agent turn waits on a slow model, ingestion and an
approval (of a proposal whose own thread waits at its approval) go through. Ordering, not timing: the model
is held by the test until the other requests have returned."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from agent.approval import Kind
from agent.proposals import create
from integrations.api import create_app
from integrations.runtime import Runtime
from tests.apiserver import make_home, serving
from tests.fake_openai import serve


def test_a_slow_model_blocks_neither_ingestion_nor_an_approval(tmp_path):
    h = make_home(tmp_path)
    with serve(api_key="k-test") as llm:
        rt = Runtime(h.settings(llm_base_url=llm.base_url, llm_model="fake-model", openai_api_key="k-test"))
        app = create_app(rt)
        # a proposal drafted by an agent thread that now waits at its approval interrupt
        with rt.sessions.begin() as s:
            p = create(s, kind=Kind.GRANT_EXCEPTION, payload={"user_id": "u1", "resource_id": "crm",
                                                              "duration_hours": 2, "reason": "quarter close"},
                       evidence={}, requested_by="ana", rules=rt.approval_rules, ledger=rt.ledger, clock=rt.clock,
                       thread_id="t-waiting")
        cfg = {"configurable": {"thread_id": "t-waiting"}}
        rt.graph.update_state(cfg, {"question": "q", "asked_by": "ana", "proposal": p.model_dump(mode="json")},
                              as_node="propose")
        rt.graph.invoke(None, cfg)
        assert rt.graph.get_state(cfg).next == ("await_approval",)
        events = h.events(-3)
        with serving(app) as base:
            def client(role: str) -> httpx.Client:
                # the timeout only turns a deadlock into a failure; nothing is asserted about durations
                return httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {h.tokens[role]}"})

            llm.release.clear()
            asked: dict[str, Any] = {}

            def ask() -> None:
                with client("analyst") as c:
                    asked["r"] = c.post("/v1/ask", json={"question": "why was alice denied access to crm?"})

            turn = threading.Thread(target=ask)
            turn.start()
            assert llm.held.wait(timeout=60), "the agent turn reached the model"
            with client("ingest") as c:
                r = c.post("/v1/events", json=events[0])
            assert r.status_code == 201, r.text
            with client("policy_owner") as c:
                r = c.post(f"/v1/proposals/{p.proposal_id}/approve", json={"reason": "ok"})
            assert r.status_code == 200 and r.json()["status"] == "applied", r.text
            assert turn.is_alive() and not llm.release.is_set(), "both answered while the model was still thinking"
            assert rt.graph.get_state(cfg).values["proposal"]["status"] == "applied", "its thread reported it"
            llm.release.set()
            turn.join(timeout=120)
            assert asked["r"].status_code == 200, asked["r"].text
