"""Every SQL statement of validation: policies, the path-selection facts, bans, result ingest and the analytics.

The use cases (``policy``, ``bans``, ``ingest``, ``analytics``) decide; they hand their open session to the
functions here, which read and write the tables and choose the SQL of each database.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVarTuple, cast

from sqlalchemy import Double, Row, ScalarResult, Select, Table, bindparam, func, insert, literal, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import (
    Cluster,
    ClusterValidationPolicy,
    Node,
    NodeBan,
    NodeEvent,
    Sku,
    Supplier,
    ValidationAttempt,
    ValidationResult,
)
from gpufleet.domain.lifecycle import NodeState
from gpufleet.domain.validation import FULL_PATHS, ValidationPath
from gpufleet.domain.validation_analytics import BanMark

A = ValidationAttempt
Columns = TypeVarTuple("Columns")


# ---------------------------------------------------------------------------------------------------------------
# Clusters and policies.


def cluster_id_named(session: Session, name: str) -> int | None:
    return session.execute(select(Cluster.id).where(Cluster.name == name.strip())).scalar_one_or_none()


def policy_rows(session: Session) -> ScalarResult[ClusterValidationPolicy]:
    """Every stored policy."""
    return session.scalars(select(ClusterValidationPolicy))


def policy_row(session: Session, cluster_id: int) -> ClusterValidationPolicy | None:
    return session.get(ClusterValidationPolicy, cluster_id)


def locked_policy_row(session: Session, cluster_id: int) -> ClusterValidationPolicy | None:
    """The cluster's stored policy, locked until the transaction ends."""
    return session.get(ClusterValidationPolicy, cluster_id, with_for_update=True)


def add_policy(session: Session, cluster_id: int, values: Mapping[str, Any]) -> ClusterValidationPolicy:
    """A new policy row at version 0, added to the session."""
    row = ClusterValidationPolicy(cluster_id=cluster_id, version=0, **values)
    session.add(row)
    return row


def flush(session: Session) -> None:
    session.flush()


# ---------------------------------------------------------------------------------------------------------------
# What path selection decides on: the node, its lifecycle history, its bans, the cluster's canary.


def node_for_plan(session: Session, node_id: str) -> Row[int, str, str] | None:
    """The node's cluster id, cluster name and GPU model."""
    return session.execute(
        select(Node.cluster_id, Cluster.name, Sku.gpu_model)
        .join(Cluster, Cluster.id == Node.cluster_id)
        .join(Sku, Sku.id == Node.sku_id)
        .where(Node.id == node_id)
    ).one_or_none()


def lifecycle_history(
    session: Session, node_id: str
) -> Iterator[Row[datetime, str, str | None, str | None, str | None, int | None, dict[str, Any]]]:
    """The node's transitions, updates and moves, oldest first."""
    return iter(
        session.execute(
            select(
                NodeEvent.at,
                NodeEvent.kind,
                NodeEvent.event,
                NodeEvent.from_state,
                NodeEvent.to_state,
                NodeEvent.cluster_id,
                NodeEvent.data,
            )
            .where(NodeEvent.node_id == node_id, NodeEvent.kind.in_(("transition", "updated", "moved")))
            .order_by(NodeEvent.id)
        )
    )


def banned_since(session: Session, node_id: str, since: datetime) -> bool:
    return (
        session.execute(select(NodeBan.id).where(NodeBan.node_id == node_id, NodeBan.at > since).limit(1)).first()
        is not None
    )


def config_admitted(session: Session, cluster_id: int, version: str) -> bool:
    """Whether an attempt under this configuration version of the cluster has passed."""
    attempts = select(ValidationAttempt.id).where(
        ValidationAttempt.cluster_id == cluster_id, ValidationAttempt.config_version == version
    )
    return session.execute(attempts.where(ValidationAttempt.status == "passed").limit(1)).first() is not None


def canary_running_elsewhere(session: Session, node_id: str, cluster_id: int, version: str) -> str | None:
    """Another node still validating that runs the canary of this configuration version, if any."""
    return session.execute(
        select(ValidationAttempt.node_id)
        .join(Node, Node.id == ValidationAttempt.node_id)
        .where(
            ValidationAttempt.cluster_id == cluster_id,
            ValidationAttempt.config_version == version,
            ValidationAttempt.path == ValidationPath.CANARY.value,
            ValidationAttempt.status == "in_progress",
            ValidationAttempt.node_id != node_id,
            Node.state == NodeState.VALIDATING.value,  # an abandoned canary must not hold the cluster forever
        )
        .order_by(ValidationAttempt.started_at)
        .limit(1)
    ).scalar_one_or_none()


def last_attempt(session: Session, node_id: str) -> int | None:
    """The highest attempt number recorded for the node."""
    return session.execute(
        select(func.max(ValidationAttempt.attempt)).where(ValidationAttempt.node_id == node_id)
    ).scalar_one()


# ---------------------------------------------------------------------------------------------------------------
# Bans.


def node_to_ban(session: Session, node_id: str) -> Row[str, int, str]:
    """The node's state, cluster id and cluster name, the node locked until the transaction ends."""
    return session.execute(
        select(Node.state, Node.cluster_id, Cluster.name)
        .join(Cluster, Cluster.id == Node.cluster_id)
        .where(Node.id == node_id)
        .with_for_update(of=Node)
    ).one()


def cluster_of_node(session: Session, node_id: str) -> int:
    return session.execute(select(Node.cluster_id).where(Node.id == node_id)).scalar_one()


def last_admission(session: Session, node_id: str, cluster_id: int) -> datetime | None:
    return session.execute(
        select(func.max(ValidationAttempt.finished_at)).where(
            ValidationAttempt.node_id == node_id,
            ValidationAttempt.cluster_id == cluster_id,
            ValidationAttempt.status == "passed",
        )
    ).scalar_one_or_none()


def ban_at(session: Session, node_id: str, cluster_id: int, at: datetime) -> NodeBan | None:
    """A ban of the node in the cluster at exactly ``at``."""
    query = select(NodeBan).where(NodeBan.node_id == node_id, NodeBan.cluster_id == cluster_id)
    return session.execute(query.where(NodeBan.at == at).limit(1)).scalar_one_or_none()


def latest_ban(session: Session, node_id: str, cluster_id: int) -> NodeBan | None:
    query = select(NodeBan).where(NodeBan.node_id == node_id, NodeBan.cluster_id == cluster_id)
    return session.execute(query.order_by(NodeBan.at.desc()).limit(1)).scalar_one_or_none()


def add_ban(
    session: Session,
    *,
    node_id: str,
    cluster_id: int,
    at: datetime,
    reason: str,
    source: str,
    actor: str,
    correlation_id: str,
    created_at: datetime,
) -> NodeBan:
    """Insert a ban; the returned row carries its id."""
    ban = NodeBan(
        node_id=node_id,
        cluster_id=cluster_id,
        at=at,
        reason=reason,
        source=source,
        actor=actor,
        correlation_id=correlation_id,
        created_at=created_at,
    )
    session.add(ban)
    session.flush()
    return ban


def latest_bans(session: Session, limit: int, node_id: str | None = None) -> Iterator[Row[NodeBan, str]]:
    """Bans with their cluster's name, newest first, optionally of one node."""
    query = (
        select(NodeBan, Cluster.name)
        .outerjoin(Cluster, Cluster.id == NodeBan.cluster_id)
        .order_by(NodeBan.at.desc(), NodeBan.id.desc())
        .limit(limit)
    )
    if node_id is not None:
        query = query.where(NodeBan.node_id == node_id)
    return iter(session.execute(query))


# ---------------------------------------------------------------------------------------------------------------
# Result ingest: a fixed number of chunked reads whatever the batch's size, then bulk writes.

CHUNK = 500
ATTEMPTS = cast(Table, ValidationAttempt.__table__)
RESULTS = cast(Table, ValidationResult.__table__)


def nodes_named(session: Session, refs: Sequence[str]) -> Iterator[Row[str, str, str, str, int]]:
    """(id, serial, hostname, state, SKU id) of every node whose chassis id, serial or hostname is in ``refs``."""
    columns = (Node.id, Node.serial, Node.hostname, Node.state, Node.sku_id)
    for start in range(0, len(refs), CHUNK):
        chunk = refs[start : start + CHUNK]
        where = or_(Node.id.in_(chunk), Node.serial.in_(chunk), Node.hostname.in_(chunk))
        yield from session.execute(select(*columns).where(where))


def cluster_ids(session: Session) -> dict[str, int]:
    """Cluster id by name."""
    return dict(session.execute(select(Cluster.name, Cluster.id)).all())


def sku_models(session: Session) -> dict[int, tuple[str, int]]:
    """(GPU model, GPUs per node) by SKU id."""
    return {
        sku_id: (model, gpus)
        for sku_id, model, gpus in session.execute(select(Sku.id, Sku.gpu_model, Sku.gpus_per_node))
    }


def attempts_of_nodes(session: Session, node_ids: Sequence[str]) -> Iterator[ValidationAttempt]:
    """Every stored attempt of these nodes."""
    for start in range(0, len(node_ids), CHUNK):
        chunk = node_ids[start : start + CHUNK]
        yield from session.execute(select(ValidationAttempt).where(ValidationAttempt.node_id.in_(chunk))).scalars()


def pass_records(
    session: Session, ids: Sequence[int]
) -> Iterator[Row[int, int, str, datetime, datetime, dict[str, Any]]]:
    """(attempt id, pass number, reported result, started, finished, checks) of every pass of the attempts ``ids``."""
    for start in range(0, len(ids), CHUNK):
        stored = session.execute(
            select(
                ValidationResult.attempt_id,
                ValidationResult.pass_number,
                ValidationResult.reported_result,
                ValidationResult.started_at,
                ValidationResult.finished_at,
                ValidationResult.checks,
            ).where(ValidationResult.attempt_id.in_(ids[start : start + CHUNK]))
        )
        yield from stored


class PlannedAttempt(Protocol):
    """An attempt as a batch leaves it: written whole when new, its progress when it was stored already."""

    id: int | None
    node_id: str
    attempt: int
    cluster_id: int
    path: str
    suite: str
    passes_required: int
    config_version: str | None
    gpus: int
    status: str
    passes_recorded: int
    first_failed_pass: int | None
    started_at: datetime
    finished_at: datetime


_UPDATE_ATTEMPT = (
    update(ATTEMPTS)
    .where(ATTEMPTS.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        passes_recorded=bindparam("b_passes"),
        first_failed_pass=bindparam("b_failed"),
        started_at=bindparam("b_started", type_=ATTEMPTS.c.started_at.type),
        finished_at=bindparam("b_finished", type_=ATTEMPTS.c.finished_at.type),
    )
)


def write_results(
    session: Session,
    new_attempts: Sequence[PlannedAttempt],
    results: Sequence[tuple[PlannedAttempt, dict[str, Any]]],
    now: datetime,
) -> None:
    """Insert the new attempts (setting their ids), update the others the results touch, insert the results."""
    connection = session.connection()
    if new_attempts:
        rows = [
            {
                "node_id": a.node_id,
                "attempt": a.attempt,
                "cluster_id": a.cluster_id,
                "path": a.path,
                "suite": a.suite,
                "passes_required": a.passes_required,
                "config_version": a.config_version,
                "gpus": a.gpus,
                "status": a.status,
                "passes_recorded": a.passes_recorded,
                "first_failed_pass": a.first_failed_pass,
                "started_at": a.started_at,
                "finished_at": a.finished_at,
                "created_at": now,
            }
            for a in new_attempts
        ]
        stmt = insert(ATTEMPTS).returning(ATTEMPTS.c.id, sort_by_parameter_order=True)
        ids = connection.execute(stmt, rows).scalars().all()
        for attempt, new_id in zip(new_attempts, ids, strict=True):
            attempt.id = new_id
    new = {id(a) for a in new_attempts}
    updates = [
        {
            "b_id": a.id,
            "b_status": a.status,
            "b_passes": a.passes_recorded,
            "b_failed": a.first_failed_pass,
            "b_started": a.started_at,
            "b_finished": a.finished_at,
        }
        for a in {id(a): a for a, _ in results}.values()
        if id(a) not in new
    ]
    if updates:
        connection.execute(_UPDATE_ATTEMPT, updates)
    if results:
        connection.execute(insert(RESULTS), [{"attempt_id": a.id, **values} for a, values in results])


# ---------------------------------------------------------------------------------------------------------------
# Analytics. SQL does the heavy part: attempts carry their outcome (first failing pass, last finish), so admissions
# and first failures are counted with GROUP BY over attempts, and GPU-hours per pass number with one GROUP BY over
# the pass records. Only the bans and the admissions of banned nodes reach Python.


@dataclass
class ScopeIds:
    """An analytics scope as row ids, with the names of every cluster, supplier and SKU by id."""

    cluster: int | None = None
    supplier: int | None = None
    sku: int | None = None
    names: dict[str, dict[int, str]] = field(default_factory=dict)


_NAMED: dict[str, type[Cluster] | type[Supplier] | type[Sku]] = {"cluster": Cluster, "supplier": Supplier, "sku": Sku}


def names_by_id(session: Session, kind: str) -> dict[int, str]:
    """The name of every cluster, supplier or SKU (``kind``) by id."""
    model = _NAMED[kind]
    return {i: n for i, n in session.execute(select(model.id, model.name))}


def _node_scope(query: Select[*Columns], ids: ScopeIds) -> Select[*Columns]:
    if ids.supplier is not None:
        query = query.where(Node.supplier_id == ids.supplier)
    if ids.sku is not None:
        query = query.where(Node.sku_id == ids.sku)
    return query


def _epoch(session: Session, column: Any) -> Any:
    """A stored time as seconds since the epoch, computed by the database: a hundred thousand of them reach Python
    as plain floats instead of parsed datetimes."""
    if session.get_bind().dialect.name == "postgresql":
        return sql_cast(func.extract("epoch", column), Double)
    return (func.julianday(column) - 2440587.5) * 86400.0


def _month(session: Session, column: Any) -> Any:
    """'YYYY-MM' of a stored time, in UTC."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


def _scoped(query: Select[*Columns], ids: ScopeIds, by_node: bool, by_cluster: bool = True) -> Select[*Columns]:
    """Narrow a query over attempts to the scope; joins the node only when its supplier or SKU is needed."""
    if by_cluster and ids.cluster is not None:
        query = query.where(A.cluster_id == ids.cluster)
    if by_node or ids.supplier is not None or ids.sku is not None:
        query = _node_scope(query.join_from(A, Node, Node.id == A.node_id), ids)
    return query


def _group_key(session: Session, by: str) -> Any:
    """What admissions are grouped by: the node's supplier or SKU id, the cluster id, or the month of admission."""
    return {
        "supplier": Node.supplier_id,
        "sku": Node.sku_id,
        "cluster": A.cluster_id,
        "month": _month(session, A.finished_at),
    }[by]


def ban_marks(session: Session, ids: ScopeIds) -> list[BanMark]:
    """Every ban of a node in scope (in any cluster), its time in seconds since the epoch."""
    query = select(NodeBan.node_id, NodeBan.cluster_id, _epoch(session, NodeBan.at))
    if ids.supplier is not None or ids.sku is not None:
        query = _node_scope(query.join(Node, Node.id == NodeBan.node_id), ids)
    return [BanMark(*row) for row in session.execute(query)]


def admissions_by(session: Session, ids: ScopeIds, by: str) -> dict[Any, int]:
    """Admissions (passed attempts) in scope, counted by supplier, SKU, cluster id or month (``by``)."""
    key = _group_key(session, by)
    counted = select(key, func.count()).where(A.status == "passed").group_by(key)
    return dict(session.execute(_scoped(counted, ids, by_node=by in ("supplier", "sku"))).all())


def admissions_of_banned_nodes(session: Session, ids: ScopeIds, by: str | None = None) -> Sequence[Row[Any]]:
    """The admissions of nodes ever banned, in every cluster (a later admission elsewhere ends a window): node_id,
    cluster_id, path, finished (seconds since the epoch) and key (the group ``by`` names, else None)."""
    key = _group_key(session, by) if by is not None else None
    query = select(
        A.node_id,
        A.cluster_id,
        A.path,
        _epoch(session, A.finished_at).label("finished"),
        (key if key is not None else literal(None)).label("key"),
    ).where(A.status == "passed", A.node_id.in_(select(NodeBan.node_id)))
    return session.execute(_scoped(query, ids, by_node=key is not None, by_cluster=False)).all()


def outcome_groups(session: Session, ids: ScopeIds, paths: Sequence[str]) -> Sequence[Row[int, int | None, int]]:
    """(passes required, first failing pass, attempts) over completed attempts on these paths, in scope."""
    counted = (
        select(A.passes_required, A.first_failed_pass, func.count())
        .where(A.status != "in_progress", A.path.in_(paths))
        .group_by(A.passes_required, A.first_failed_pass)
    )
    return session.execute(_scoped(counted, ids, by_node=False)).all()


def pass_gpu_hours(session: Session, ids: ScopeIds) -> dict[int, float]:
    """GPU-hours per pass number over completed full-suite attempts in scope: one GROUP BY over the pass records."""
    query = (
        select(ValidationResult.pass_number, func.sum(ValidationResult.seconds * A.gpus))
        .join(A, A.id == ValidationResult.attempt_id)
        .where(A.status != "in_progress", A.path.in_(sorted(FULL_PATHS)))
        .group_by(ValidationResult.pass_number)
    )
    return {
        number: float(seconds or 0) / 3600 for number, seconds in session.execute(_scoped(query, ids, by_node=False))
    }


def validation_gpu_seconds(session: Session) -> float | None:
    """GPU-seconds of every recorded pass, every path; None when there is none."""
    return session.execute(
        select(func.sum(ValidationResult.seconds * A.gpus)).join(A, A.id == ValidationResult.attempt_id)
    ).scalar_one()
