"""The Alembic migrations and the SQLAlchemy models must describe the same schema, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gpufleet.adapters.db import migrate
from gpufleet.adapters.db.models import Base
from gpufleet.platform.database import Database
from gpufleet.remediation.intake import evidence_query


def test_models_and_migrations_agree(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations disagree; add a migration: {diff}"


def test_database_is_at_the_head_revision(db: Database) -> None:
    assert migrate.current_revision(db.engine) == migrate.head_revision()
    assert db.is_current()


@pytest.mark.parametrize("latest", [None, 50])
def test_a_cases_evidence_is_read_through_an_index(db: Database, latest: int | None) -> None:
    """An escalation reads its case's evidence inside the write transaction; a scan of every event ever stored there
    grows with the fleet's history. The queries checked are the ones the engine runs: all of it, and a ticket's
    newest fifty."""
    with db.engine.connect() as conn:
        query = str(evidence_query(7, latest).compile(conn, compile_kwargs={"literal_binds": True}))
        if db.dialect == "sqlite":
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")  # an empty table would be scanned anyway
            plan = " ".join(str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {query}"))
    assert "ix_health_events_case" in plan, plan
