"""agent requests

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 14:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gpufleet.adapters.db.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", gpufleet.adapters.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", gpufleet.adapters.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", gpufleet.adapters.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_agent_requests_node_id_nodes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_requests")),
    )
    with op.batch_alter_table("agent_requests", schema=None) as batch_op:
        batch_op.create_index("ix_agent_requests_node_status", ["node_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agent_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_requests_node_status")
    op.drop_table("agent_requests")
