"""Every statement remediation runs: its cases, their evidence, the brakes, the policy overrides, reboots, tickets
and the outbox. The use cases hand this module their open ``UnitOfWork`` and never build a statement themselves.

A case is loaded as a ``CaseRow`` and written back with one UPDATE guarded by its version, so two controller
processes can never both move the same case: the loser's UPDATE matches no row and it lets the case go. Claiming
takes due cases with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite's writers already hold its one write lock from
BEGIN IMMEDIATE) and stamps a short lease, so a case is worked by one process even between its transactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Executable,
    Select,
    Table,
    Update,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from gpufleet.adapters.db.list_query import list_rows
from gpufleet.adapters.db.models import (
    Cluster,
    Gpu,
    HealthEvent,
    Node,
    NotificationChannel,
    NvlinkDomain,
    OutboxMessage,
    Reboot,
    RemediationBreaker,
    RemediationCase,
    RemediationOverride,
    RemediationStep,
    Supplier,
    Ticket,
)
from gpufleet.domain.lifecycle import LEAVING_STATES, NodeState
from gpufleet.domain.remediation import ACTIVE_STATES, FINAL_CASE_STATES, CaseState
from gpufleet.fleet.refs import tenant_visibility
from gpufleet.health.ingest import EventFacts
from gpufleet.platform.context import Actor

CASES = cast(Table, RemediationCase.__table__)
STEPS = cast(Table, RemediationStep.__table__)
LEASE = timedelta(minutes=5)


@dataclass
class CaseRow:
    id: int
    node_id: str
    cluster_id: int
    nvlink_domain_id: int | None
    supplier_id: int
    pool: str | None
    hostname: str
    state: str
    state_since: datetime
    action: str | None
    attempt: int
    start_action: str
    floor_action: str | None
    kind: str
    owner: str
    drain: str
    codes: list[str]
    gpu_index: int | None
    reason: str
    policy_version: str
    dry_run: bool
    human: bool
    held: str | None
    detected_at: datetime
    opened_at: datetime
    closed_at: datetime | None
    resolution: str | None
    next_check_at: datetime | None
    deadline_at: datetime | None
    pending: dict[str, Any]
    run_id: str | None
    plan: dict[str, Any]
    ticket_id: int | None
    correlation_id: str
    version: int
    open_node_id: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    changed: set[str] = field(default_factory=set, repr=False, compare=False)
    steps: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)
    """Steps taken since the last save, written with it in one statement."""

    def set(self, **values: Any) -> None:
        for name, value in values.items():
            if getattr(self, name) != value:
                setattr(self, name, value)
                self.changed.add(name)

    @property
    def case_state(self) -> CaseState:
        return CaseState(self.state)

    @property
    def is_open(self) -> bool:
        return self.case_state not in FINAL_CASE_STATES


_COLUMNS = [f.name for f in fields(CaseRow) if f.name not in ("changed", "steps")]
_SELECT = select(*(CASES.c[name] for name in _COLUMNS))

# The statements the reaction runs for every case it opens are built once, with their values as parameters, and run
# on the session's connection: building a statement and computing its cache key cost three times what running a
# prebuilt one does (about 140 against 40 µs here), and the reaction runs some twenty per case while it holds the
# one SQLite writer.
_BY_NODES = _SELECT.where(CASES.c.open_node_id.in_(bindparam("nodes", expanding=True)))
_INSERT_STEP = insert(STEPS)
_OPENED_SINCE = select(func.count()).where(
    CASES.c.cluster_id == bindparam("cluster"), CASES.c.opened_at >= bindparam("since"), CASES.c.dry_run.is_(False)
)
_ACTIVE = (CASES.c.state.in_([s.value for s in ACTIVE_STATES]), CASES.c.dry_run.is_(False))
_COUNT_ACTIVE = select(func.count(), literal(0)).where(*_ACTIVE, CASES.c.cluster_id == bindparam("cluster"))
_COUNT_ACTIVE_IN_DOMAIN = select(
    func.count(), func.count().filter(CASES.c.nvlink_domain_id == bindparam("domain"))
).where(*_ACTIVE, CASES.c.cluster_id == bindparam("cluster"))


def run(session: Session, statement: Executable, params: dict[str, Any] | list[dict[str, Any]]) -> CursorResult[Any]:
    """A prebuilt Core statement on the session's connection, past the ORM layer it does not need."""
    return session.connection().execute(statement, params)


@lru_cache(maxsize=256)
def _update(columns: tuple[str, ...]) -> Update:
    """The guarded UPDATE of these columns, built once per set of columns a save writes."""
    return (
        update(CASES)
        .where(CASES.c.id == bindparam("w_id"), CASES.c.version == bindparam("w_version"))
        .values({name: bindparam(f"v_{name}") for name in columns})
    )


def _row(values: Any) -> CaseRow:
    return CaseRow(**{name: values[i] for i, name in enumerate(_COLUMNS)})


def load(session: Session, case_id: int) -> CaseRow | None:
    row = session.execute(_SELECT.where(CASES.c.id == case_id)).one_or_none()
    return None if row is None else _row(row)


def open_case_of(session: Session, node_id: str) -> CaseRow | None:
    row = session.execute(_SELECT.where(CASES.c.open_node_id == node_id)).one_or_none()
    return None if row is None else _row(row)


def open_cases_of(session: Session, node_ids: list[str]) -> dict[str, CaseRow]:
    if not node_ids:
        return {}
    rows = run(session, _BY_NODES, {"nodes": node_ids}).all()
    return {r.node_id: r for r in map(_row, rows)}


_INSERT = insert(CASES).returning(*(CASES.c[name] for name in _COLUMNS))


@dataclass(frozen=True)
class CaseFacts:
    """What telling whether new evidence changes an open case needs of it."""

    open_node_id: str
    codes: list[str]
    start_action: str
    kind: str
    dry_run: bool
    held: str | None


# One statement text whatever the number of nodes (``list_rows``).
_SQLITE_FACTS = (
    "SELECT json_group_array(json_array(open_node_id, json(codes), start_action, kind, dry_run, held)) "
    "FROM remediation_cases WHERE open_node_id IN (SELECT value FROM json_each(?))"
)
_PG_FACTS = (
    "SELECT open_node_id, codes, start_action, kind, dry_run, held FROM remediation_cases "
    "WHERE open_node_id = ANY(%(nodes)s)"
)


def open_case_facts(session: Session, node_ids: list[str]) -> dict[str, CaseFacts]:
    """The open cases of these nodes, by node, as triage reads them for every webhook."""
    if not node_ids:
        return {}
    rows = list_rows(session.connection(), _SQLITE_FACTS, _PG_FACTS, "nodes", node_ids)
    return {r[0]: CaseFacts(r[0], list(r[1] or []), r[2], r[3], bool(r[4]), r[5]) for r in rows}


def insert_case(session: Session, values: dict[str, Any]) -> CaseRow:
    """One compiled statement with the values as parameters: ``insert().values(...)`` with some forty columns is built
    and compiled anew for every case, which cost more than running it."""
    return _row(session.execute(_INSERT, values).one())


def step(
    case: CaseRow,
    at: datetime,
    actor: str,
    kind: str,
    detail: str,
    from_state: str | None = None,
    to_state: str | None = None,
    action: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Note a step on the case; it is written with the case's next save."""
    case.steps.append(
        {
            "case_id": case.id,
            "at": at,
            "actor": actor,
            "kind": kind,
            "from_state": from_state,
            "to_state": to_state,
            "action": action,
            "detail": detail,
            "data": data or {},
        }
    )


def save(session: Session, case: CaseRow, release: bool = True) -> bool:
    """Write what changed and the steps taken (and drop the lease); False when another writer moved the case first."""
    values = {name: getattr(case, name) for name in case.changed}
    if release and case.lease_owner is not None:
        values["lease_owner"] = None
        values["lease_until"] = None
    if not values:
        return _write_steps(session, case)
    values["version"] = case.version + 1
    columns = tuple(sorted(values))
    params = {f"v_{name}": values[name] for name in columns}
    result = run(session, _update(columns), {**params, "w_id": case.id, "w_version": case.version})
    if result.rowcount != 1:
        return False
    case.version += 1
    case.changed.clear()
    _write_steps(session, case)
    if release:
        case.lease_owner = case.lease_until = None
    return True


def _write_steps(session: Session, case: CaseRow) -> bool:
    if case.steps:
        run(session, _INSERT_STEP, case.steps)
        case.steps = []
    return True


def add_step(
    session: Session,
    case_id: int,
    at: datetime,
    actor: str,
    kind: str,
    detail: str,
    from_state: str | None = None,
    to_state: str | None = None,
    action: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    run(
        session,
        _INSERT_STEP,
        {
            "case_id": case_id,
            "at": at,
            "actor": actor,
            "kind": kind,
            "from_state": from_state,
            "to_state": to_state,
            "action": action,
            "detail": detail,
            "data": data or {},
        },
    )


def claim_due(
    session: Session, now: datetime, owner: str | None, limit: int, lease: timedelta = LEASE
) -> list[CaseRow]:
    """Due cases no other process holds, leased to ``owner`` (no lease without one), oldest due first."""
    query = (
        _SELECT.where(
            CASES.c.next_check_at <= now,
            or_(CASES.c.lease_until.is_(None), CASES.c.lease_until < now),
        )
        .order_by(CASES.c.next_check_at, CASES.c.id)
        .limit(limit)
    )
    if session.connection().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = [_row(r) for r in session.execute(query).all()]
    if rows and owner is not None:
        until = now + lease
        session.execute(
            update(CASES).where(CASES.c.id.in_([r.id for r in rows])).values(lease_owner=owner, lease_until=until)
        )
        for r in rows:
            r.lease_owner, r.lease_until = owner, until
    return rows


def claim(session: Session, case_id: int, now: datetime, owner: str | None, lease: timedelta = LEASE) -> CaseRow | None:
    """One case, if it is due and no other process holds it."""
    query = _SELECT.where(
        CASES.c.id == case_id,
        CASES.c.next_check_at <= now,
        or_(CASES.c.lease_until.is_(None), CASES.c.lease_until < now),
    )
    if session.connection().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = session.execute(query).one_or_none()
    if row is None:
        return None
    case = _row(row)
    if owner is not None:
        until = now + lease
        session.execute(update(CASES).where(CASES.c.id == case_id).values(lease_owner=owner, lease_until=until))
        case.lease_owner, case.lease_until = owner, until
    return case


def next_due(session: Session) -> datetime | None:
    """When the controller next has work (cases only; unprocessed events are work now)."""
    return session.execute(select(func.min(CASES.c.next_check_at))).scalar_one_or_none()


def count_active(session: Session, cluster_id: int, nvlink_domain_id: int | None) -> tuple[int, int]:
    """Nodes automation holds out of service now, in the cluster and in the NVLink domain (dry runs hold none); one
    read, since the domain's cases are a subset of the cluster's."""
    if nvlink_domain_id is None:
        statement, params = _COUNT_ACTIVE, {"cluster": cluster_id}
    else:
        statement, params = _COUNT_ACTIVE_IN_DOMAIN, {"cluster": cluster_id, "domain": nvlink_domain_id}
    row: Any = run(session, statement, params).one()
    return int(row[0]), int(row[1])


def opened_since(session: Session, cluster_id: int, since: datetime) -> int:
    return int(run(session, _OPENED_SINCE, {"cluster": cluster_id, "since": since}).scalar_one())


def flush(session: Session) -> None:
    """Send what the session holds to the database now (new rows get their ids)."""
    session.flush()


# ---------------------------------------------------------------------------------------------------------------
# Nodes and health events: what the intake reads and marks, and the node state the handlers check.

NODES = cast(Table, Node.__table__)
EVENTS = cast(Table, HealthEvent.__table__)


@dataclass(frozen=True)
class NodeRow:
    """What the intake needs of a node to open its case."""

    id: str
    state: str
    cluster_id: int
    nvlink_domain_id: int | None
    supplier_id: int
    hostname: str
    pool: str | None


# Statements intake runs for every burst it takes, built once (see ``run``).
_NODES = select(
    *(NODES.c[n] for n in ("id", "state", "cluster_id", "nvlink_domain_id", "supplier_id", "hostname", "labels"))
).where(NODES.c.id.in_(bindparam("ids", expanding=True)))
_NODE_STATE = select(NODES.c.state).where(NODES.c.id == bindparam("node"))
_DATA = select(EVENTS.c.data).where(EVENTS.c.id == bindparam("id"))
_MARK = (
    update(EVENTS)
    .where(EVENTS.c.id.in_(bindparam("ids", expanding=True)))
    .values(processed_at=bindparam("at"), case_id=bindparam("case"))
)
_NODE_FATAL = select(EVENTS.c.code, EVENTS.c.severity, EVENTS.c.observed_at).where(
    EVENTS.c.node_id == bindparam("node"), EVENTS.c.observed_at >= bindparam("since"), EVENTS.c.status != "resolved"
)
_NODE_CASES = select(CASES.c.kind, CASES.c.opened_at).where(
    CASES.c.node_id == bindparam("node"),
    CASES.c.opened_at >= bindparam("since"),
    CASES.c.dry_run.is_(False),
)


def nodes(session: Session, ids: list[str]) -> dict[str, NodeRow]:
    rows = run(session, _NODES, {"ids": ids}).all()
    return {
        r.id: NodeRow(
            r.id, r.state, r.cluster_id, r.nvlink_domain_id, r.supplier_id, r.hostname, (r.labels or {}).get("pool")
        )
        for r in rows
    }


def node_state(session: Session, node_id: str) -> str | None:
    return run(session, _NODE_STATE, {"node": node_id}).scalar_one_or_none()


def event_stored(session: Session, fingerprint: str) -> bool:
    """Whether an event with this fingerprint was stored before (a repeated delivery)."""
    return session.execute(select(EVENTS.c.id).where(EVENTS.c.fingerprint == fingerprint)).first() is not None


def insert_event(session: Session, **values: Any) -> int:
    result = session.execute(insert(EVENTS).returning(EVENTS.c.id).values(**values))
    return int(result.scalar_one())


def event_data(session: Session, event_id: int) -> dict[str, Any]:
    """An event's data, read only where it is needed: decoding it for every event of a burst costs more than the
    rest of the intake."""
    return dict(run(session, _DATA, {"id": event_id}).scalar_one() or {})


def set_event_data(session: Session, event_id: int, data: dict[str, Any]) -> None:
    session.execute(update(EVENTS).where(EVENTS.c.id == event_id).values(data=data))


def mark_processed(session: Session, ids: list[int], at: datetime, case_id: int | None) -> None:
    """These events are decided: attached to ``case_id``, or kept as evidence only (``None``)."""
    run(session, _MARK, {"ids": ids, "at": at, "case": case_id})


def fatal_events_since(session: Session, node_id: str, since: datetime) -> Sequence[Any]:
    """The node's unresolved events observed since ``since`` (code, severity, observed_at)."""
    return run(session, _NODE_FATAL, {"node": node_id, "since": since}).all()


def cases_opened_since(session: Session, node_id: str, since: datetime) -> Sequence[Any]:
    """The node's cases (not dry runs) opened since ``since`` (kind, opened_at)."""
    return run(session, _NODE_CASES, {"node": node_id, "since": since}).all()


# What intake reads of an event to decide on it: the columns of the facts the ingest hands a reaction, so the two
# cannot drift apart.
_FACT_COLUMNS = tuple(EVENTS.c[f.name] for f in fields(EventFacts))


@lru_cache(maxsize=4)
def _unprocessed(by_id: bool, locks: bool) -> Select[Any]:
    """Unprocessed events with a node, oldest first; only the named ones (``ids``) for a reaction. On PostgreSQL they
    are locked, skipping those another process holds, so two controllers never take the same event."""
    query = (
        select(*_FACT_COLUMNS)
        .where(EVENTS.c.processed_at.is_(None), EVENTS.c.node_id.is_not(None))
        .order_by(EVENTS.c.id)
        .limit(bindparam("limit"))
    )
    if by_id:
        query = query.where(EVENTS.c.id.in_(bindparam("ids", expanding=True)))
    return query.with_for_update(skip_locked=True) if locks else query


def unprocessed_events(session: Session, limit: int, ids: list[int] | None = None) -> Sequence[Any]:
    """Up to ``limit`` unprocessed events with a node (only ``ids`` when given), oldest first, as ``EventFacts``
    columns; on PostgreSQL locked, skipping those another process holds."""
    locks = session.connection().dialect.name == "postgresql"
    params: dict[str, Any] = {"limit": limit} if ids is None else {"limit": limit, "ids": ids}
    return run(session, _unprocessed(ids is not None, locks), params).all()


def unprocessed_facts(session: Session, ids: list[int]) -> list[Any]:
    """These events, as ``EventFacts`` columns, if they are still unprocessed and have a node: read without locks."""
    return list(
        session.execute(
            select(*_FACT_COLUMNS).where(
                EVENTS.c.id.in_(ids), EVENTS.c.processed_at.is_(None), EVENTS.c.node_id.is_not(None)
            )
        ).all()
    )


def evidence_query(case_id: int, latest: int | None = None) -> Select[Any]:
    """The read of a case's evidence, oldest first (or its ``latest`` events, newest first); it runs inside the
    transaction that escalates the case, so it must stay on ``ix_health_events_case`` however many events the fleet
    has stored."""
    query = select(
        EVENTS.c.id,
        EVENTS.c.source,
        EVENTS.c.code,
        EVENTS.c.severity,
        EVENTS.c.status,
        EVENTS.c.gpu_index,
        EVENTS.c.message,
        EVENTS.c.observed_at,
        EVENTS.c.received_at,
    ).where(EVENTS.c.case_id == case_id)
    if latest is None:
        return query.order_by(EVENTS.c.observed_at, EVENTS.c.id)
    return query.order_by(EVENTS.c.observed_at.desc(), EVENTS.c.id.desc()).limit(latest)


def case_evidence(session: Session, case_id: int, latest: int | None = None) -> list[Any]:
    """The case's events as ``evidence_query`` reads them."""
    return list(session.execute(evidence_query(case_id, latest)).all())


# ---------------------------------------------------------------------------------------------------------------
# Clusters: their driver targets and the sizes the budgets count.

COUNTED_STATES = tuple(s.value for s in NodeState if s not in LEAVING_STATES)
"""The node states a cluster's size counts: every state but those of a node leaving the fleet."""


def cluster_target(session: Session, cluster_id: int) -> Any:
    """The cluster's name, kind, driver and driver_config."""
    return session.execute(
        select(Cluster.name, Cluster.kind, Cluster.driver, Cluster.driver_config).where(Cluster.id == cluster_id)
    ).one()


def cluster_sizes(session: Session, cluster_id: int) -> tuple[int, int]:
    """The nodes the budgets count and every node, whatever its state, counted in one read."""
    counted = func.count().filter(Node.state.in_(COUNTED_STATES))
    size, total = session.execute(
        select(counted, func.count()).select_from(Node).where(Node.cluster_id == cluster_id)
    ).one()
    return int(size), int(total)


def domain_sizes(session: Session) -> dict[Any, Any]:
    """Every NVLink domain's counted nodes, by domain id, in one grouped read."""
    return dict(
        session.execute(
            select(Node.nvlink_domain_id, func.count())
            .where(Node.nvlink_domain_id.is_not(None), Node.state.in_(COUNTED_STATES))
            .group_by(Node.nvlink_domain_id)
        ).all()
    )


def domain_names(session: Session) -> dict[Any, Any]:
    return dict(session.execute(select(NvlinkDomain.id, NvlinkDomain.name)).all())


def cluster_names(session: Session) -> dict[Any, Any]:
    """Every cluster's name by id."""
    return dict(session.execute(select(Cluster.id, Cluster.name)).all())


def clusters_by_name(session: Session) -> list[Any]:
    """Every cluster's (id, name), by name."""
    return list(session.execute(select(Cluster.id, Cluster.name).order_by(Cluster.name)))


def cluster_named(session: Session, name: str) -> Any:
    """The cluster's (id, name), or ``None``."""
    return session.execute(select(Cluster.id, Cluster.name).where(Cluster.name == name)).one_or_none()


def cluster_id_named(session: Session, name: str) -> int | None:
    return session.execute(select(Cluster.id).where(Cluster.name == name)).scalar_one_or_none()


def cluster_name(session: Session, cluster_id: int) -> str:
    return session.execute(select(Cluster.name).where(Cluster.id == cluster_id)).scalar_one()


# ---------------------------------------------------------------------------------------------------------------
# Cases as people see them: lists, one case with its steps, reboots and ticket.


def _case_query() -> Select[RemediationCase, str, str, str, str]:
    return (
        select(
            RemediationCase, Node.serial, Node.hostname, Cluster.name.label("cluster"), Supplier.name.label("supplier")
        )
        .join(Node, Node.id == RemediationCase.node_id)
        .join(Cluster, Cluster.id == RemediationCase.cluster_id)
        .join(Supplier, Supplier.id == RemediationCase.supplier_id)
    )


def case_views(
    session: Session,
    actor: Actor,
    now: datetime,
    limit: int,
    state: str | None = None,
    open_only: bool = False,
    cluster: str | None = None,
    node_id: str | None = None,
) -> list[Any]:
    """Cases newest first with their node's serial and hostname, cluster and supplier names, filtered; a
    tenant-scoped actor sees only cases of nodes allocated to its tenant."""
    query = _case_query().order_by(RemediationCase.id.desc()).limit(limit)
    if state:
        query = query.where(RemediationCase.state == state)
    if open_only:
        query = query.where(RemediationCase.open_node_id.is_not(None))
    if cluster:
        query = query.where(Cluster.name == cluster)
    if node_id:
        query = query.where(RemediationCase.node_id == node_id)
    visibility = tenant_visibility(actor, now)
    if visibility is not None:
        query = query.where(visibility)
    return list(session.execute(query))


def case_view_row(session: Session, actor: Actor, now: datetime, case_id: int) -> Any:
    """One case as ``case_views`` reads it, or ``None`` (also when the actor may not see it)."""
    query = _case_query().where(RemediationCase.id == case_id)
    visibility = tenant_visibility(actor, now)
    if visibility is not None:
        query = query.where(visibility)
    return session.execute(query).one_or_none()


def case_steps(session: Session, case_id: int) -> Sequence[RemediationStep]:
    return session.scalars(
        select(RemediationStep).where(RemediationStep.case_id == case_id).order_by(RemediationStep.id)
    ).all()


def case_reboots(session: Session, case_id: int) -> Sequence[Reboot]:
    return session.scalars(select(Reboot).where(Reboot.case_id == case_id).order_by(Reboot.id)).all()


def latest_case_id(session: Session, node_id: str) -> int | None:
    return session.execute(
        select(RemediationCase.id).where(RemediationCase.node_id == node_id).order_by(RemediationCase.id.desc())
    ).scalar_one_or_none()


# ---------------------------------------------------------------------------------------------------------------
# The brakes: each cluster's circuit breaker.


def breaker_status(session: Session, cluster_id: int) -> Any:
    """The cluster's breaker (state, reason), or ``None`` when it never tripped."""
    return session.execute(
        select(RemediationBreaker.state, RemediationBreaker.reason).where(RemediationBreaker.cluster_id == cluster_id)
    ).one_or_none()


def breaker_state(session: Session, cluster_id: int) -> str | None:
    return session.execute(
        select(RemediationBreaker.state).where(RemediationBreaker.cluster_id == cluster_id)
    ).scalar_one_or_none()


def breakers_in_state(session: Session, state: str) -> list[Any]:
    """The (cluster_id, reason) of every breaker in ``state``."""
    return list(
        session.execute(
            select(RemediationBreaker.cluster_id, RemediationBreaker.reason).where(RemediationBreaker.state == state)
        ).all()
    )


def breaker(session: Session, cluster_id: int, lock: bool = False) -> RemediationBreaker | None:
    """The cluster's breaker row (locked for update with ``lock``), or ``None``."""
    if lock:
        return session.get(RemediationBreaker, cluster_id, with_for_update=True)
    return session.get(RemediationBreaker, cluster_id)


def add_breaker(session: Session, **values: Any) -> RemediationBreaker:
    row = RemediationBreaker(**values)
    session.add(row)
    return row


def all_breakers(session: Session) -> Sequence[RemediationBreaker]:
    return session.scalars(select(RemediationBreaker)).all()


def _held_by_breaker(cluster_id: int) -> Any:
    return (
        RemediationCase.cluster_id == cluster_id,
        RemediationCase.held == "breaker",
        RemediationCase.state == CaseState.DETECTED.value,
    )


def count_held_by_breaker(session: Session, cluster_id: int) -> int:
    """The cluster's cases the breaker holds in ``detected``."""
    return int(
        session.execute(
            select(func.count()).select_from(RemediationCase).where(*_held_by_breaker(cluster_id))
        ).scalar_one()
    )


def wake_held_by_breaker(session: Session, cluster_id: int, now: datetime) -> None:
    """Have the cluster's held cases looked at again now."""
    session.execute(update(RemediationCase).where(*_held_by_breaker(cluster_id)).values(next_check_at=now))


# ---------------------------------------------------------------------------------------------------------------
# Policy overrides.


def active_overrides(session: Session) -> list[Any]:
    """The (cluster_id, pool, key, value) of every override not revoked, oldest first."""
    return list(
        session.execute(
            select(
                RemediationOverride.cluster_id,
                RemediationOverride.pool,
                RemediationOverride.key,
                RemediationOverride.value,
            )
            .where(RemediationOverride.revoked_at.is_(None))
            .order_by(RemediationOverride.id)
        ).all()
    )


def overrides(session: Session, with_revoked: bool) -> Sequence[RemediationOverride]:
    query = select(RemediationOverride).order_by(RemediationOverride.id)
    if not with_revoked:
        query = query.where(RemediationOverride.revoked_at.is_(None))
    return session.scalars(query).all()


def add_override(session: Session, **values: Any) -> RemediationOverride:
    """A new override, flushed so it has its id."""
    row = RemediationOverride(**values)
    session.add(row)
    session.flush()
    return row


def override_for_update(session: Session, override_id: int) -> RemediationOverride | None:
    return session.get(RemediationOverride, override_id, with_for_update=True)


# ---------------------------------------------------------------------------------------------------------------
# Reboots.


def insert_reboot(session: Session, **values: Any) -> int:
    result = session.execute(insert(Reboot).returning(Reboot.id).values(**values))
    return int(result.scalar_one())


def reboot_went_down(session: Session, reboot_id: int, at: datetime) -> None:
    session.execute(update(Reboot).where(Reboot.id == reboot_id, Reboot.went_down_at.is_(None)).values(went_down_at=at))


def reboot_requested_at(session: Session, reboot_id: int) -> datetime:
    return session.execute(select(Reboot.requested_at).where(Reboot.id == reboot_id)).scalar_one()


def reboot_returned(session: Session, reboot_id: int, back: datetime, seconds: float, requested: datetime) -> None:
    """The node answered again at ``back``; a reboot never seen going down went down when it was asked for."""
    session.execute(
        update(Reboot)
        .where(Reboot.id == reboot_id)
        .values(
            came_back_at=back,
            seconds=seconds,
            outcome="returned",
            went_down_at=func.coalesce(Reboot.went_down_at, requested),
        )
    )


def reboot_not_returned(session: Session, reboot_id: int) -> None:
    session.execute(update(Reboot).where(Reboot.id == reboot_id).values(outcome="not_returned"))


def reboot_outcomes(session: Session, since: datetime | None = None) -> Sequence[Any]:
    """The (source, outcome, seconds) of every reboot, or of those requested since ``since``."""
    query = select(Reboot.source, Reboot.outcome, Reboot.seconds)
    if since is not None:
        query = query.where(Reboot.requested_at >= since)
    return session.execute(query).all()


def recent_reboots(session: Session, limit: int, cluster: str | None = None, outcome: str | None = None) -> list[Any]:
    """The latest reboots first, each as (reboot, node hostname, cluster name)."""
    query = (
        select(Reboot, Node.hostname, Cluster.name)
        .join(Node, Node.id == Reboot.node_id)
        .join(Cluster, Cluster.id == Reboot.cluster_id)
        .order_by(Reboot.id.desc())
        .limit(limit)
    )
    if cluster:
        query = query.where(Cluster.name == cluster)
    if outcome:
        query = query.where(Reboot.outcome == outcome)
    return list(session.execute(query))


# ---------------------------------------------------------------------------------------------------------------
# Supplier tickets.


def ticket_node(session: Session, node_id: str) -> Any:
    """The node's serial, hostname, supplier_id and cluster name."""
    return session.execute(
        select(Node.serial, Node.hostname, Node.supplier_id, Cluster.name)
        .join(Cluster, Cluster.id == Node.cluster_id)
        .where(Node.id == node_id)
    ).one()


def gpu_serial(session: Session, node_id: str, gpu_index: int) -> str | None:
    return session.execute(select(Gpu.serial).where(Gpu.node_id == node_id, Gpu.idx == gpu_index)).scalar_one_or_none()


def open_ticket_of(session: Session, open_unit: str) -> Ticket | None:
    """The unit's open ticket, locked for update, or ``None``."""
    return session.execute(select(Ticket).where(Ticket.open_unit == open_unit).with_for_update()).scalar_one_or_none()


def add_ticket(session: Session, **values: Any) -> Ticket:
    """A new ticket, flushed so it has its id."""
    ticket = Ticket(**values)
    session.add(ticket)
    session.flush()
    return ticket


def ticket(session: Session, ticket_id: int) -> Ticket | None:
    return session.get(Ticket, ticket_id)


def tickets(session: Session, limit: int, status: str | None = None, supplier: str | None = None) -> list[Any]:
    """The latest tickets first, each as (ticket, supplier name)."""
    query = select(Ticket, Supplier.name).join(Supplier, Supplier.id == Ticket.supplier_id).order_by(Ticket.id.desc())
    if status:
        query = query.where(Ticket.status == status)
    if supplier:
        query = query.where(Supplier.name == supplier)
    return list(session.execute(query.limit(limit)))


def ticket_with_supplier(session: Session, ticket_id: int) -> Any:
    """(ticket, supplier name), or ``None``."""
    return session.execute(
        select(Ticket, Supplier.name).join(Supplier, Supplier.id == Ticket.supplier_id).where(Ticket.id == ticket_id)
    ).one_or_none()


def ticket_sent(session: Session, ticket_id: int, now: datetime) -> None:
    """The notifier delivered an open ticket."""
    session.execute(
        update(Ticket).where(Ticket.id == ticket_id, Ticket.status == "open").values(status="sent", updated_at=now)
    )


# ---------------------------------------------------------------------------------------------------------------
# The outbox and its channels.


def message_queued(session: Session, key: str) -> bool:
    return session.execute(select(OutboxMessage.id).where(OutboxMessage.key == key)).first() is not None


def insert_message(session: Session, **values: Any) -> int:
    result = session.execute(insert(OutboxMessage).returning(OutboxMessage.id).values(**values))
    return int(result.scalar_one())


def enabled_channels(session: Session) -> list[Any]:
    """The (name, url, supplier_id) of every enabled channel."""
    return list(
        session.execute(
            select(NotificationChannel.name, NotificationChannel.url, NotificationChannel.supplier_id).where(
                NotificationChannel.enabled.is_(True)
            )
        )
    )


def due_messages(session: Session, statuses: tuple[str, ...], now: datetime, limit: int) -> Sequence[OutboxMessage]:
    """Messages in these statuses due by ``now``, oldest first; on PostgreSQL locked, skipping those another
    deliverer holds."""
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.status.in_(statuses), OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    if session.connection().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return session.scalars(query).all()


def set_message(session: Session, message_id: int, **values: Any) -> None:
    session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id).values(**values))


def reschedule_messages(session: Session, status: str, at: datetime) -> None:
    """Every message in ``status`` is next tried at ``at``."""
    session.execute(update(OutboxMessage).where(OutboxMessage.status == status).values(next_attempt_at=at))


def supplier_id_named(session: Session, name: str) -> int | None:
    return session.execute(select(Supplier.id).where(Supplier.name == name)).scalar_one_or_none()


def supplier_names(session: Session) -> dict[Any, Any]:
    return dict(session.execute(select(Supplier.id, Supplier.name)).all())


def channel(session: Session, name: str) -> NotificationChannel | None:
    return session.get(NotificationChannel, name)


def add_channel(session: Session, **values: Any) -> NotificationChannel:
    row = NotificationChannel(**values)
    session.add(row)
    return row


def channels(session: Session) -> Sequence[NotificationChannel]:
    return session.scalars(select(NotificationChannel).order_by(NotificationChannel.name)).all()


def message_counts(session: Session) -> dict[Any, Any]:
    """Messages by status."""
    return dict(session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())


def oldest_message(session: Session, statuses: tuple[str, ...]) -> datetime | None:
    """When the oldest message in these statuses was created."""
    return session.execute(
        select(func.min(OutboxMessage.created_at)).where(OutboxMessage.status.in_(statuses))
    ).scalar_one_or_none()


def recent_messages(session: Session, limit: int) -> Sequence[OutboxMessage]:
    return session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)).all()
