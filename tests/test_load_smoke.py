"""``evals.load`` bounded to a few seconds at a small rate: the real service as a child process, this
process the client, events, questions and signed webhooks on open-loop schedules. Asserts what must hold at
any speed (no errors, nothing lost, every webhook enriched exactly once), never a timing."""

from __future__ import annotations

import pytest

from evals.load import markdown, run


@pytest.mark.slow
def test_a_short_mixed_load_has_no_errors_and_loses_nothing() -> None:
    out = run(seconds=6, rate=8, ask_rate=1, webhook_rate=2, users=60, days=10, drain_seconds=60)
    print(markdown(out))
    assert out["errors"]["total"] == 0, out["errors"]
    for name, kind in out["kinds"].items():
        assert kind["answered"] == kind["scheduled"] > 0, (name, kind)
    i = out["integrity"]
    assert i["accepted_events"] == out["kinds"]["events"]["scheduled"] == 48
    assert i["stored_decisions"] == i["accepted_events"] and i["stored_equals_accepted"]
    # the run's deliveries plus the warm-up's one, each ended in one job done, one enrichment, one audit entry
    assert i["webhooks_accepted"] == out["kinds"]["webhook"]["scheduled"] + 1
    assert i["webhook_jobs_by_status"] == {"done": i["webhooks_accepted"]}
    assert i["every_webhook_enriched_exactly_once"], i["not_exactly_once"]
    assert i["webhooks_enriched_exactly_once"] == i["webhooks_accepted"]
