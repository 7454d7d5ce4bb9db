"""The Alembic migrations and the SQLAlchemy models must describe the same schema, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gpufleet.adapters.db import migrate
from gpufleet.adapters.db.models import Base
from gpufleet.services.database import Database


def test_models_and_migrations_agree(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations disagree; add a migration: {diff}"


def test_database_is_at_the_head_revision(db: Database) -> None:
    assert migrate.current_revision(db.engine) == migrate.head_revision()
    assert db.is_current()
