"""Re-ban rates and the threshold simulator over the stored validation history.

SQL does the heavy part: attempts carry their outcome (first failing pass, last finish), so admissions and first
failures are counted with GROUP BY over attempts, and GPU-hours per pass number with one GROUP BY over the pass
records. Only the bans and the admissions of banned nodes reach Python, where the domain matches them up.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypeVarTuple

from sqlalchemy import Double, Row, Select, cast, func, literal, select
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import Cluster, Node, NodeBan, Sku, Supplier, ValidationAttempt, ValidationResult
from gpufleet.domain.validation import FULL_PATHS
from gpufleet.domain.validation_analytics import (
    Admission,
    BanMark,
    OutcomeCounts,
    RebanRate,
    ThresholdRow,
    rates_from_counts,
    rebanned,
    threshold_from_counts,
)
from gpufleet.platform.context import SYSTEM, Actor
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound

GROUPINGS = ("supplier", "sku", "cluster", "month")
DEFAULT_DAYS = 30
MAX_DAYS = 3650
A = ValidationAttempt
Columns = TypeVarTuple("Columns")


@dataclass(frozen=True)
class Scope:
    cluster: str | None = None
    supplier: str | None = None
    sku: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"cluster": self.cluster, "supplier": self.supplier, "sku": self.sku}


@dataclass
class _Ids:
    cluster: int | None = None
    supplier: int | None = None
    sku: int | None = None
    names: dict[str, dict[int, str]] = field(default_factory=dict)


def _resolve(session: Session, scope: Scope) -> _Ids:
    ids = _Ids()
    for kind, model, wanted in (
        ("cluster", Cluster, scope.cluster),
        ("supplier", Supplier, scope.supplier),
        ("sku", Sku, scope.sku),
    ):
        names = {i: n for i, n in session.execute(select(model.id, model.name))}
        ids.names[kind] = names
        if wanted is not None:
            matches = [i for i, n in names.items() if n == wanted.strip()]
            if not matches:
                raise NotFound(f"no {kind} named '{wanted}'")
            setattr(ids, kind, matches[0])
    return ids


def _check(actor: Actor, days: int) -> None:
    if actor.tenant_scoped:
        raise Forbidden("validation analytics are fleet data; a tenant-scoped token cannot read them")
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"the re-ban window is 1 to {MAX_DAYS} days", field="days")


def _node_scope(query: Select[*Columns], ids: _Ids) -> Select[*Columns]:
    if ids.supplier is not None:
        query = query.where(Node.supplier_id == ids.supplier)
    if ids.sku is not None:
        query = query.where(Node.sku_id == ids.sku)
    return query


def _epoch(session: Session, column: Any) -> Any:
    """A stored time as seconds since the epoch, computed by the database: a hundred thousand of them reach Python
    as plain floats instead of parsed datetimes."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", column), Double)
    return (func.julianday(column) - 2440587.5) * 86400.0


def _month(session: Session, column: Any) -> Any:
    """'YYYY-MM' of a stored time, in UTC."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


def _scoped(query: Select[*Columns], ids: _Ids, by_node: bool, by_cluster: bool = True) -> Select[*Columns]:
    """Narrow a query over attempts to the scope; joins the node only when its supplier or SKU is needed."""
    if by_cluster and ids.cluster is not None:
        query = query.where(A.cluster_id == ids.cluster)
    if by_node or ids.supplier is not None or ids.sku is not None:
        query = _node_scope(query.join_from(A, Node, Node.id == A.node_id), ids)
    return query


def _bans(session: Session, ids: _Ids) -> list[BanMark]:
    query = select(NodeBan.node_id, NodeBan.cluster_id, _epoch(session, NodeBan.at))
    if ids.supplier is not None or ids.sku is not None:
        query = _node_scope(query.join(Node, Node.id == NodeBan.node_id), ids)
    return [BanMark(*row) for row in session.execute(query)]


def _rebanned_admissions(session: Session, ids: _Ids, days: int, key: Any = None) -> list[Row[Any]]:
    """The admissions that a re-ban followed, with their cluster, path and ``key``.

    Only nodes that were ever banned can have one, so only their admissions (in every cluster: a later admission
    elsewhere ends a window) are read; everything else is counted in SQL.
    """
    query = select(
        A.node_id,
        A.cluster_id,
        A.path,
        _epoch(session, A.finished_at).label("finished"),
        (key if key is not None else literal(None)).label("key"),
    ).where(A.status == "passed", A.node_id.in_(select(NodeBan.node_id)))
    rows = session.execute(_scoped(query, ids, by_node=key is not None, by_cluster=False)).all()
    flags = rebanned([Admission(r.node_id, r.cluster_id, r.finished) for r in rows], _bans(session, ids), days)
    return [r for r, flag in zip(rows, flags, strict=True) if flag and (ids.cluster in (None, r.cluster_id))]


# ---------------------------------------------------------------------------------------------------------------
# Re-ban rates.


@dataclass
class RebanReport:
    by: str
    days: int
    scope: Scope
    rates: list[RebanRate]

    @property
    def admissions(self) -> int:
        return sum(r.admissions for r in self.rates)

    @property
    def rebanned(self) -> int:
        return sum(r.rebanned for r in self.rates)

    def as_dict(self) -> dict[str, Any]:
        total = self.admissions
        return {
            "by": self.by,
            "days": self.days,
            **self.scope.as_dict(),
            "admissions": total,
            "rebanned": self.rebanned,
            "rate": self.rebanned / total if total else 0.0,
            "groups": [r.as_dict() for r in self.rates],
        }


def reban_report(
    db: Database, actor: Actor, by: str = "supplier", days: int = DEFAULT_DAYS, scope: Scope | None = None
) -> RebanReport:
    """Admissions and re-bans within ``days`` of them, grouped by supplier, SKU, cluster or month of admission."""
    _check(actor, days)
    if by not in GROUPINGS:
        raise InvalidInput(f"group by one of: {', '.join(GROUPINGS)}", field="by")
    scope = scope or Scope()
    with db.reader() as session:
        ids = _resolve(session, scope)
        key = {
            "supplier": Node.supplier_id,
            "sku": Node.sku_id,
            "cluster": A.cluster_id,
            "month": _month(session, A.finished_at),
        }[by]
        counted = select(key, func.count()).where(A.status == "passed").group_by(key)
        admissions: dict[Any, int] = dict(
            session.execute(_scoped(counted, ids, by_node=by in ("supplier", "sku"))).all()
        )
        again = Counter(r.key for r in _rebanned_admissions(session, ids, days, key))

    def name(raw: Any) -> str:
        return str(raw) if by == "month" else ids.names[by].get(raw, f"#{raw}")

    rates = rates_from_counts({name(k): n for k, n in admissions.items()}, {name(k): n for k, n in again.items()})
    if by == "month":
        rates.sort(key=lambda r: r.group)
    return RebanReport(by, days, scope, rates)


# ---------------------------------------------------------------------------------------------------------------
# The threshold simulator.


@dataclass
class ThresholdReport:
    scope: Scope
    days: int
    attempts: int
    passes_required: int
    validation_gpu_hours: float
    """GPU-hours the completed full-suite attempts in scope spent validating."""
    rows: list[ThresholdRow]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.scope.as_dict(),
            "days": self.days,
            "attempts": self.attempts,
            "passes_required": self.passes_required,
            "validation_gpu_hours": self.validation_gpu_hours,
            "rows": [r.as_dict() for r in self.rows],
        }


def _pass_gpu_hours(session: Session, ids: _Ids) -> dict[int, float]:
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


def threshold_report(
    db: Database, actor: Actor, scope: Scope | None = None, days: int = DEFAULT_DAYS
) -> ThresholdReport:
    """What requiring only k of the N passes would have done, for each k, from completed full-suite attempts."""
    _check(actor, days)
    scope = scope or Scope()
    full = sorted(p.value for p in FULL_PATHS)
    with db.reader() as session:
        ids = _resolve(session, scope)
        counted = (
            select(A.passes_required, A.first_failed_pass, func.count())
            .where(A.status != "in_progress", A.path.in_(full))
            .group_by(A.passes_required, A.first_failed_pass)
        )
        groups = session.execute(_scoped(counted, ids, by_node=False)).all()
        again = sum(1 for r in _rebanned_admissions(session, ids, days) if r.path in full)
        hours = _pass_gpu_hours(session, ids)
    first_failures: Counter[int] = Counter()
    for _, first, count in groups:
        if first is not None:
            first_failures[first] += count
    counts = OutcomeCounts(
        passes_required=max((n for n, _, _ in groups), default=0),
        first_failures=first_failures,
        admitted_at_n=sum(count for _, first, count in groups if first is None),
        rebanned_at_n=again,
    )
    return ThresholdReport(
        scope=scope,
        days=days,
        attempts=counts.attempts,
        passes_required=counts.passes_required,
        validation_gpu_hours=sum(hours.values()),
        rows=threshold_from_counts(counts, hours),
    )


# ---------------------------------------------------------------------------------------------------------------
# Figures for reports.


def validation_figures(db: Database, days: int = DEFAULT_DAYS) -> dict[str, Any]:
    """``reban_rate_by_supplier`` (supplier -> rate) and ``validation_gpu_hours`` (every recorded pass, every path),
    the two validation figures a fleet or simulator report carries."""
    with db.reader() as session:
        seconds = session.execute(
            select(func.sum(ValidationResult.seconds * A.gpus)).join(A, A.id == ValidationResult.attempt_id)
        ).scalar_one()
    rates = reban_report(db, SYSTEM, "supplier", days)
    return {
        "reban_rate_by_supplier": {r.group: r.rate for r in rates.rates},
        "validation_gpu_hours": float(seconds or 0) / 3600,
    }
