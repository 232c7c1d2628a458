"""Re-explaining history under a new model: exact attributions stored beside the original explanations, which
stay untouched; resumable, idempotent, filtered by time; on SQLite and PostgreSQL; and the CLI command."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
import shap
from sqlalchemy import select
from typer.testing import CliRunner

from integrations.cli import app
from integrations.runtime import Runtime
from integrations.services.deps import ServiceDeps
from integrations.services.reexplain import reexplain_decisions
from integrations.settings import Settings
from knowledge import POLICY_DIR
from risk.explain import feature_vector
from risk.policy import load_policies
from risk.store.reexplain import ReexplanationRow
from risk.store.schema import DecisionRow, ExplanationRow
from risk.training import train_on_world
from tests.apiserver import make_home


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A home with a trained model, and a second model trained on the same world with other settings."""
    h = make_home(tmp_path_factory.mktemp("reexplain"))
    newer, _, _ = train_on_world(h.world, load_policies(POLICY_DIR), test_days=3,
                                 params={"max_iter": 40, "max_leaf_nodes": 15, "learning_rate": 0.2})
    return h, newer


@pytest.fixture
def rt(base, db_url):
    h, _ = base
    r = Runtime(Settings(home=h.home, config=h.config, database_url=db_url))
    list(r.engine.score_many(h.events(-150)))
    yield r
    r.db.dispose()


def _originals(rt) -> dict[str, list[float]]:
    with rt.sessions() as s:
        return {d: c for d, c in s.execute(select(ExplanationRow.decision_id, ExplanationRow.contributions))}


def test_reexplains_every_decision_exactly_and_keeps_the_original(rt, base):
    _, newer = base
    deps = ServiceDeps.from_runtime(rt)
    before = _originals(rt)
    with rt.sessions() as s:
        ts = sorted(s.scalars(select(DecisionRow.ts_ms)))
    cut = datetime.fromtimestamp(ts[len(ts) // 2] / 1000, UTC)
    seen: list[tuple[int, int]] = []
    first = reexplain_decisions(deps=deps, model=newer, since=cut, chunk=16, progress=lambda d, t: seen.append((d, t)))
    assert first.pending == first.reexplained == sum(t >= ts[len(ts) // 2] for t in ts)
    assert first.engine == "kernel" and first.unexplainable == 0 and first.missing_features == 0
    assert seen[-1] == (first.reexplained, first.pending) and len(seen) == -(-first.pending // 16)
    rest = reexplain_decisions(deps=deps, model=newer, chunk=50)
    assert rest.pending == rest.reexplained == len(ts) - first.reexplained
    assert reexplain_decisions(deps=deps, model=newer).reexplained == 0  # resumable: nothing left
    assert reexplain_decisions(deps=deps, model=rt.model).pending == 0  # its own decisions need no re-explanation

    with rt.sessions() as s:
        rows = s.execute(select(ReexplanationRow, ExplanationRow.body).join(
            ExplanationRow, ExplanationRow.decision_id == ReexplanationRow.decision_id)).all()
    assert len(rows) == len(ts) and {r.model_version for r, _ in rows} == {newer.version}
    X = np.array([feature_vector(body["factors"]) for _, body in rows])
    assert np.isnan(X).any()
    ex = shap.TreeExplainer(newer.clf)
    ref = np.asarray(ex.shap_values(X, check_additivity=False)).reshape(X.shape)
    got = np.array([r.contributions for r, _ in rows])
    assert np.abs(got - ref).max() <= 1e-9
    margin = newer.margin(X)
    assert np.allclose([r.margin for r, _ in rows], margin, rtol=0, atol=1e-12)
    assert all(r.status == "ok" and r.additivity_error < 1e-9 for r, _ in rows)
    assert _originals(rt) == before  # what each decision recorded is untouched


def test_reexplain_rejects_a_naive_time(rt, base):
    with pytest.raises(ValueError, match="since"):
        reexplain_decisions(deps=ServiceDeps.from_runtime(rt), model=base[1], since=datetime(2026, 1, 1))


def test_cli_reexplain(base, tmp_path, monkeypatch):
    h, newer = base
    r = h.runtime()
    list(r.engine.score_many(h.events(-40)))
    r.db.dispose()
    path = newer.save(tmp_path / "models")
    monkeypatch.setenv("GLASSGATE_HOME", str(h.home))
    monkeypatch.setenv("GLASSGATE_CONFIG", str(h.config))
    monkeypatch.delenv("GLASSGATE_DATABASE_URL", raising=False)
    runner = CliRunner()
    bad = runner.invoke(app, ["reexplain", "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.output
    res = runner.invoke(app, ["reexplain", "--model", str(path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["model_version"] == newer.version and out["reexplained"] == out["pending"] >= 40
