"""one-statement transitions on sqlite; fewer indexes for a transition to rewrite

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite has no data-modifying CTE, so the one-statement transition there is an INSERT of the event that claims the
# node's next version; this trigger then moves the node row to the event's target state. An event whose version is
# not the node's next one (the checked path writes the node first, then its event) leaves the node alone.
TRIGGER = """
CREATE TRIGGER node_events_apply_transition AFTER INSERT ON node_events
WHEN NEW.kind = 'transition' AND NEW.version = (SELECT version + 1 FROM nodes WHERE id = NEW.node_id)
BEGIN
    UPDATE nodes
    SET previous_state = NEW.from_state, state = NEW.to_state, state_since = NEW.at,
        version = NEW.version, updated_at = NEW.at
    WHERE id = NEW.node_id;
END
"""


def upgrade() -> None:
    # Nothing looks events up by correlation id, and the index cost every event write a random page. A node's state
    # alone is filtered rarely enough that the per-cluster index and a table read serve it; every transition
    # rewrote two pages of the state-only index.
    op.drop_index("ix_node_events_correlation_id", table_name="node_events")
    op.drop_index("ix_nodes_state_id", table_name="nodes")
    if op.get_bind().dialect.name == "sqlite":
        op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS node_events_apply_transition")
    op.create_index("ix_nodes_state_id", "nodes", ["state", "id"], unique=False)
    op.create_index("ix_node_events_correlation_id", "node_events", ["correlation_id"], unique=False)
