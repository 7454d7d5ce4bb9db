"""Re-ban rates and the threshold simulator over the stored validation history.

SQL does the heavy part: attempts carry their outcome (first failing pass, last finish), so admissions and first
failures are counted with GROUP BY over attempts, and GPU-hours per pass number with one GROUP BY over the pass
records. Only the bans and the admissions of banned nodes reach Python, where the domain matches them up.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from gpufleet.domain.validation import FULL_PATHS
from gpufleet.domain.validation_analytics import (
    Admission,
    OutcomeCounts,
    RebanRate,
    ThresholdRow,
    rates_from_counts,
    rebanned,
    threshold_from_counts,
)
from gpufleet.platform.context import SYSTEM, Actor
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound
from gpufleet.validation import store
from gpufleet.validation.store import ScopeIds

GROUPINGS = ("supplier", "sku", "cluster", "month")
DEFAULT_DAYS = 30
MAX_DAYS = 3650


@dataclass(frozen=True)
class Scope:
    cluster: str | None = None
    supplier: str | None = None
    sku: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"cluster": self.cluster, "supplier": self.supplier, "sku": self.sku}


def _resolve(session: UnitOfWork, scope: Scope) -> ScopeIds:
    ids = ScopeIds()
    for kind, wanted in (("cluster", scope.cluster), ("supplier", scope.supplier), ("sku", scope.sku)):
        names = store.names_by_id(session, kind)
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


def _rebanned_admissions(session: UnitOfWork, ids: ScopeIds, days: int, by: str | None = None) -> list[Any]:
    """The admissions that a re-ban followed, with their cluster, path and ``key`` (the group ``by`` names).

    Only nodes that were ever banned can have one, so only their admissions (in every cluster: a later admission
    elsewhere ends a window) are read; everything else is counted in SQL.
    """
    rows = store.admissions_of_banned_nodes(session, ids, by)
    flags = rebanned(
        [Admission(r.node_id, r.cluster_id, r.finished) for r in rows], store.ban_marks(session, ids), days
    )
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
        admissions = store.admissions_by(session, ids, by)
        again = Counter(r.key for r in _rebanned_admissions(session, ids, days, by))

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


def threshold_report(
    db: Database, actor: Actor, scope: Scope | None = None, days: int = DEFAULT_DAYS
) -> ThresholdReport:
    """What requiring only k of the N passes would have done, for each k, from completed full-suite attempts."""
    _check(actor, days)
    scope = scope or Scope()
    full = sorted(p.value for p in FULL_PATHS)
    with db.reader() as session:
        ids = _resolve(session, scope)
        groups = store.outcome_groups(session, ids, full)
        again = sum(1 for r in _rebanned_admissions(session, ids, days) if r.path in full)
        hours = store.pass_gpu_hours(session, ids)
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
        seconds = store.validation_gpu_seconds(session)
    rates = reban_report(db, SYSTEM, "supplier", days)
    return {
        "reban_rate_by_supplier": {r.group: r.rate for r in rates.rates},
        "validation_gpu_hours": float(seconds or 0) / 3600,
    }
