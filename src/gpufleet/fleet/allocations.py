"""Allocating nodes to a tenant and project for a time range, and ending those allocations.

A node serves one tenant at a time, so overlapping windows are refused. Both actions are idempotent: repeating a
request that already took effect returns the stored allocation and writes no second event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import Allocation, Node, NodeEvent, Tenant
from gpufleet.domain.lifecycle import NodeState
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound, ServiceError

MAX_PROJECT = 100
MAX_REASON = 2000
_UNALLOCATABLE = frozenset({NodeState.DECOMMISSIONING.value, NodeState.DECOMMISSIONED.value})


class AllocationConflict(ServiceError):
    """The node is already held by someone else for part of the window, or cannot be allocated at all."""

    status = 409
    title = "Conflict"


@dataclass(frozen=True)
class AllocationResult:
    allocation: dict[str, Any]
    changed: bool


def _check_actor(actor: Actor) -> None:
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("allocating nodes needs the operator role and a token not scoped to a tenant")


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidInput("give a time zone (e.g. 2026-03-02T09:00:00Z)", field=field)
    return value


def _as_dict(row: Any, tenant: str, now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "node": row.node_id,
        "tenant": tenant,
        "project": row.project,
        "starts_at": row.starts_at.isoformat(),
        "ends_at": row.ends_at.isoformat() if row.ends_at else None,
        "active": row.starts_at <= now and (row.ends_at is None or row.ends_at > now),
    }


def _event(
    session: Session, node_id: str, kind: str, reason: str, actor: Actor, now: datetime, data: dict[str, Any]
) -> None:
    state, cluster_id = session.execute(select(Node.state, Node.cluster_id).where(Node.id == node_id)).one()
    session.execute(
        insert(NodeEvent).values(
            node_id=node_id,
            at=now,
            kind=kind,
            event=None,
            from_state=state,
            to_state=state,
            actor=actor.name,
            reason=reason,
            correlation_id=actor.correlation_id,
            cluster_id=cluster_id,
            data=data,
        )
    )


def allocate(
    db: Database,
    node_ref: str,
    tenant: str,
    actor: Actor,
    project: str | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    reason: str | None = None,
) -> AllocationResult:
    """Give a node to a tenant from ``starts_at`` (default now) until ``ends_at`` (default open-ended)."""
    _check_actor(actor)
    _aware(starts_at, "starts_at")
    _aware(ends_at, "ends_at")
    project = (project or "").strip() or None
    if project is not None and len(project) > MAX_PROJECT:
        raise InvalidInput(f"a project name is at most {MAX_PROJECT} characters", field="project")
    if reason is not None and len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters", field="reason")
    now = db.clock.now()
    start = starts_at or now
    if ends_at is not None and ends_at <= start:
        raise InvalidInput("ends_at must be after starts_at", field="ends_at")
    with db.transaction() as session:
        node_id = resolve_node_id(session, node_ref, actor, now)
        # Lock the node so two allocations for it are decided one after the other.
        state = session.execute(select(Node.state).where(Node.id == node_id).with_for_update()).scalar_one()
        tenant_id = session.execute(select(Tenant.id).where(Tenant.name == tenant)).scalar_one_or_none()
        if tenant_id is None:
            raise InvalidInput(f"unknown tenant '{tenant}'", field="tenant")
        overlapping = session.execute(
            select(Allocation, Tenant.name)
            .join(Tenant, Tenant.id == Allocation.tenant_id)
            .where(
                Allocation.node_id == node_id,
                or_(Allocation.ends_at.is_(None), Allocation.ends_at > start),
                *([Allocation.starts_at < ends_at] if ends_at is not None else []),
            )
            .order_by(Allocation.starts_at)
        ).all()
        for existing, holder in overlapping:
            same_start = existing.starts_at == starts_at or (starts_at is None and existing.starts_at <= now)
            same_request = existing.tenant_id == tenant_id and existing.project == project
            if same_request and existing.ends_at == ends_at and same_start:
                return AllocationResult(_as_dict(existing, holder, now), changed=False)
            raise AllocationConflict(
                f"node {node_id} is allocated to tenant '{holder}' (allocation {existing.id}, "
                f"{existing.starts_at.isoformat()} to {existing.ends_at.isoformat() if existing.ends_at else 'open'}); "
                "end that allocation first"
            )
        if state in _UNALLOCATABLE:
            raise AllocationConflict(f"node {node_id} is {state} and cannot be allocated")
        allocation_id = session.execute(
            insert(Allocation)
            .values(node_id=node_id, tenant_id=tenant_id, project=project, starts_at=start, ends_at=ends_at)
            .returning(Allocation.id)
        ).scalar_one()
        row = session.execute(select(Allocation).where(Allocation.id == allocation_id)).scalar_one()
        result = _as_dict(row, tenant, now)
        text = (reason or "").strip() or f"allocated to tenant {tenant}" + (f" project {project}" if project else "")
        _event(session, node_id, "allocated", text, actor, now, {"allocation": result})
    return AllocationResult(result, changed=True)


def end_allocation(db: Database, allocation_id: int, actor: Actor, reason: str | None = None) -> AllocationResult:
    """End an allocation now; one that has not started yet is cancelled. Ending twice changes nothing."""
    _check_actor(actor)
    if reason is not None and len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters", field="reason")
    now = db.clock.now()
    with db.transaction() as session:
        found = session.execute(
            select(Allocation, Tenant.name)
            .join(Tenant, Tenant.id == Allocation.tenant_id)
            .where(Allocation.id == allocation_id)
            .with_for_update(of=Allocation)
        ).one_or_none()
        if found is None:
            raise NotFound(f"no allocation with id {allocation_id}")
        row, tenant = found
        if row.ends_at is not None and row.ends_at <= now:
            return AllocationResult(_as_dict(row, tenant, now), changed=False)
        ends_at = max(now, row.starts_at)
        session.execute(update(Allocation).where(Allocation.id == allocation_id).values(ends_at=ends_at))
        row.ends_at = ends_at
        result = _as_dict(row, tenant, now)
        text = (reason or "").strip() or f"released from tenant {tenant}"
        _event(session, row.node_id, "released", text, actor, now, {"allocation": result})
    return AllocationResult(result, changed=True)


def list_allocations(
    db: Database, actor: Actor, node_ref: str | None = None, tenant: str | None = None, active: bool = False
) -> list[dict[str, Any]]:
    """Allocations newest first, optionally for one node or tenant, or only those in force now."""
    if actor.tenant_scoped:
        raise Forbidden("a tenant-scoped token cannot list allocations")
    now = db.clock.now()
    with db.reader() as session:
        query = select(Allocation, Tenant.name).join(Tenant, Tenant.id == Allocation.tenant_id)
        if node_ref:
            query = query.where(Allocation.node_id == resolve_node_id(session, node_ref, actor, now))
        if tenant:
            query = query.where(Tenant.name == tenant)
        if active:
            query = query.where(
                Allocation.starts_at <= now, or_(Allocation.ends_at.is_(None), Allocation.ends_at > now)
            )
        rows = session.execute(query.order_by(Allocation.starts_at.desc(), Allocation.id.desc()).limit(1000)).all()
        return [_as_dict(row, name, now) for row, name in rows]
