"""Learning from the customer: train a candidate from stored verdicts, run it in shadow, propose its
promotion with the replay as evidence, approve it from other processes, and the next event is decided by it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from integrations.audit_anchor import init_ledger
from integrations.runtime import Runtime
from integrations.services.deps import ServiceDeps
from integrations.services.models import ProposalRefusedError, propose_promotion, train_from_store
from integrations.settings import Settings
from risk.store.queries import add_verdict
from risk.store.schema import DecisionRow, ModelVersionRow, ShadowScoreRow
from risk.synth import row_to_event

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def _runtime(home, db_url) -> Runtime:
    url = None if db_url.startswith("sqlite") else db_url
    return Runtime(Settings(home=home, database_url=url, llm_base_url=None, llm_model=None, now=NOW))


@pytest.mark.slow
def test_train_from_store_shadow_promote_across_processes(db_url, trained, small_world, tmp_path):
    model, _, split = trained
    home = tmp_path / "home"
    rt = _runtime(home, db_url)
    rt.save_model(model)
    init_ledger(rt)  # the audit key and the first signed witness (`glassgate audit init`)
    later = small_world.events[split.test]
    users = later[later["label"] == 1]["user"].unique()[:6].tolist() + later["user"].unique()[:6].tolist()
    rows = later[later["user"].isin(users)].head(400)
    results = list(rt.engine.score_many(row_to_event(r) for r in rows.to_dict("records")))
    label = dict(zip(rows["event_id"], rows["label"], strict=True))
    scen = dict(zip(rows["event_id"], rows["scenario"], strict=True))
    with rt.sessions.begin() as s:  # analysts triage every flagged decision and some allowed ones
        for k, r in enumerate(results):
            d = r.decision
            if d["outcome"] != "allow" or k % 7 == 0:
                bad = label[d["event_id"]] == 1
                add_verdict(s, decision_id=d["decision_id"], verdict="malicious" if bad else "benign", analyst="ana",
                            at="2026-11-15T11:00:00Z", attack_type=scen[d["event_id"]] if bad else None)

    deps = ServiceDeps.from_runtime(rt)
    got = train_from_store(deps=deps, prior_users=60, prior_days=10, max_iter=60)
    assert got.live == model.version and got.version != model.version and got.status == "shadow"
    assert got.verdicts > 0 and got.malicious > 0 and 0 < got.verdict_weight_share < 1
    assert (home / "models" / got.version / "card.json").exists()

    # In shadow: the next event is decided by the live model and scored (and explained) by the candidate.
    probe = rows.iloc[-1].to_dict() | {"event_id": "evt-shadow-probe"}
    dec = rt.engine.score(row_to_event(probe)).decision
    assert dec["model_version"] == model.version
    with rt.sessions() as s:
        shadow = s.get(ShadowScoreRow, (dec["decision_id"], got.version))
        assert shadow is not None and 0.0 <= shadow.risk <= 1.0 and shadow.top_family

    with pytest.raises(ProposalRefusedError, match="version"):
        propose_promotion(deps=deps, version=model.version, requested_by="ana", reason="not a candidate")
    prop = propose_promotion(deps=deps, version=got.version, requested_by="ana", reason="trained on our verdicts")
    ev = prop.evidence
    assert prop.kind.value == "promote_model" and prop.status.value == "pending" and prop.approvals_needed == 2
    assert ev["replay"]["malicious_newly_allowed"] == 0 and ev["replay"]["approvable"]
    assert ev["replay"]["labelled"] > 0 and ev["replay"]["outcome_matrix"] and "version" in ev["card_diff"]

    # Approved from other processes, through the one approval path (the CLI's approve command).
    env = {**os.environ, "GLASSGATE_HOME": str(home), "GLASSGATE_NOW": NOW.isoformat(),
           "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())}
    env.pop("GLASSGATE_DATABASE_URL", None)
    if not db_url.startswith("sqlite"):
        env["GLASSGATE_DATABASE_URL"] = db_url

    def approve(who: str) -> subprocess.CompletedProcess[str]:
        cmd = ["approve", prop.proposal_id, "--local-operator", "--as", who]
        return subprocess.run([sys.executable, "-m", "integrations.cli", *cmd], capture_output=True, text=True, env=env, timeout=300)

    assert (first := approve("ana")).returncode == 1 and "request" in (first.stderr + first.stdout).lower()
    assert (one := approve("priya")).returncode == 0, one.stderr
    assert (two := approve("dana")).returncode == 0 and "applied" in two.stdout, two.stderr

    # The next event in this (long-running) process is decided by the promoted version.
    nxt = rows.iloc[-2].to_dict() | {"event_id": "evt-after-promotion"}
    after = rt.engine.score(row_to_event(nxt)).decision
    assert after["model_version"] == got.version
    with rt.sessions() as s:
        versions = {r.version: r for r in s.scalars(select(ModelVersionRow))}
        assert versions[got.version].status == "live" and versions[got.version].proposal_id == prop.proposal_id
        assert versions[model.version].status == "retired" and versions[got.version].previous == model.version
        assert s.scalar(select(DecisionRow.model_version).where(DecisionRow.event_id == "evt-shadow-probe")) == model.version
        assert rt.ledger.verify(s).ok
