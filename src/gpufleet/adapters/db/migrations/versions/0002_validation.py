"""validation: per-cluster policies, attempts with their pass results, and node bans

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:10:36.660179
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gpufleet.adapters.db.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "validation_policies",
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("fast_track_days", sa.Integer(), nullable=False),
        sa.Column("fast_track_suite", sa.String(length=40), nullable=False),
        sa.Column("fast_track_passes", sa.Integer(), nullable=False),
        sa.Column("slow_path_suite", sa.String(length=40), nullable=False),
        sa.Column("slow_path_passes", sa.Integer(), nullable=False),
        sa.Column("canary_suite", sa.String(length=40), nullable=False),
        sa.Column("config_version", sa.String(length=100), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", gpufleet.adapters.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_validation_policies_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("cluster_id", name=op.f("pk_validation_policies")),
    )
    op.create_table(
        "node_bans",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("at", gpufleet.adapters.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("correlation_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", gpufleet.adapters.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_node_bans_node_id_nodes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_bans")),
    )
    with op.batch_alter_table("node_bans", schema=None) as batch_op:
        batch_op.create_index("ix_node_bans_node_at", ["node_id", "at"], unique=False)

    op.create_table(
        "validation_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=20), nullable=False),
        sa.Column("suite", sa.String(length=40), nullable=False),
        sa.Column("passes_required", sa.Integer(), nullable=False),
        sa.Column("config_version", sa.String(length=100), nullable=True),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("passes_recorded", sa.Integer(), nullable=False),
        sa.Column("first_failed_pass", sa.Integer(), nullable=True),
        sa.Column("started_at", gpufleet.adapters.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", gpufleet.adapters.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", gpufleet.adapters.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_validation_attempts_node_id_nodes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_attempts")),
        sa.UniqueConstraint("node_id", "attempt", name=op.f("uq_validation_attempts_node_id_attempt")),
    )
    with op.batch_alter_table("validation_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_validation_attempts_status_path", ["status", "path"], unique=False)

    op.create_table(
        "validation_results",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("attempt_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("pass_number", sa.Integer(), nullable=False),
        sa.Column("started_at", gpufleet.adapters.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", gpufleet.adapters.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.Column("result", sa.String(length=10), nullable=False),
        sa.Column("reported_result", sa.String(length=10), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("failures", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["validation_attempts.id"],
            name=op.f("fk_validation_results_attempt_id_validation_attempts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_results")),
        sa.UniqueConstraint("attempt_id", "pass_number", name=op.f("uq_validation_results_attempt_id_pass_number")),
    )


def downgrade() -> None:
    op.drop_table("validation_results")
    with op.batch_alter_table("validation_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_validation_attempts_status_path")

    op.drop_table("validation_attempts")
    with op.batch_alter_table("node_bans", schema=None) as batch_op:
        batch_op.drop_index("ix_node_bans_node_at")

    op.drop_table("node_bans")
    op.drop_table("validation_policies")
