"""Shared fixtures: a fresh database per test, on SQLite and (for real) on PostgreSQL."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import text

from risk.store.db import make_engine

PG_URL = os.environ.get("GLASSGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_reachable() -> str | None:
    try:
        eng = make_engine(PG_URL)
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session", autouse=True)
def _one_openmp_thread():
    """As the CLI does: per-tree OpenMP sections stall on a busy 2-core machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="session")
def pg_available() -> None:
    problem = _pg_reachable()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"PostgreSQL must be reachable in CI at {PG_URL}: {problem}")
    pytest.skip(f"PostgreSQL not reachable at {PG_URL} (allowed outside CI only): {problem}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """A URL to an empty database: a SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'glassgate.db'}"
        return
    request.getfixturevalue("pg_available")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


# ----------------------------------------------------------------------------- shared worlds and models

@pytest.fixture(scope="session")
def policy():
    from knowledge import POLICY_DIR
    from risk.policy import load_policies

    return load_policies(POLICY_DIR)


@pytest.fixture(scope="session")
def small_world():
    """A small organisation with every attack and benign-unusual scenario in it."""
    from risk.synth import generate_world

    return generate_world(users=80, days=14, seed=11)


@pytest.fixture(scope="session")
def trained(small_world, policy):
    """(model, feature matrix of every event, split) for the small world, trained with fewer trees."""
    from risk.training import train_on_world

    return train_on_world(small_world, policy, test_days=4, params={"max_iter": 80})
