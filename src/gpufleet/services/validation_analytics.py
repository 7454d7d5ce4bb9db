"""Re-ban rates and the threshold simulator over the stored validation history.

SQL does the heavy part: attempts carry their outcome (first failing pass, last finish), and GPU-hours per pass
number come from one GROUP BY over the pass records. Only one row per completed attempt and one per ban reach
Python, where the domain does the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVarTuple

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import Cluster, Node, NodeBan, Sku, Supplier, ValidationAttempt, ValidationResult
from gpufleet.domain.validation import FULL_PATHS
from gpufleet.domain.validation_analytics import (
    Admission,
    AttemptOutcome,
    BanMark,
    RebanRate,
    ThresholdRow,
    month_of,
    reban_rates,
    rebanned,
    threshold_table,
)
from gpufleet.services.context import SYSTEM, Actor
from gpufleet.services.database import Database
from gpufleet.services.errors import Forbidden, InvalidInput, NotFound

GROUPINGS = ("supplier", "sku", "cluster", "month")
DEFAULT_DAYS = 30
MAX_DAYS = 3650
A = ValidationAttempt
Row = TypeVarTuple("Row")


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


def _node_scope(query: Select[*Row], ids: _Ids) -> Select[*Row]:
    if ids.supplier is not None:
        query = query.where(Node.supplier_id == ids.supplier)
    if ids.sku is not None:
        query = query.where(Node.sku_id == ids.sku)
    return query


@dataclass(frozen=True)
class _Completed:
    node_id: str
    cluster_id: int
    path: str
    passes_required: int
    first_failed_pass: int | None
    passed: bool
    finished_at: Any
    supplier_id: int
    sku_id: int


def _completed(session: Session, ids: _Ids) -> list[_Completed]:
    """Every finished attempt of the nodes in scope (all clusters: a later admission elsewhere ends a window)."""
    query = select(
        A.node_id,
        A.cluster_id,
        A.path,
        A.passes_required,
        A.first_failed_pass,
        A.status == "passed",
        A.finished_at,
        Node.supplier_id,
        Node.sku_id,
    ).join(Node, Node.id == A.node_id)
    query = _node_scope(query.where(A.status != "in_progress"), ids)
    return [_Completed(*row) for row in session.execute(query)]


def _bans(session: Session, ids: _Ids) -> list[BanMark]:
    query = select(NodeBan.node_id, NodeBan.cluster_id, NodeBan.at)
    if ids.supplier is not None or ids.sku is not None:
        query = _node_scope(query.join(Node, Node.id == NodeBan.node_id), ids)
    return [BanMark(*row) for row in session.execute(query)]


def _admissions(session: Session, ids: _Ids, days: int) -> tuple[list[_Completed], list[bool]]:
    """Passing attempts in scope and, for each, whether a re-ban followed it."""
    passed = [c for c in _completed(session, ids) if c.passed]
    flags = rebanned([Admission(c.node_id, c.cluster_id, c.finished_at) for c in passed], _bans(session, ids), days)
    return passed, flags


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
        passed, flags = _admissions(session, ids, days)
    keys: list[str] = []
    kept: list[bool] = []
    for admission, flag in zip(passed, flags, strict=True):
        if ids.cluster is not None and admission.cluster_id != ids.cluster:
            continue
        if by == "month":
            keys.append(month_of(admission.finished_at))
        else:
            raw = {"supplier": admission.supplier_id, "sku": admission.sku_id, "cluster": admission.cluster_id}[by]
            keys.append(ids.names[by].get(raw, f"#{raw}"))
        kept.append(flag)
    rates = reban_rates(keys, kept)
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
    if ids.cluster is not None:
        query = query.where(A.cluster_id == ids.cluster)
    if ids.supplier is not None or ids.sku is not None:
        query = _node_scope(query.join(Node, Node.id == A.node_id), ids)
    return {number: float(seconds or 0) / 3600 for number, seconds in session.execute(query)}


def threshold_report(
    db: Database, actor: Actor, scope: Scope | None = None, days: int = DEFAULT_DAYS
) -> ThresholdReport:
    """What requiring only k of the N passes would have done, for each k, from completed full-suite attempts."""
    _check(actor, days)
    scope = scope or Scope()
    with db.reader() as session:
        ids = _resolve(session, scope)
        completed = _completed(session, ids)
        passed = [c for c in completed if c.passed]
        flags = rebanned([Admission(c.node_id, c.cluster_id, c.finished_at) for c in passed], _bans(session, ids), days)
        hours = _pass_gpu_hours(session, ids)
    rebanned_ids = {id(c) for c, flag in zip(passed, flags, strict=True) if flag}
    outcomes = [
        AttemptOutcome(c.passes_required, c.first_failed_pass, id(c) in rebanned_ids)
        for c in completed
        if c.path in FULL_PATHS and (ids.cluster is None or c.cluster_id == ids.cluster)
    ]
    rows = threshold_table(outcomes, hours)
    return ThresholdReport(
        scope=scope,
        days=days,
        attempts=len(outcomes),
        passes_required=max((o.passes_required for o in outcomes), default=0),
        validation_gpu_hours=sum(hours.values()),
        rows=rows,
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
