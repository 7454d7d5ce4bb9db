"""Moving a node through its lifecycle: the table decides, this module locks, applies and records."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from gpufleet.domain.lifecycle import (
    NodeState,
    TransitionContext,
    has_guards,
    next_state,
    unguarded_targets,
    uses_guard,
    validation_passed,
)
from gpufleet.fleet import store
from gpufleet.fleet.admission import passed_validation
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound, VersionConflict

MAX_REASON = 2000
CHASSIS_ID = re.compile(r"^ch-[0-9a-f]{16}$")


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


@lru_cache(maxsize=256)
def _single_statement(event: str) -> bool:
    return not has_guards(event) and bool(unguarded_targets(event))


def apply_transition(
    session: UnitOfWork,
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
    Unguarded events take one statement that moves the node by its current state (the table's source -> target map)
    and writes the event; anything that finds no row there, and every guarded event, goes through the checked path,
    which reads the node and raises the precise error.
    """
    if _single_statement(event):
        row = store.move_in_one_statement(session, node_id, event, reason, actor, now, expected_version, data)
        if row is not None:
            return TransitionResult(node_id, event, row[0], row[1], row[2], now, row[4])
    return _checked_transition(session, node_id, event, reason, actor, now, expected_version, force, data)


def _checked_transition(
    session: UnitOfWork,
    node_id: str,
    event: str,
    reason: str,
    actor: Actor,
    now: datetime,
    expected_version: int | None,
    force: bool,
    data: dict[str, Any] | None,
) -> TransitionResult:
    row = store.node_for_transition(session, node_id)
    if row is None:
        raise NotFound(f"no node with chassis id '{node_id}'")
    if expected_version is not None and row.version != expected_version:
        raise VersionConflict(node_id, expected_version, row.version)
    current = NodeState(row.state)
    ctx = TransitionContext(
        has_active_allocation=has_guards(event) and store.has_active_allocation(session, node_id, now),
        validation_passed=uses_guard(event, validation_passed)
        and passed_validation(session, node_id, row.cluster_id, row.state_since),
        forced=force,
    )
    target = next_state(current, event, ctx)
    if not store.move_node(session, node_id, row.version, current.value, target.value, now):
        # Another writer got in between our read and our write.
        raise VersionConflict(node_id, row.version, store.node_version(session, node_id))
    extra = dict(data or {})
    if force:
        extra["forced"] = True
    version = row.version + 1
    event_id = store.insert_transition_event(
        session, node_id, event, current.value, target.value, version, row.cluster_id, reason, actor, now, extra
    )
    return TransitionResult(node_id, event, current.value, target.value, version, now, event_id)


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
        # A chassis id goes straight to the single-statement path; other names are resolved first.
        node_id = node_ref if CHASSIS_ID.match(node_ref) else resolve_node_id(session, node_ref, actor, now)
        return apply_transition(session, node_id, event.strip(), text, actor, now, expected_version, force)
