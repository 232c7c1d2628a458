"""The Alembic migration history against the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.dialects.postgresql import JSONB

import risk.audit  # noqa: F401  (registers the ledger's tables)
import risk.store.control  # noqa: F401  (registers the control-loop tables)
import risk.store.reexplain  # noqa: F401  (registers the re-explanations table)
import risk.store.schema  # noqa: F401  (registers the decision tables)
import risk.store.service  # noqa: F401  (registers the service tables)
import risk.store.vendor  # noqa: F401  (registers the vendor tables)
from risk.store.base import Base
from risk.store.db import make_engine
from risk.store.migrate import alembic_config, current, upgrade

MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture
def engine(db_url) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def _head(engine: Engine) -> str:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def _diff(engine: Engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


def _snapshot(engine: Engine) -> dict:
    """Tables, columns (with types), indexes and unique constraints, as the database reports them."""
    insp = inspect(engine)
    out = {}
    for t in sorted(insp.get_table_names()):
        out[t] = (
            [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)],
            sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(t)),
            sorted((u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(t)),
            insp.get_pk_constraint(t)["constrained_columns"],
        )
    return out


def test_the_models_register_the_expected_tables():
    # Guards the other tests: an empty metadata would make "no differences" trivially true.
    assert MODEL_TABLES == {"audit_head", "audit_log", "counters", "decisions", "explanations", "sessions",
                            "user_profiles", "verdicts", "proposals", "approvals", "executions",
                            "access_exceptions", "session_revocations", "policy_versions", "jobs",
                            "inbound_deliveries", "ticket_enrichments", "vendor_observations", "ingest_cursors",
                            "iam_attempts", "iam_expiries", "reexplanations", "model_versions", "shadow_scores"}


def test_upgrade_creates_every_model_table_at_head(engine):
    assert current(engine) is None
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert MODEL_TABLES <= tables
    assert tables - MODEL_TABLES == {"alembic_version"}
    assert current(engine) == _head(engine)
    for name, table in Base.metadata.tables.items():
        assert {c["name"] for c in inspect(engine).get_columns(name)} == set(table.columns.keys()), name


def test_upgrade_twice_is_a_no_op(engine):
    upgrade(engine)
    before = _snapshot(engine)
    with engine.begin() as c:
        c.execute(text("INSERT INTO counters (name, value) VALUES ('decision_seq', 41)"))
    upgrade(engine)
    assert _snapshot(engine) == before
    assert current(engine) == _head(engine)
    with engine.connect() as c:
        assert c.execute(text("SELECT value FROM counters WHERE name = 'decision_seq'")).scalar_one() == 41
        assert c.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1


def test_migration_matches_the_models(engine):
    upgrade(engine)
    assert _diff(engine) == []


def test_the_comparison_would_notice_a_missing_index(engine):
    # Negative control: proves compare_metadata really inspects this database (schema and all).
    upgrade(engine)
    with engine.begin() as c:
        c.execute(text("DROP INDEX ix_decisions_user_ts"))
    diff = _diff(engine)
    assert [(d[0], d[1].name) for d in diff] == [("add_index", "ix_decisions_user_ts")]


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_json_columns_are_jsonb_on_postgresql(engine):
    assert engine.dialect.name == "postgresql"
    upgrade(engine)
    insp = inspect(engine)
    for table, col in [("decisions", "rules"), ("decisions", "event"), ("explanations", "body"),
                       ("explanations", "contributions"), ("sessions", "state"), ("user_profiles", "state")]:
        typ = next(c["type"] for c in insp.get_columns(table) if c["name"] == col)
        assert isinstance(typ, JSONB), (table, col, typ)


def test_downgrade_to_base_and_back(engine):
    upgrade(engine)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current(engine) is None
    upgrade(engine)
    assert _diff(engine) == []
