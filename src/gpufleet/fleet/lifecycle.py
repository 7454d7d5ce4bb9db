"""Moving a node through its lifecycle: the table decides, this module locks, applies and records."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import String, Table, and_, bindparam, case, insert, literal_column, select, update
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import Node, NodeEvent, UTCDateTime
from gpufleet.domain.lifecycle import (
    NodeState,
    TransitionContext,
    has_guards,
    next_state,
    unguarded_targets,
    uses_guard,
    validation_passed,
)
from gpufleet.fleet.admission import passed_validation
from gpufleet.fleet.refs import has_active_allocation, resolve_node_id
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
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


NODES = cast(Table, Node.__table__)
EVENTS = cast(Table, NodeEvent.__table__)


NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _constant(name: str) -> Any:
    """A state or event name written into the statement's text.

    These come from the declared lifecycle table, never from a caller, and are checked to be plain names; as text
    they cost nothing per execution, where a bound constant is processed on every call.
    """
    if not NAME.match(name):
        raise ValueError(f"not a lifecycle name: {name!r}")
    return literal_column(f"'{name}'", String)


def _movable(event: str, check_version: bool) -> tuple[Any, Any]:
    """The WHERE clause that picks the node only from a state this event leaves, and the CASE naming its target."""
    targets = unguarded_targets(event)
    target_of = case(*((NODES.c.state == _constant(s.value), _constant(t.value)) for s, t in targets.items()))
    where = [NODES.c.id == bindparam("b_node"), NODES.c.state.in_([_constant(s.value) for s in targets])]
    if check_version:
        where.append(NODES.c.version == bindparam("b_version"))
    return and_(*where), target_of


@lru_cache(maxsize=256)
def _conditional_update(event: str, check_version: bool) -> Any:
    """The one-statement node UPDATE for an unguarded event, built once per event and reused.

    Plain Core on the table (not the ORM entity) with bind parameters keeps the hot path free of per-call statement
    construction and ORM synchronisation, which otherwise cost more than the database work itself.
    """
    where, target_of = _movable(event, check_version)
    return (
        update(NODES)
        .where(where)
        .values(
            previous_state=NODES.c.state,
            state=target_of,
            state_since=bindparam("b_now", type_=UTCDateTime()),
            version=NODES.c.version + ONE,
            updated_at=bindparam("b_now", type_=UTCDateTime()),
        )
        .returning(NODES.c.previous_state, NODES.c.state, NODES.c.version, NODES.c.cluster_id, NODES.c.id)
    )


_INSERT_EVENT = insert(EVENTS)
_EVENT_COLUMNS = (
    "node_id",
    "at",
    "kind",
    "event",
    "from_state",
    "to_state",
    "actor",
    "reason",
    "correlation_id",
    "cluster_id",
    "data",
    "version",
)


ONE: Any = literal_column("1")
NO_DATA: dict[str, Any] = {"sqlite": literal_column("'{}'"), "postgresql": literal_column("'{}'::json")}
"""An event without data, as text in the statement: most transitions carry none, and a bound JSON value is
serialised on every call."""


def _event_from(
    event: str, node_id: Any, from_state: Any, to_state: Any, cluster_id: Any, version: Any, data: Any
) -> Any:
    """INSERT of the event row from a SELECT that yields the node's side of it; returns the row it wrote."""
    source = select(
        node_id,
        bindparam("b_now", type_=UTCDateTime()),
        _constant("transition"),
        _constant(event),
        from_state,
        to_state,
        bindparam("b_actor"),
        bindparam("b_reason"),
        bindparam("b_correlation_id"),
        cluster_id,
        data,
        version,
    )
    return (
        insert(EVENTS)
        .from_select(list(_EVENT_COLUMNS), source)
        .returning(EVENTS.c.from_state, EVENTS.c.to_state, EVENTS.c.version, EVENTS.c.cluster_id, EVENTS.c.id)
    )


def _data(dialect: str, with_data: bool) -> Any:
    return bindparam("b_data", type_=EVENTS.c.data.type) if with_data else NO_DATA[dialect]


@lru_cache(maxsize=256)
def _update_with_event(event: str, check_version: bool, with_data: bool) -> Any:
    """PostgreSQL: the conditional UPDATE and its event INSERT as one statement (a data-modifying CTE).

    One round trip instead of two; both rows still commit or vanish together.
    """
    moved = _conditional_update(event, check_version).cte("moved")
    m = moved.c
    return _event_from(event, m.id, m.previous_state, m.state, m.cluster_id, m.version, _data("postgresql", with_data))


@lru_cache(maxsize=256)
def _event_with_update(event: str, check_version: bool, with_data: bool) -> Any:
    """SQLite: the event INSERT claims the node's next version and a trigger applies it to the node (migration 0006).

    SQLite has no data-modifying CTE; this keeps the transition one statement there too, both rows in the same
    statement's atomic write. The SELECT finds no row when the node is not in a state the event leaves (or has moved
    past the expected version), and then nothing is written.
    """
    where, target_of = _movable(event, check_version)
    claimed = (
        select(
            NODES.c.id,
            NODES.c.state,
            target_of.label("to_state"),
            NODES.c.cluster_id,
            (NODES.c.version + ONE).label("version"),
        )
        .where(where)
        .subquery("claimed")
    )
    c = claimed.c
    return _event_from(event, c.id, c.state, c.to_state, c.cluster_id, c.version, _data("sqlite", with_data))


@lru_cache(maxsize=256)
def _single_statement(event: str) -> bool:
    return not has_guards(event) and bool(unguarded_targets(event))


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
    Unguarded events take one statement that moves the node by its current state (the table's source -> target map)
    and writes the event; anything that finds no row there, and every guarded event, goes through the checked path,
    which reads the node and raises the precise error.
    """
    if _single_statement(event):
        params: dict[str, Any] = {
            "b_node": node_id,
            "b_now": now,
            "b_actor": actor.name,
            "b_reason": reason,
            "b_correlation_id": actor.correlation_id,
        }
        if expected_version is not None:
            params["b_version"] = expected_version
        if data:
            params["b_data"] = data
        connection = session.connection()
        one_statement = _update_with_event if connection.dialect.name == "postgresql" else _event_with_update
        row = connection.execute(one_statement(event, expected_version is not None, bool(data)), params).one_or_none()
        if row is not None:
            return TransitionResult(node_id, event, row[0], row[1], row[2], now, row[4])
    return _checked_transition(session, node_id, event, reason, actor, now, expected_version, force, data)


def _checked_transition(
    session: Session,
    node_id: str,
    event: str,
    reason: str,
    actor: Actor,
    now: datetime,
    expected_version: int | None,
    force: bool,
    data: dict[str, Any] | None,
) -> TransitionResult:
    row = session.execute(
        select(Node.state, Node.version, Node.cluster_id, Node.state_since).where(Node.id == node_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no node with chassis id '{node_id}'")
    if expected_version is not None and row.version != expected_version:
        raise VersionConflict(node_id, expected_version, row.version)
    current = NodeState(row.state)
    ctx = TransitionContext(
        has_active_allocation=has_guards(event) and has_active_allocation(session, node_id, now),
        validation_passed=uses_guard(event, validation_passed)
        and passed_validation(session, node_id, row.cluster_id, row.state_since),
        forced=force,
    )
    target = next_state(current, event, ctx)
    result = session.execute(
        update(Node)
        .where(Node.id == node_id, Node.version == row.version)
        .values(
            previous_state=current.value, state=target.value, state_since=now, version=row.version + 1, updated_at=now
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        # Another writer got in between our read and our write.
        actual = session.execute(select(Node.version).where(Node.id == node_id)).scalar_one()
        raise VersionConflict(node_id, row.version, actual)
    extra = dict(data or {})
    if force:
        extra["forced"] = True
    return _record(
        session, node_id, event, current.value, target.value, row.version + 1, row.cluster_id, reason, actor, now, extra
    )


def _record(
    session: Session,
    node_id: str,
    event: str,
    from_state: str,
    to_state: str,
    version: int,
    cluster_id: int,
    reason: str,
    actor: Actor,
    now: datetime,
    data: dict[str, Any] | None,
) -> TransitionResult:
    inserted = session.connection().execute(
        _INSERT_EVENT,
        {
            "node_id": node_id,
            "at": now,
            "kind": "transition",
            "event": event,
            "from_state": from_state,
            "to_state": to_state,
            "actor": actor.name,
            "reason": reason,
            "correlation_id": actor.correlation_id,
            "cluster_id": cluster_id,
            "data": data or {},
            "version": version,
        },
    )
    event_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
    return TransitionResult(node_id, event, from_state, to_state, version, now, event_id)


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
