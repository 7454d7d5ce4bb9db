"""Finding a node the way people name it (chassis id, serial or hostname) and what a caller may see."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, exists, or_, select
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import Allocation, Node
from gpufleet.domain.lifecycle import NodeState
from gpufleet.platform.context import Actor
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound


def has_active_allocation(session: Session, node_id: str, now: datetime) -> bool:
    clause = exists().where(
        Allocation.node_id == node_id,
        Allocation.starts_at <= now,
        or_(Allocation.ends_at.is_(None), Allocation.ends_at > now),
    )
    return bool(session.execute(select(clause)).scalar())


def tenant_visibility(actor: Actor, now: datetime) -> ColumnElement[bool] | None:
    """The filter that limits a tenant-scoped caller to nodes currently allocated to its tenant."""
    if actor.tenant_id is None:
        return None
    return exists().where(
        Allocation.node_id == Node.id,
        Allocation.tenant_id == actor.tenant_id,
        Allocation.starts_at <= now,
        or_(Allocation.ends_at.is_(None), Allocation.ends_at > now),
    )


def resolve_node_id(session: Session, ref: str, actor: Actor, now: datetime) -> str:
    """Turn a chassis id, serial or hostname into the chassis id, refusing what the caller may not see."""
    ref = ref.strip()
    if not ref:
        raise InvalidInput("a node reference is required", field="node")
    if len(ref) > 255:
        raise InvalidInput("a node reference is at most 255 characters", field="node")
    node_id = session.execute(select(Node.id).where(Node.id == ref)).scalar_one_or_none()
    if node_id is None:
        candidates = session.execute(
            select(Node.id, Node.state).where(or_(Node.serial == ref, Node.hostname == ref)).limit(20)
        ).all()
        live = [c for c in candidates if c.state != NodeState.DECOMMISSIONED] or candidates
        if not live:
            raise NotFound(f"no node with chassis id, serial or hostname '{ref}'")
        if len(live) > 1:
            ids = ", ".join(sorted(c.id for c in live))
            raise InvalidInput(f"'{ref}' names several nodes ({ids}); use the chassis id", field="node")
        node_id = live[0].id
    visibility = tenant_visibility(actor, now)
    if visibility is not None:
        allowed = session.execute(select(Node.id).where(Node.id == node_id, visibility)).scalar_one_or_none()
        if allowed is None:
            raise Forbidden(f"node '{ref}' is not allocated to your tenant")
    return node_id
