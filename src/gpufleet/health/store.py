"""Every statement health runs, and the only health code that knows SQL or which database it talks to.

By topic: the bulk insert of new events (``ingest``), the inventory reads that match them and the GPU identifiers
learned on the way (``match``), reading and matching stored events again (``events``), and the agent requests
(``requests``). The ingest's statements are its hottest path: they are built once at import, differ between SQLite
and PostgreSQL where that is faster, and are handed their values already encoded; each such choice says why beside it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, select, update
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from gpufleet.adapters.db.json_text import to_json
from gpufleet.adapters.db.list_query import list_rows
from gpufleet.adapters.db.models import AgentRequest, Gpu, HealthEvent, Node, UTCDateTime
from gpufleet.platform.database import UnitOfWork

EVENTS = cast(Table, HealthEvent.__table__)
GPUS = cast(Table, Gpu.__table__)


# --- Ingest: the bulk insert of new events -------------------------------------------------------------------------

# A batch is one statement whose values skip the per-value type processing of a Core insert: on PostgreSQL one JSON
# parameter the server unpacks, on SQLite a multi-row VALUES with the values already as SQLite stores them.
_COLUMNS = [c.name for c in EVENTS.columns if c.name != "id"]
_PG_TYPES = {
    "gpu_index": "int",
    "case_id": "int",
    "observed_at": "timestamptz",
    "received_at": "timestamptz",
    "processed_at": "timestamptz",
    "message": "text",
    "data": "json",
}
_TIMES = ("observed_at", "received_at", "processed_at")
_SQLITE = sqlite_dialect()
_MODEL_TIME = cast(Callable[[datetime], str], UTCDateTime().dialect_impl(_SQLITE).bind_processor(_SQLITE))
"""The text SQLite stores for a time, as every other write through the model stores it."""


def _sqlite_time(value: datetime) -> str:
    """``_MODEL_TIME``'s text, made in one call for the UTC times parsers and the clock hand over: the model's path
    through the type decorator costs more than the rest of a row's encoding."""
    if value.tzinfo is UTC:
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")
    return _MODEL_TIME(value)


SQLITE_BATCH = 2000
"""Rows per SQLite statement: 2,000 rows of 14 values stay under SQLite's 32,766 bound values."""


@lru_cache(maxsize=64)
def _sqlite_insert_sql(rows: int) -> str:
    """A multi-row INSERT for ``rows`` rows, built once per batch size from the model's own column names."""
    row = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
    return (
        f"INSERT INTO health_events ({', '.join(_COLUMNS)}) VALUES {', '.join([row] * rows)} "  # noqa: S608
        "ON CONFLICT (fingerprint) DO NOTHING"
    )


# The new rows are read back as one row of JSON instead of through RETURNING, whose rows the sqlite3 module steps one
# at a time, handing the interpreter lock around for each while this transaction holds the one write lock. Every id
# above the highest before the insert is this transaction's: no other writer runs inside it.
_SQLITE_LAST_ID = "SELECT coalesce(max(id), 0) FROM health_events"
_SQLITE_NEW_ROWS = "SELECT json_group_array(json_array(id, fingerprint)) FROM health_events WHERE id > ?"


# How each column's value becomes what SQLite stores: times as the model writes them, JSON as text, the rest as is.
_SQLITE_ENCODERS: tuple[tuple[str, Callable[[Any], Any] | None], ...] = tuple(
    (name, _sqlite_time if name in _TIMES else to_json if name == "data" else None) for name in _COLUMNS
)


def _sqlite_values(batch: list[dict[str, Any]]) -> tuple[Any, ...]:
    """The batch's values in column order, each as SQLite stores it."""
    values: list[Any] = []
    append = values.append
    times: dict[datetime, str] = {}  # a batch shares its receipt time and many observation times
    for row in batch:
        for name, encode in _SQLITE_ENCODERS:
            value = row[name]
            if value is None or encode is None:
                append(value)
            elif encode is _sqlite_time:
                text = times.get(value)
                if text is None:
                    text = times[value] = _sqlite_time(value)
                append(text)
            else:
                append(encode(value))
    return tuple(values)


def _pg_insert_sql() -> str:
    names = ", ".join(_COLUMNS)
    typed = ", ".join(f"{name} {_PG_TYPES.get(name, 'varchar')}" for name in _COLUMNS)
    # Built once from the model's own column names, never from input.
    return (
        f"INSERT INTO health_events ({names}) SELECT {names} FROM json_to_recordset(%(rows)s::json) AS t({typed}) "  # noqa: S608
        "ON CONFLICT (fingerprint) DO NOTHING RETURNING id, fingerprint"
    )


_PG_INSERT = _pg_insert_sql()


def _pg_rows(batch: list[dict[str, Any]]) -> str:
    """The batch as one JSON array; times as RFC 3339 with their offset, which ``timestamptz`` reads."""
    return to_json(batch)


def insert_statements(rows: list[dict[str, Any]], dialect: str) -> list[tuple[str, Any]]:
    """The insert statements for ``rows`` with their values encoded, ready before the write turn is taken."""
    # PostgreSQL takes a batch as one JSON parameter, so its batches are bounded only by size; SQLite's multi-row
    # VALUES binds every value and must stay under its limit on bound values.
    size = 5000 if dialect == "postgresql" else SQLITE_BATCH
    statements: list[tuple[str, Any]] = []
    for start in range(0, len(rows), size):
        batch = rows[start : start + size]
        if dialect == "postgresql":
            statements.append((_PG_INSERT, {"rows": _pg_rows(batch)}))
        else:
            statements.append((_sqlite_insert_sql(len(batch)), _sqlite_values(batch)))
    return statements


def insert_events(session: UnitOfWork, statements: list[tuple[str, Any]]) -> dict[str, int]:
    """Insert, skipping fingerprints already stored (also by a concurrent request); the new ids by fingerprint."""
    connection = session.connection()
    # SQLite: the new ids come back as one row of JSON (see ``_SQLITE_NEW_ROWS``), not through RETURNING.
    if connection.dialect.name != "postgresql":
        if not statements:
            return {}
        before = connection.exec_driver_sql(_SQLITE_LAST_ID).scalar_one()
        for sql, params in statements:
            connection.exec_driver_sql(sql, params)
        answer = connection.exec_driver_sql(_SQLITE_NEW_ROWS, (before,)).scalar_one()
        return {fingerprint: new_id for new_id, fingerprint in json.loads(answer)}
    # PostgreSQL: RETURNING, since concurrent writers may insert between the statements of this transaction.
    found: dict[str, int] = {}
    for sql, params in statements:
        for new_id, fingerprint in connection.exec_driver_sql(sql, params):
            found[fingerprint] = new_id
    return found


# --- Matching: the nodes and GPUs a batch names, and the identifiers learned from nvidia-smi -------------------------

# Each list goes in as one parameter (``list_rows``): SQLite answers in one row of JSON.
_SQLITE_NODES = (
    "SELECT json_group_array(json_array(n.id, n.serial, n.hostname, n.state, s.gpus_per_node, "
    "(SELECT count(*) FROM gpus g WHERE g.node_id = n.id))) FROM nodes n JOIN skus s ON s.id = n.sku_id "
    "WHERE n.id IN (SELECT value FROM json_each(?1)) OR n.serial IN (SELECT value FROM json_each(?1)) "
    "OR n.hostname IN (SELECT value FROM json_each(?1))"
)
_SQLITE_GPUS = (
    "SELECT json_group_array(json_array(id, node_id, idx, serial, uuid, pci_bus_id)) FROM gpus "
    "WHERE node_id IN (SELECT value FROM json_each(?1))"
)
_SQLITE_OWNERS = (
    "SELECT json_group_array(json_array(node_id)) FROM gpus "
    "WHERE serial IN (SELECT value FROM json_each(?1)) OR uuid IN (SELECT value FROM json_each(?1))"
)
# PostgreSQL: one array parameter per list, so the text never changes (psycopg prepares it once), and a UNION of
# index lookups where one OR over three columns would scan the table. Chassis ids are hashes, uncorrelated with the
# table's order, so the planner prices a hundred probes of the primary key above a scan of the whole table, which
# takes several times longer: a webhook's few ids are probed one by one (a LATERAL with a LIMIT it cannot flatten),
# while a whole kernel log's thousands are left to the planner.
_PG_NODE_SELECT = (
    "SELECT n.id, n.serial, n.hostname, n.state, s.gpus_per_node, "
    "(SELECT count(*) FROM gpus g WHERE g.node_id = n.id) FROM "
)


def _pg_union(by_id: str) -> str:
    return " UNION ".join(
        _PG_NODE_SELECT + source  # built from these constants only, never from input
        for source in (
            by_id,
            "nodes n JOIN skus s ON s.id = n.sku_id WHERE n.serial = ANY(%(refs)s)",
            "nodes n JOIN skus s ON s.id = n.sku_id WHERE n.hostname = ANY(%(refs)s)",
        )
    )


_PG_NODES_PROBED = _pg_union(
    "unnest(%(refs)s::varchar[]) AS r(ref) CROSS JOIN LATERAL (SELECT * FROM nodes WHERE id = r.ref LIMIT 1) n "
    "JOIN skus s ON s.id = n.sku_id"
)
_PG_NODES_PLANNED = _pg_union("nodes n JOIN skus s ON s.id = n.sku_id WHERE n.id = ANY(%(refs)s)")
PROBE_MAX = 1000
"""Up to this many refs, ids are probed one by one."""


def _pg_nodes(refs: int) -> str:
    return _PG_NODES_PROBED if refs <= PROBE_MAX else _PG_NODES_PLANNED


_PG_GPUS = "SELECT id, node_id, idx, serial, uuid, pci_bus_id FROM gpus WHERE node_id = ANY(%(ids)s)"
_PG_OWNERS = (
    "SELECT node_id FROM gpus WHERE serial = ANY(%(keys)s) UNION SELECT node_id FROM gpus WHERE uuid = ANY(%(keys)s)"
)


def gpu_owners(session: UnitOfWork, keys: Sequence[str]) -> list[Any]:
    """Rows of one node id: the nodes holding a GPU with one of these serials or UUIDs."""
    return list_rows(session.connection(), _SQLITE_OWNERS, _PG_OWNERS, "keys", keys)


def nodes_named(session: UnitOfWork, refs: Sequence[str]) -> list[Any]:
    """Rows of (id, serial, hostname, state, SKU GPU count, GPU rows recorded) for the nodes that have one of these
    refs as their chassis id, serial or hostname."""
    return list_rows(session.connection(), _SQLITE_NODES, _pg_nodes, "refs", refs)


def node_gpus(session: UnitOfWork, node_ids: Sequence[str]) -> list[Any]:
    """Rows of (id, node id, index, serial, UUID, PCI bus id) for the GPUs of these nodes."""
    return list_rows(session.connection(), _SQLITE_GPUS, _PG_GPUS, "ids", node_ids)


def save_learned(session: UnitOfWork, changes: list[dict[str, object]]) -> None:
    if changes:
        stmt = (
            update(GPUS)
            .where(GPUS.c.id == bindparam("b_id"))
            .values(pci_bus_id=bindparam("b_pci"), uuid=bindparam("b_uuid"))
        )
        session.connection().execute(stmt, changes)


# --- Events: pages of stored events, and matching the unmatched ones again -----------------------------------------


def event_page(
    session: UnitOfWork,
    limit: int,
    before: int | None = None,
    *,
    node_id: str | None = None,
    unmatched: bool = False,
    source: str | None = None,
    code: str | None = None,
    severity: str | None = None,
    since: datetime | None = None,
) -> Sequence[Row[HealthEvent, str, str]]:
    """Up to ``limit`` events newest first, each with its node's hostname and serial (None when unmatched)."""
    query = (
        select(HealthEvent, Node.hostname, Node.serial)
        .outerjoin(Node, Node.id == HealthEvent.node_id)
        .order_by(HealthEvent.id.desc())
        .limit(limit)
    )
    if node_id is not None:
        query = query.where(HealthEvent.node_id == node_id)
    if unmatched:
        query = query.where(HealthEvent.node_id.is_(None))
    if source is not None:
        query = query.where(HealthEvent.source == source)
    if code is not None:
        query = query.where(HealthEvent.code == code)
    if severity is not None:
        query = query.where(HealthEvent.severity == severity)
    if since is not None:
        query = query.where(HealthEvent.observed_at >= since)
    if before is not None:
        query = query.where(HealthEvent.id < before)
    return session.execute(query).all()


def unmatched_events(session: UnitOfWork, limit: int) -> list[HealthEvent]:
    query = select(HealthEvent).where(HealthEvent.node_id.is_(None)).order_by(HealthEvent.id).limit(limit)
    return list(session.execute(query).scalars())


def save_rematched(session: UnitOfWork, changes: list[dict[str, Any]]) -> None:
    """Write each change's node (``b_node``), GPU index (``b_gpu``), data (``b_data``) and processed time
    (``b_done``) to the event ``b_id``."""
    if changes:
        stmt = (
            update(EVENTS)
            .where(EVENTS.c.id == bindparam("b_id"))
            .values(
                node_id=bindparam("b_node"),
                gpu_index=bindparam("b_gpu"),
                data=bindparam("b_data", type_=EVENTS.c.data.type),
                processed_at=bindparam("b_done", type_=EVENTS.c.processed_at.type),
            )
        )
        session.connection().execute(stmt, changes)


# --- Agent requests -------------------------------------------------------------------------------------------------


def lock_node(session: UnitOfWork, node_id: str) -> None:
    """Hold the node's row until the transaction ends, so two askers cannot both open a request for it."""
    session.execute(select(Node.id).where(Node.id == node_id).with_for_update())


def open_request(session: UnitOfWork, node_id: str, kind: str, statuses: Sequence[str]) -> AgentRequest | None:
    return session.execute(
        select(AgentRequest).where(
            AgentRequest.node_id == node_id, AgentRequest.kind == kind, AgentRequest.status.in_(statuses)
        )
    ).scalar_one_or_none()


def add_request(session: UnitOfWork, row: AgentRequest) -> None:
    """Insert ``row`` now, so it has its id."""
    session.add(row)
    session.flush()


def requests_to_claim(session: UnitOfWork, node_id: str, statuses: Sequence[str]) -> list[AgentRequest]:
    """The node's requests in these statuses, oldest first, locked until the transaction ends."""
    return list(
        session.execute(
            select(AgentRequest)
            .where(AgentRequest.node_id == node_id, AgentRequest.status.in_(statuses))
            .order_by(AgentRequest.id)
            .with_for_update()
        ).scalars()
    )


def request_for_update(session: UnitOfWork, request_id: int) -> AgentRequest | None:
    return session.get(AgentRequest, request_id, with_for_update=True)


def request_page(
    session: UnitOfWork, limit: int, node_id: str | None = None, status: str | None = None
) -> list[AgentRequest]:
    """Newest first."""
    query = select(AgentRequest).order_by(AgentRequest.id.desc()).limit(limit)
    if node_id is not None:
        query = query.where(AgentRequest.node_id == node_id)
    if status is not None:
        query = query.where(AgentRequest.status == status)
    return list(session.execute(query).scalars())


def request_by_id(session: UnitOfWork, request_id: int) -> AgentRequest | None:
    return session.get(AgentRequest, request_id)
