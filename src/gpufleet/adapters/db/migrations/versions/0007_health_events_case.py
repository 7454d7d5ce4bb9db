"""index a case's evidence

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ONLY_CASE_EVENTS = sa.text("case_id IS NOT NULL")


def upgrade() -> None:
    # Reading a case's evidence (an escalation ticket, `cases show`) scanned every health event ever stored: at a
    # few hundred thousand events that was tens of milliseconds inside the write transaction that escalates the case.
    # Only events attached to a case are indexed, so the noise that makes up most telemetry is written as before.
    op.create_index(
        "ix_health_events_case",
        "health_events",
        ["case_id"],
        unique=False,
        sqlite_where=ONLY_CASE_EVENTS,
        postgresql_where=ONLY_CASE_EVENTS,
    )


def downgrade() -> None:
    op.drop_index("ix_health_events_case", table_name="health_events")
