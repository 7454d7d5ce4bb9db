"""How remediation cases are read, claimed, saved and stepped: plain statements on the tables, one per change.

A case is loaded as a ``CaseRow`` and written back with one UPDATE guarded by its version, so two controller
processes can never both move the same case: the loser's UPDATE matches no row and it lets the case go. Claiming
takes due cases with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite's writers already hold its one write lock from
BEGIN IMMEDIATE) and stamps a short lease, so a case is worked by one process even between its transactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import CursorResult, Executable, Table, Update, bindparam, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from gpufleet.adapters.db.list_query import list_rows
from gpufleet.adapters.db.models import RemediationCase, RemediationStep
from gpufleet.domain.remediation import ACTIVE_STATES, FINAL_CASE_STATES, CaseState

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
