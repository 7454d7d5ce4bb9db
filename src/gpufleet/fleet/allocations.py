"""Allocating nodes to a tenant and project for a time range, and ending those allocations.

A node serves one tenant at a time, so overlapping windows are refused. Both actions are idempotent: repeating a
request that already took effect returns the stored allocation and writes no second event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gpufleet.domain.lifecycle import LEAVING_STATES
from gpufleet.fleet import store
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound, ServiceError

MAX_PROJECT = 100
MAX_REASON = 2000


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
        state = store.lock_node_state(session, node_id)
        tenant_id = store.tenant_id_named(session, tenant)
        if tenant_id is None:
            raise InvalidInput(f"unknown tenant '{tenant}'", field="tenant")
        overlapping = store.overlapping_allocations(session, node_id, start, ends_at)
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
        if state in LEAVING_STATES:
            raise AllocationConflict(f"node {node_id} is {state} and cannot be allocated")
        row = store.insert_allocation(session, node_id, tenant_id, project, start, ends_at)
        result = _as_dict(row, tenant, now)
        text = (reason or "").strip() or f"allocated to tenant {tenant}" + (f" project {project}" if project else "")
        store.record_node_event(session, node_id, "allocated", text, actor, now, {"allocation": result})
    return AllocationResult(result, changed=True)


def end_allocation(db: Database, allocation_id: int, actor: Actor, reason: str | None = None) -> AllocationResult:
    """End an allocation now; one that has not started yet is cancelled. Ending twice changes nothing."""
    _check_actor(actor)
    if reason is not None and len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters", field="reason")
    now = db.clock.now()
    with db.transaction() as session:
        found = store.lock_allocation(session, allocation_id)
        if found is None:
            raise NotFound(f"no allocation with id {allocation_id}")
        row, tenant = found
        if row.ends_at is not None and row.ends_at <= now:
            return AllocationResult(_as_dict(row, tenant, now), changed=False)
        ends_at = max(now, row.starts_at)
        store.set_allocation_end(session, allocation_id, ends_at)
        row.ends_at = ends_at
        result = _as_dict(row, tenant, now)
        text = (reason or "").strip() or f"released from tenant {tenant}"
        store.record_node_event(session, row.node_id, "released", text, actor, now, {"allocation": result})
    return AllocationResult(result, changed=True)


def list_allocations(
    db: Database, actor: Actor, node_ref: str | None = None, tenant: str | None = None, active: bool = False
) -> list[dict[str, Any]]:
    """Allocations newest first, optionally for one node or tenant, or only those in force now."""
    if actor.tenant_scoped:
        raise Forbidden("a tenant-scoped token cannot list allocations")
    now = db.clock.now()
    with db.reader() as session:
        node_id = resolve_node_id(session, node_ref, actor, now) if node_ref else None
        rows = store.allocations(session, now, node_id, tenant, active)
        return [_as_dict(row, name, now) for row, name in rows]
