"""The explanation and narrative evals: the gate on a small world, and every evaluator shown able to fail."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from agent.gather import gather
from agent.narrative import Audience, Evidence, Intent
from agent.narrator_offline import narrate
from agent.planner import Plan
from agent.verifier import verify
from evals import evaluators as E
from evals.report import gate
from evals.run_eval import EvalHomeRefused, eval_settings, prepare_home, run_eval
from evals.scenarios import SPEC_PATH, DatasetError, EdgeCase, edge_event, load_edge_cases, load_spec
from integrations.actions import explain_decision
from integrations.runtime import Runtime
from integrations.settings import Settings
from risk.explain import TreeShap
from tools.registry import call_tool

SMALL = {"users": 90, "days": 14, "test_days": 4, "attack_rate": 0.08, "max_iter": 200}  # solo signals need the trees


def _small_spec(root: Path) -> Path:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    spec["world"].update(SMALL)
    spec["stability"]["cases"] = 8
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _quiet(_desc, _total):
    return lambda _n: None


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """The eval run on a small world: (report, runtime over its eval home)."""
    root = tmp_path_factory.mktemp("evals")
    spec_path = _small_spec(root)
    base = Settings(home=root / "home", database_url=None, llm_base_url=None, llm_model=None, now=None)
    report = run_eval(base=base, n_cases=24, seed=5, out_root=root / "reports", stage=_quiet, spec_path=spec_path)
    now = load_spec(spec_path).world.now
    return report, Runtime(eval_settings(base, root / "home" / "eval-world", now, llm=False))


def _record(report, **match):
    return next(r for r in report["records"] if all(r["case"].get(k) == v for k, v in match.items()))


def _fetch(rt, decision_id):
    got = call_tool(rt.tool_context(with_index=False), "get_decision", {"decision_id": decision_id})
    return got.decision.model_dump(mode="json"), got.explanation.model_dump(mode="json")


def test_gate_offline_narrator_is_faithful_and_finds_the_cause(gated):
    report, _ = gated
    agg = report["aggregates"]
    assert agg["narrators"]["offline"]["faithful"]["all"]["rate"] == 1.0
    assert agg["explanation"]["cause_top_family"]["all"]["rate"] >= 0.9
    # the stress lines gate `glassgate eval` (240 users, 200 trees); this 90-user world is too small for the
    # single-signal attacks, so the model-alone check of the shipped recipe is tests/test_model_shape.py
    assert all(g["passed"] for g in report["gate"] if not g["name"].startswith("stress")), report["gate"]
    assert set(agg["groups"]) == {"attack", "benign_unusual", "edge"} and agg["groups"]["edge"] == 5
    assert agg["explanation"]["expectations_met"]["all"]["passed"] == 5
    assert agg["deletion_curve"]["k"] == [1, 2, 3, 4, 5] and agg["deletion_curve"]["cases"] > 0


def test_gate_includes_the_stress_suite_per_family(gated):
    report, _ = gated
    names = {g["name"] for g in report["gate"]}
    assert {"stress: identity", "stress: device", "stress: behavior", "stress: network"} <= names
    cases = report["stress"]["cases"]
    assert {c["kind"] for c in cases} == {"anomaly", "variation"}
    assert all(g["passed"] == (g["value"] == 1.0) for g in report["gate"] if g["name"].startswith("stress"))
    for c in cases:  # each case's verdict follows from its threshold and final outcomes
        want = c["threshold_outcome"] in ("step_up", "deny") if c["kind"] == "anomaly" else (
            c["threshold_outcome"] == "allow" and c["outcome"] == "allow")
        assert c["passed"] == want, c
    md = (Path(report["paths"]["dir"]) / "summary.md").read_text()
    assert "| network | network-berlin-sydney | anomaly |" in md and "threshold outcome | final outcome" in md
    assert "Calibration on the later split: Brier" in md


def test_report_files_and_plots(gated):
    report, _ = gated
    for where in (Path(report["paths"]["dir"]), Path(report["paths"]["latest"])):
        for name in ("report.json", "summary.md", "cases.jsonl"):
            assert (where / name).stat().st_size > 0
        assert set(report["plots"]) == {"cause_recall_by_type.png", "deletion_curve.png", "pass_rates.png",
                                        "reliability.png"}
        for png in report["plots"]:
            with Image.open(where / png) as im:
                im.verify()
                assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 100
    summary = (Path(report["paths"]["latest"]) / "summary.md").read_text()
    assert "| offline faithfulness | 100.0% | 100% | pass |" in summary


def test_cause_recall_fails_for_the_wrong_family(gated):
    report, rt = gated
    rec = _record(report, group="attack")
    _, e = _fetch(rt, rec["decision"]["decision_id"])
    assert all(s.passed for s in E.cause_recall(causes=rec["case"]["causes"], explanation=e))
    ups = sorted((f for f in e["factors"] if f["contribution"] > 0), key=lambda f: -f["contribution"])[:3]
    wrong = [f for f in ("identity", "device", "behavior", "network") if f != e["top_family"]
             and f not in {d["family"] for d in ups}]
    top, top3 = E.cause_recall(causes=[wrong[0]], explanation=e)
    assert top.passed is False and top3.passed is False


def _narrative(rt, decision_id):
    return explain_decision(rt, decision_id=decision_id, audience=Audience.ANALYST)


def test_faithfulness_fails_for_an_unverified_or_replaced_draft(gated):
    report, rt = gated
    did = _record(report, group="attack")["decision"]["decision_id"]
    ev = gather(rt.agent_deps.tools, Plan(intent=Intent.WHY_DECISION, decision_id=did), "why?")
    good = narrate(ev)
    bad = good.model_copy(update={"text": good.text.replace(f"risk {ev.decision['risk']:.2f}", "risk 0.01")})
    assert bad.text != good.text
    check = verify(bad, ev)
    faithful, _ = E.faithfulness(narrative={"verified": check.verified, "fallback_from": None,
                                            "verification_failures": [f.model_dump() for f in check.failures]})
    assert faithful.passed is False
    replaced = {"verified": True, "verification_failures": [],
                "fallback_from": {"narrator": "llm:x", "failures": [{"check": "number", "detail": "'0.01'"}]}}
    faithful, after = E.faithfulness(narrative=replaced)
    assert faithful.passed is False and after.passed is True


def test_completeness_and_citation_fail_for_a_thin_narrative(gated):
    report, rt = gated
    did = _record(report, group="attack")["decision"]["decision_id"]
    d, e = _fetch(rt, did)
    n = _narrative(rt, did)
    assert E.completeness(narrative=n, decision=d, explanation=e, timeline=None)[-1].passed
    assert E.citation_accuracy(narrative=n, decision=d).passed
    label = E.drivers(e)[0]["label"]
    thin = {**n, "text": n["text"].replace(label, "a signal").replace(f"{d['risk']:.2f}", "high")}
    scores = {s.name: s.passed for s in E.completeness(narrative=thin, decision=d, explanation=e, timeline=None)}
    assert scores["names_top_drivers"] is False and scores["names_risk_vs_threshold"] is False
    assert scores["complete"] is False and scores["names_outcome"] is True
    other = [{**c, "section": "1-purpose"} for c in n["citations"]]
    assert E.citation_accuracy(narrative={**n, "citations": other}, decision=d).passed is False
    assert E.citation_accuracy(narrative={**n, "citations": []}, decision=d).passed is False


def test_session_change_must_be_named(gated):
    report, rt = gated
    rec = _record(report, case_id="edge-thin-history")
    d, e = _fetch(rt, rec["decision"]["decision_id"])
    tl = call_tool(rt.tool_context(with_index=False), "session_timeline", {"session_id": d["session_id"]}).model_dump(mode="json")
    n = _narrative(rt, d["decision_id"])
    named = {s.name: s.passed for s in E.completeness(narrative=n, decision=d, explanation=e, timeline=tl)}
    assert named["names_session_change"] is True
    relabelled = copy.deepcopy(tl)
    for step in relabelled["steps"][1:]:
        for c in step["changes"]:
            c["label"] = "a signal the narrative never names"
    named = {s.name: s.passed for s in E.completeness(narrative=n, decision=d, explanation=e, timeline=relabelled)}
    assert named["names_session_change"] is False and named["complete"] is False


def test_counterfactual_validity_fails_for_a_change_that_does_not_flip(gated):
    report, rt = gated
    d, e = _fetch(rt, _record(report, case_id="edge-two-causes")["decision"]["decision_id"])
    assert d["outcome"] == "deny" and any(r["rule_id"] == "net-tor-deny" for r in d["rules"])
    fake = copy.deepcopy(e)
    fake["counterfactuals"] = [{"target": "allow", "risk_after": 0.01, "outcome_after": "allow", "verified": True,
                                "actions": [{"action": "normal_volume", "label": "normal volume", "changes": []}]}]
    offered, valid = E.counterfactual_validity(ctx=rt.tool_context(with_index=False), decision=d, explanation=fake)
    assert offered.passed is True and valid.passed is False and "re-scored deny" in valid.detail


def test_fidelity_checks_fail_for_a_wrong_explanation(gated):
    report, rt = gated
    d, e = _fetch(rt, _record(report, group="attack")["decision"]["decision_id"])
    model = rt.model
    x = E.explanation_vector(e)
    margin = float(model.margin(x[None, :])[0])
    assert E.additivity(explanation=e, model_margin=margin).passed
    assert E.additivity(explanation={**e, "margin": e["margin"] + 0.01}, model_margin=margin).passed is False
    phi, _ = TreeShap(model).contributions(x[None, :])
    baseline = np.zeros_like(x)
    kw = dict(x=x, risk_fn=model.risk, baseline=baseline, max_k=3, draws=10)
    assert E.deletion(phi=phi[0], rng=np.random.default_rng(0), **kw).passed
    assert E.deletion(phi=-phi[0], rng=np.random.default_rng(0), **kw).passed is False
    swapped = phi[0].copy()
    order = np.argsort(-swapped)
    swapped[order[0]], swapped[order[1]] = swapped[order[1]], swapped[order[0]]
    assert E.stable_drivers(phi=phi[0], phi_twin=phi[0], x=x, x_twin=x).passed
    assert E.stable_drivers(phi=phi[0], phi_twin=swapped, x=x, x_twin=x).passed is False


def test_stability_and_expectations_fail_when_they_should(gated):
    report, rt = gated
    d, e = _fetch(rt, _record(report, case_id="edge-revoked")["decision"]["decision_id"])
    n = _narrative(rt, d["decision_id"])
    assert E.same_narrative(first=n, second=_narrative(rt, d["decision_id"])).passed
    assert E.same_narrative(first=n, second={**n, "text": n["text"] + " Also."}).passed is False
    assert E.expectations(expect={"outcome": "deny", "rule": "session-revoked"}, decision=d, explanation=e).passed
    assert E.expectations(expect={"outcome": "allow"}, decision=d, explanation=e).passed is False
    assert E.expectations(expect={"rule": "net-tor-deny"}, decision=d, explanation=e).passed is False
    assert E.expectations(expect={"outcome": None}, decision=d, explanation=e).passed is None


def test_gate_fails_below_target():
    agg = {"narrators": {"offline": {"faithful": {"all": {"rate": 0.97}}}},
           "explanation": {"cause_top_family": {"all": {"rate": 0.95}}, "additivity": {"all": {"rate": 1.0}},
                           "counterfactual_valid": {"all": {"rate": None}}}}
    got = {g["name"]: g["passed"] for g in gate(agg)}
    assert got == {"offline faithfulness": False, "cause recall (top family)": True, "additivity": True,
                   "counterfactual validity": False}


def test_bad_datasets_are_refused_precisely(tmp_path):
    spec = yaml.safe_load(SPEC_PATH.read_text())
    spec["world"]["users"] = -3
    spec["world"]["colour"] = "blue"
    bad = tmp_path / "spec.yaml"
    bad.write_text(yaml.safe_dump(spec))
    with pytest.raises(DatasetError) as exc:
        load_spec(bad)
    assert "world.users" in str(exc.value) and "world.colour" in str(exc.value)
    edges = tmp_path / "edges.yaml"
    edges.write_text(yaml.safe_dump({"cases": [{"id": "e", "type": "t", "description": "d", "causes": ["weather"]}]}))
    with pytest.raises(DatasetError) as exc:
        load_edge_cases(edges)
    assert "cases[0]" in str(exc.value) and "causes.0" in str(exc.value)
    with pytest.raises(DatasetError) as exc:
        load_spec(tmp_path / "missing.yaml")
    assert "no such dataset file" in str(exc.value)
    case = EdgeCase(id="e", type="t", description="d", causes=[], set={"surprise.field": 1})
    row = {"event_id": "evt-1", "ts": 1.0e9, "session": "s", "user": "u", "role": "hr", "privileged": 0.0,
           "device": "d", "device_managed": 1.0, "device_compliant": 1.0, "edr_running": 1.0, "user_agent": "ua",
           "disk_encrypted": 1.0, "os_patch_age_days": 3.0, "country": "DE", "asn": 3320, "lat": 52.5, "lon": 13.4,
           "is_vpn": 0.0, "is_tor": 0.0, "is_hosting": 0.0, "mfa": "webauthn", "minutes_since_mfa": 1.0,
           "failed_attempts_1h": 0.0, "resource": "mail", "kind": "saas", "sensitivity": "internal",
           "action": "read", "requests_per_min": 3.0, "bytes_out": 10.0, "distinct_resources_1h": 1.0}
    with pytest.raises(DatasetError) as exc:
        edge_event(row, case, at=load_spec().world.now, suffix="x")
    assert "'surprise.field' is not a field of the native event" in str(exc.value)


def test_eval_home_refuses_foreign_files(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(EvalHomeRefused):
        prepare_home(tmp_path)
    assert (tmp_path / "precious.txt").exists()
    fresh = tmp_path / "eval-world"
    prepare_home(fresh)
    (fresh / "glassgate.db").write_text("old run")
    prepare_home(fresh)  # its own home is rebuilt
    assert not (fresh / "glassgate.db").exists()


def test_an_llm_narrator_is_scored_on_its_own_drafts(tmp_path):
    """A scripted model that writes the grounded narrative, except that it understates every risk above 0.5:
    its faithfulness is the share of low-risk cases (read before fallback), and every narrative shown is verified."""
    from tests.fake_openai import content, serve

    def reply(req):
        user = req.body["messages"][-1]["content"]
        ev = Evidence.model_validate_json(user.split("<evidence>\n", 1)[1].rsplit("\n</evidence>", 1)[0])
        n = narrate(ev, Audience(user.split("\n", 1)[0].removeprefix("Audience: "))).model_dump(mode="json")
        if ev.decision["risk"] > 0.5:
            n["claims"] = [{**c, "value": 0.01} if c["type"] == "risk" else c for c in n["claims"]]
        with fake.lock:
            fake.requests.append(req)
        return content({"text": n["text"], "claims": n["claims"], "citations": n["citations"]})

    with serve(api_key="sk-eval-test") as fake:
        fake._next = reply
        base = Settings(home=tmp_path / "home", database_url=None, llm_base_url=fake.base_url, llm_model="scripted",
                        openai_api_key="sk-eval-test", now=None, llm_max_tokens=321)
        report = run_eval(base=base, n_cases=10, seed=5, out_root=tmp_path / "reports", stage=_quiet,
                          spec_path=_small_spec(tmp_path))
    records = report["records"]
    assert report["meta"]["narrators"] == ["offline", "llm:scripted"]
    assert len(fake.requests) == 2 * len(records)  # each case explained twice
    assert {r.body["max_tokens"] for r in fake.requests} == {321}  # the caller's bounds, not the defaults
    high = [r["decision"]["risk"] > 0.5 for r in records]
    assert 0 < sum(high) < len(records)
    llm = report["aggregates"]["narrators"]["llm:scripted"]
    assert llm["faithful"]["all"]["passed"] == high.count(False)
    assert llm["verified_after_fallback"]["all"]["rate"] == 1.0
    assert [r["narrators"]["llm:scripted"]["fallback_from"] is not None for r in records] == high
    assert report["aggregates"]["narrators"]["offline"]["faithful"]["all"]["rate"] == 1.0


def test_the_cli_runs_the_evals_as_their_own_module_and_passes_their_refusal_on(tmp_path):
    """`glassgate eval` does not import evals: it runs `python -m evals.run_eval`, whose refusal of a home it did
    not create reaches the user with its exit code, and nothing in that home is touched."""
    import os
    import subprocess
    import sys

    foreign = tmp_path / "eval-world" / "mine.txt"
    foreign.parent.mkdir()
    foreign.write_text("not the eval's")
    env = {**os.environ, "GLASSGATE_HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("GLASSGATE_DATABASE_URL", None)
    got = subprocess.run([sys.executable, "-m", "integrations.cli", "eval", "--cases", "3"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert got.returncode == 2 and "did not create" in got.stderr, (got.returncode, got.stderr[-2000:])
    assert foreign.read_text() == "not the eval's" and not (tmp_path / "reports").exists()


def test_the_cli_refuses_a_bad_case_count(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from integrations.cli import app

    monkeypatch.setenv("GLASSGATE_HOME", str(tmp_path))
    out = CliRunner().invoke(app, ["eval", "--cases", "0"])
    assert out.exit_code == 2 and "--cases must be at least 1 (got 0)" in out.output
    assert not (tmp_path / "eval-world").exists() and not (tmp_path / "reports").exists()
