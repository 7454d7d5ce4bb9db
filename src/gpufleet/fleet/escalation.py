"""Nodes stuck in a state past its time limit, and the one escalation each such stay gets.

Every non-final state in the lifecycle table has a time limit. A node that outstays it is overdue; the first time that
is noticed, an ``escalated`` event is written so its owner hears about it once per stay, not on every run.
Runs may overlap (several controller processes, a cron job and an operator at the shell), so the check and the insert
happen under a lock on the node row: a second runner either skips a node being escalated or sees the event once the
first commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gpufleet.domain.lifecycle import STATE_POLICIES, NodeState, deadline, is_overdue
from gpufleet.fleet import store
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden

ESCALATED = store.ESCALATED
BATCH = 500


@dataclass(frozen=True)
class StuckNode:
    id: str
    hostname: str
    serial: str
    cluster: str
    state: str
    state_since: datetime
    deadline: datetime
    overdue_by: timedelta
    owner: str
    action: str
    escalated_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hostname": self.hostname,
            "serial": self.serial,
            "cluster": self.cluster,
            "state": self.state,
            "state_since": self.state_since.isoformat(),
            "deadline": self.deadline.isoformat(),
            "overdue_seconds": int(self.overdue_by.total_seconds()),
            "owner": self.owner,
            "action": self.action,
            "escalated_at": self.escalated_at.isoformat() if self.escalated_at else None,
        }


@dataclass
class EscalationReport:
    escalated: list[StuckNode] = field(default_factory=list)
    already_escalated: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "escalated": len(self.escalated),
            "already_escalated": self.already_escalated,
            "nodes": [n.as_dict() for n in self.escalated],
        }


def _to_stuck(row: Any, now: datetime) -> StuckNode | None:
    state = NodeState(row.state)
    # The SQL filter narrows; the domain rule decides, so the two can never disagree about who is overdue.
    if not is_overdue(state, row.state_since, now):
        return None
    due = deadline(state, row.state_since)
    assert due is not None  # is_overdue is only true for states with a time limit
    policy = STATE_POLICIES[state]
    return StuckNode(
        id=row.id,
        hostname=row.hostname,
        serial=row.serial,
        cluster=row.cluster,
        state=state.value,
        state_since=row.state_since,
        deadline=due,
        overdue_by=now - due,
        owner=policy.owner,
        action=policy.action,
        escalated_at=row.escalated_at,
    )


def find_stuck(db: Database, actor: Actor, cluster: str | None = None) -> list[StuckNode]:
    """Every node past its state's time limit, longest overdue first, with when it was escalated (if it was)."""
    now = db.clock.now()
    with db.reader() as session:
        rows = store.stuck_nodes(session, actor, now, cluster)
    stuck = [s for s in (_to_stuck(r, now) for r in rows) if s is not None]
    return sorted(stuck, key=lambda s: (-s.overdue_by, s.id))


def _event(node: StuckNode, cluster_id: int, actor: Actor, now: datetime) -> dict[str, Any]:
    limit = STATE_POLICIES[NodeState(node.state)].time_limit
    return {
        "node_id": node.id,
        "at": now,
        "kind": ESCALATED,
        "event": None,
        "from_state": node.state,
        "to_state": node.state,
        "actor": actor.name,
        "reason": (
            f"in {node.state} since {node.state_since.isoformat()}, past its limit of {limit}; "
            f"owner {node.owner} should {node.action}"
        ),
        "correlation_id": actor.correlation_id,
        "cluster_id": cluster_id,
        "data": {
            "state_since": node.state_since.isoformat(),
            "deadline": node.deadline.isoformat(),
            "owner": node.owner,
            "limit_seconds": int(limit.total_seconds()) if limit else None,
        },
    }


def escalate_overdue(db: Database, actor: Actor, dry_run: bool = False, batch_size: int = BATCH) -> EscalationReport:
    """Write one ``escalated`` event for each overdue node not yet escalated in its current stay.

    Idempotent: a second run finds nothing new until a node enters a state again and outstays it again.
    Works in batches, each its own short transaction, so it never holds many row locks for long.
    """
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("escalating nodes needs the operator role and a token not scoped to a tenant")
    now = db.clock.now()
    report = EscalationReport(dry_run=dry_run)
    report.already_escalated = sum(1 for s in find_stuck(db, actor) if s.escalated_at is not None)
    after = ""
    while True:
        with db.transaction() as session:
            rows = store.unescalated_batch(session, now, after, batch_size, lock=not dry_run)
            if not rows:
                return report
            after = rows[-1].id
            due = store.still_due(session, now, [r.id for r in rows]) if not dry_run else {r.id for r in rows}
            events = []
            for row in rows:
                node = _to_stuck(row, now)
                if node is None or row.id not in due:
                    continue
                report.escalated.append(node)
                events.append(_event(node, row.cluster_id, actor, now))
            if dry_run:
                session.rollback()
            elif events:
                store.insert_events(session, events)


__all__ = ["EscalationReport", "StuckNode", "escalate_overdue", "find_stuck"]
