"""The optional local model: `glassgate doctor` against an endpoint, `glassgate llm serve` without the extra,
and (slow, only where the `local-llm` extra is installed) the real llama.cpp server answering one question."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from integrations.cli import app
from integrations.local_llm import LocalModelMissing, has_server, model_parts, plan_server
from tests.fake_openai import content, serve, tool_call

KEY = "sk-doctor-0123456789"


def test_doctor_reports_what_the_endpoint_answers_to(tmp_path, monkeypatch):
    with serve(api_key=KEY) as fake:
        fake.queue(tool_call("ping", {"ok": True}), content('{"ok": true}'), content("no JSON here"))
        for k, v in {"GLASSGATE_HOME": str(tmp_path), "GLASSGATE_LLM_BASE_URL": fake.base_url,
                     "GLASSGATE_LLM_MODEL": "fake-model", "OPENAI_API_KEY": KEY}.items():
            monkeypatch.setenv(k, v)
        out = CliRunner().invoke(app, ["doctor", "--json"])
        bodies = fake.bodies()
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert got["ok"] and got["probe"]["answers"] and got["probe"]["models"] == ["fake-model"]
    f = got["probe"]["features"]
    assert f["tool_call"]["supported"] and f["json_mode"]["supported"] and not f["json_schema"]["supported"]
    assert bodies[0]["tool_choice"]["function"]["name"] == "ping" and bodies[1]["response_format"] == {"type": "json_object"}
    assert bodies[2]["response_format"]["schema"]["required"] == ["ok"] and all(b["max_tokens"] <= 24 for b in bodies)


def test_doctor_fails_when_the_configured_endpoint_does_not_answer(tmp_path, monkeypatch):
    from tests.procserver import free_port

    for k, v in {"GLASSGATE_HOME": str(tmp_path), "GLASSGATE_LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
                 "GLASSGATE_LLM_MODEL": "nothing-there"}.items():
        monkeypatch.setenv(k, v)
    out = CliRunner().invoke(app, ["doctor"])
    assert out.exit_code == 1 and "answers: NO" in out.output


@pytest.mark.skipif(has_server(), reason="the local-llm extra is installed here")
def test_llm_serve_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSGATE_HOME", str(tmp_path))
    out = CliRunner().invoke(app, ["llm", "serve", "--dry-run"])
    assert out.exit_code == 2 and "glassgate[local-llm]" in out.output


def _extra_missing() -> str | None:
    if not has_server():
        return "llama-cpp-python[server] is not installed (pip install 'glassgate[local-llm]')"
    try:
        model_parts()
    except LocalModelMissing as exc:
        return str(exc)
    return None


@contextmanager
def _local_server(tmp_path: Path, *, n_ctx: int) -> Iterator[tuple[Path, str]]:
    """The bundled model served on a free loopback port with one thread; yields (model file, base URL)."""
    import httpx

    from integrations.local_llm import ensure_model
    from tests.apiserver import wait_for
    from tests.procserver import free_port

    model = ensure_model(tmp_path / "models")
    plan = plan_server(model=model, port=free_port(), n_ctx=n_ctx, n_threads=1)
    proc = subprocess.Popen(plan.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = plan.exports()["GLASSGATE_LLM_BASE_URL"]

    def up() -> bool:
        assert proc.poll() is None, "the model server exited"
        try:
            return httpx.get(f"{base}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=300, what="the local model server")
        yield model, base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.skipif(_extra_missing() is not None, reason=_extra_missing() or "")
def test_the_local_model_answers_one_question_end_to_end(tmp_path):
    """The real server on 127.0.0.1 with the bundled model: a why-question gets a verified answer (the model's
    own, or the deterministic one with the reason recorded); never an unverified draft."""
    from agent.approval import ApprovalRules
    from agent.deps import AgentDeps
    from agent.graph import answer_of, build_graph
    from agent.iam import BuiltinIam
    from agent.llm import LlmConfig, build_llm
    from integrations.local_llm import MODEL_ALIAS
    from tests.test_llm import NOW, _world

    with _local_server(tmp_path, n_ctx=4096) as (_, base):
        store = _world(tmp_path)
        planner, narrator = build_llm(base_url=base, model=MODEL_ALIAS, api_key=None,
                                      cfg=LlmConfig(timeout=600, narrate_max_tokens=700))
        pol = store["ctx"].policy
        rules = ApprovalRules.from_policy(pol)
        deps = AgentDeps(tools=store["ctx"], rules=rules, ledger=store["ledger"], iam=BuiltinIam(base_policy=pol, rules=rules),
                         clock=lambda: NOW, planner=planner, narrator=narrator)
        d = store["decision"]
        out = answer_of(build_graph(deps).invoke({"question": f"why was {d['user_id']} denied access to "
                                                              f"{d['resource_id']}?", "asked_by": "ana"}))
    print(json.dumps({k: out[k] for k in ("narrator", "verified", "fallback_from", "planning", "narration")}, indent=1),
          file=sys.stderr)
    assert out["verified"] and d["decision_id"] in out["decision_ids"]
    assert out["narrator"] == f"llm:{MODEL_ALIAS}" or out["fallback_from"]["reason"]


@pytest.mark.slow
@pytest.mark.skipif(_extra_missing() is not None, reason=_extra_missing() or "")
def test_the_local_server_reads_json_evidence_as_written(tmp_path):
    """The chat format the server is started with passes message text through untouched: JSON evidence costs the
    tokens it tokenizes to (a format that HTML-escaped it sent every quote as &#34;, doubling the prompt and
    garbling the evidence), and a forced make_plan call still comes back as a tool call."""
    import llama_cpp
    import openai

    from agent.prompts import PLAN_TOOL
    from integrations.local_llm import MODEL_ALIAS

    evidence = json.dumps({"decision": {"outcome": "deny", "risk": 0.91, "rules": ['a "quoted" <rule> & more']}})
    with _local_server(tmp_path, n_ctx=2048) as (model, base):
        client = openai.OpenAI(base_url=base, api_key="unused", timeout=300)
        said = client.chat.completions.create(model=MODEL_ALIAS, max_tokens=1, messages=[
            {"role": "user", "content": evidence * 10}])
        plan_call = client.chat.completions.create(
            model=MODEL_ALIAS, max_tokens=120, tools=[PLAN_TOOL],
            tool_choice={"type": "function", "function": {"name": "make_plan"}},
            messages=[{"role": "user", "content": "why was alice denied access to payroll-db?"}])
    vocab = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    plain = len(vocab.tokenize((evidence * 10).encode(), add_bos=False))
    assert said.usage is not None and plain <= said.usage.prompt_tokens <= plain + 20, (plain, said.usage)
    calls = plan_call.choices[0].message.tool_calls or []
    assert calls and calls[0].function.name == "make_plan" and "intent" in json.loads(calls[0].function.arguments)
