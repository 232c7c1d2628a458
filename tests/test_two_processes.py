"""Two `glassgate serve` processes on one PostgreSQL: every event posted to both at once is decided once,
audited once, and the ledger's order and chain stay intact."""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from risk.store.db import make_engine
from tests.apiserver import make_home
from tests.conftest import PG_URL
from tests.procserver import service

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pg_schema_url(pg_available):
    schema = f"t2p_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def test_the_same_events_posted_to_two_processes_are_decided_once(tmp_path, pg_schema_url):
    h = make_home(tmp_path, users=40, days=8)
    events = h.events(-60)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    with service(h, tmp_path / "a", GLASSGATE_DATABASE_URL=pg_schema_url) as a, \
            service(h, tmp_path / "b", GLASSGATE_DATABASE_URL=pg_schema_url) as b:
        a.start()  # first: it migrates the empty schema; the second finds it at head
        b.start()
        clients = {a: a.client("ingest"), b: b.client("ingest")}

        def post(svc, ev):
            r = clients[svc].post("/v1/events", json=ev)
            return ev["event_id"], r.status_code, r.json()

        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda job: post(*job), [(svc, ev) for ev in events for svc in (a, b)]))
        for c in clients.values():
            c.close()
        assert {code for _, code, _ in got} <= {200, 201}, [(e, c, body) for e, c, body in got if c >= 300][:3]
        created = Counter(e for e, code, _ in got if code == 201)
        assert created == Counter({ev["event_id"]: 1 for ev in events}), "each event created exactly once"
        ids: dict[str, set[str]] = {}
        for e, _, body in got:
            ids.setdefault(e, set()).add(body["decision"]["decision_id"])
        assert all(len(v) == 1 for v in ids.values()), "both processes answer with the same decision"

        verify = a.cli("audit", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr

    eng = make_engine(pg_schema_url)
    with eng.connect() as c:
        n, distinct = c.execute(text("SELECT count(*), count(DISTINCT event_id) FROM decisions")).one()
        audited = c.execute(text("SELECT subject_id, count(*) FROM audit_log WHERE kind = 'decision' "
                                 "GROUP BY subject_id")).all()
        seqs = [r[0] for r in c.execute(text("SELECT seq FROM audit_log ORDER BY seq"))]
        explained = c.execute(text("SELECT count(*) FROM explanations")).scalar()
    eng.dispose()
    assert n == distinct == explained == len(events)
    assert len(audited) == len(events) and all(k == 1 for _, k in audited), "each decision audited once"
    assert seqs == list(range(len(seqs))), "the ledger's order has no gap and no duplicate"
