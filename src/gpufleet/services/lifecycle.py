"""Moving a node through its lifecycle: the table decides, this module locks, applies and records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import Node, NodeEvent
from gpufleet.domain.lifecycle import NodeState, TransitionContext, next_state
from gpufleet.services.context import Actor, Role
from gpufleet.services.database import Database
from gpufleet.services.errors import Forbidden, InvalidInput, VersionConflict
from gpufleet.services.node_refs import has_active_allocation, resolve_node_id

MAX_REASON = 2000


@dataclass(frozen=True)
class TransitionResult:
    node_id: str
    event: str
    from_state: str
    to_state: str
    version: int
    at: datetime
    event_id: int


def check_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise InvalidInput("a reason is required for every change", field="reason")
    if len(text) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters", field="reason")
    return text


def apply_transition(
    session: Session,
    node_id: str,
    event: str,
    reason: str,
    actor: Actor,
    now: datetime,
    expected_version: int | None = None,
    force: bool = False,
    data: dict[str, Any] | None = None,
) -> TransitionResult:
    """Apply one lifecycle event inside the caller's transaction, with its append-only event row.

    Controllers call this inside their own unit of work so that a transition and whatever caused it commit together.
    """
    row = session.execute(select(Node.state, Node.version, Node.cluster_id).where(Node.id == node_id)).one()
    if expected_version is not None and row.version != expected_version:
        raise VersionConflict(node_id, expected_version, row.version)
    current = NodeState(row.state)
    ctx = TransitionContext(
        has_active_allocation=event == "decommission" and has_active_allocation(session, node_id, now),
        forced=force,
    )
    target = next_state(current, event, ctx)
    result = session.execute(
        update(Node)
        .where(Node.id == node_id, Node.version == row.version)
        .values(state=target.value, state_since=now, version=row.version + 1, updated_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        # Another writer got in between our read and our write.
        actual = session.execute(select(Node.version).where(Node.id == node_id)).scalar_one()
        raise VersionConflict(node_id, row.version, actual)
    event_id = session.execute(
        insert(NodeEvent)
        .values(
            node_id=node_id,
            at=now,
            kind="transition",
            event=event,
            from_state=current.value,
            to_state=target.value,
            actor=actor.name,
            reason=reason,
            correlation_id=actor.correlation_id,
            cluster_id=row.cluster_id,
            data=data or {},
        )
        .returning(NodeEvent.id)
    ).scalar_one()
    return TransitionResult(node_id, event, current.value, target.value, row.version + 1, now, event_id)


def transition(
    db: Database,
    node_ref: str,
    event: str,
    reason: str | None,
    actor: Actor,
    expected_version: int | None = None,
    force: bool = False,
) -> TransitionResult:
    """The user-facing transition: resolve the node, check the caller, apply, record, commit."""
    if actor.role < Role.OPERATOR:
        raise Forbidden("changing a node needs the operator role")
    if actor.tenant_scoped:
        raise Forbidden("a tenant-scoped token cannot change a node's lifecycle")
    text = check_reason(reason)
    now = db.clock.now()
    with db.transaction() as session:
        node_id = resolve_node_id(session, node_ref, actor, now)
        return apply_transition(session, node_id, event.strip(), text, actor, now, expected_version, force)
