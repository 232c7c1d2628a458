"""Alembic environment: runs against the connection handed in by risk.store.migrate."""

from alembic import context

import risk.audit  # noqa: F401  (registers the ledger's tables)
import risk.store.control  # noqa: F401  (registers the control-loop tables)
import risk.store.reexplain  # noqa: F401  (registers the re-explanations table)
import risk.store.schema  # noqa: F401  (registers the decision tables)
import risk.store.service  # noqa: F401  (registers the service tables: jobs, deliveries, enrichments)
import risk.store.vendor  # noqa: F401  (registers the vendor observation and ingest cursor tables)
from risk.store.base import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through risk.store.migrate.upgrade()")
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run()
