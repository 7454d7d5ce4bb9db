"""The brakes on automation: blast-radius budgets, the per-cluster circuit breaker, and its reset with a reason.

The breaker trips in the same transaction that opens the case that crossed its threshold, so every process sees it
at once; while it is open, new cases in that cluster wait in ``detected`` (visible, with the breaker's reason)
instead of taking nodes out. Only a person resets it, and the reset is recorded with who and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gpufleet.domain.blast_radius import BudgetCheck, breaker_threshold, breaker_trip_reason, check_budgets
from gpufleet.domain.xid_policy import XidPolicy
from gpufleet.fleet.lifecycle import check_reason
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, NotFound
from gpufleet.remediation import store
from gpufleet.remediation.runtime import ClusterBook

OPEN = "open"
CLOSED = "closed"


def breaker_open(session: UnitOfWork, cluster_id: int) -> str | None:
    """The reason the cluster's breaker is open, or ``None`` when automation may act."""
    row = store.breaker_status(session, cluster_id)
    return row.reason if row is not None and row.state == OPEN else None


def open_breakers(session: UnitOfWork) -> dict[int, str]:
    rows = store.breakers_in_state(session, OPEN)
    return {r.cluster_id: r.reason or "open" for r in rows}


def note_case_opened(
    session: UnitOfWork, book: ClusterBook, cluster_id: int, policy: XidPolicy, now: datetime, actor: str
) -> str | None:
    """Trip the breaker if this case made the window's count reach the threshold; returns the reason if it did."""
    settings = policy.settings
    since = now - timedelta(minutes=settings.breaker_window_minutes)
    opened = store.opened_since(session, cluster_id, since)
    if opened < settings.breaker_min:
        return None  # the cheap check first: most openings are nowhere near any threshold
    state = store.breaker_state(session, cluster_id)
    if state == OPEN:
        return None
    name, size = book.cluster(session, cluster_id).name, book.total(session, cluster_id, now)
    reason = breaker_trip_reason(settings, name, size, opened)
    if reason is None:
        return None
    data = {
        "opened": opened,
        "threshold": breaker_threshold(settings, size),
        "window_minutes": settings.breaker_window_minutes,
    }
    row = store.breaker(session, cluster_id)
    if row is None:
        store.add_breaker(session, cluster_id=cluster_id, state=OPEN, tripped_at=now, reason=reason, data=data)
    else:
        row.state, row.tripped_at, row.reason, row.data = OPEN, now, reason, data
        row.version += 1
    store.flush(session)
    return reason


def budget(
    session: UnitOfWork, book: ClusterBook, policy: XidPolicy, cluster_id: int, domain_id: int | None, now: datetime
) -> BudgetCheck:
    active, domain_active = store.count_active(session, cluster_id, domain_id)
    facts = book.cluster(session, cluster_id)
    size = book.size(session, cluster_id, now)
    domain_name, domain_size = (None, 0) if domain_id is None else book.domain(session, domain_id, now)
    return check_budgets(policy.settings, facts.name, size, active, domain_name, domain_size, domain_active)


@dataclass(frozen=True)
class BreakerView:
    cluster: str
    state: str
    tripped_at: datetime | None
    reason: str | None
    data: dict[str, Any]
    reset_at: datetime | None
    reset_by: str | None
    reset_reason: str | None
    held_cases: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "state": self.state,
            "tripped_at": self.tripped_at.isoformat() if self.tripped_at else None,
            "reason": self.reason,
            "data": self.data,
            "reset_at": self.reset_at.isoformat() if self.reset_at else None,
            "reset_by": self.reset_by,
            "reset_reason": self.reset_reason,
            "held_cases": self.held_cases,
        }


def _held(session: UnitOfWork, cluster_id: int) -> int:
    return store.count_held_by_breaker(session, cluster_id)


def breakers(db: Database, actor: Actor) -> list[BreakerView]:
    """Every cluster's breaker (closed for clusters whose breaker never tripped)."""
    if actor.tenant_scoped:
        raise Forbidden("breakers are fleet data; a tenant-scoped token cannot read them")
    with db.reader() as session:
        rows = {r.cluster_id: r for r in store.all_breakers(session)}
        out = []
        for cluster_id, name in store.clusters_by_name(session):
            r = rows.get(cluster_id)
            if r is None:
                out.append(BreakerView(name, CLOSED, None, None, {}, None, None, None, 0))
            else:
                out.append(
                    BreakerView(
                        name,
                        r.state,
                        r.tripped_at,
                        r.reason,
                        dict(r.data or {}),
                        r.reset_at,
                        r.reset_by,
                        r.reset_reason,
                        _held(session, cluster_id),
                    )
                )
        return out


def trip_breaker(db: Database, actor: Actor, cluster: str, reason: str | None) -> BreakerView:
    """A person stops automation in a cluster (for a change window, a suspect health check)."""
    return _set(db, actor, cluster, reason, OPEN)


def reset_breaker(db: Database, actor: Actor, cluster: str, reason: str | None) -> BreakerView:
    """Close the breaker so held cases proceed; resetting a closed breaker changes nothing."""
    return _set(db, actor, cluster, reason, CLOSED)


def _set(db: Database, actor: Actor, cluster: str, reason: str | None, state: str) -> BreakerView:
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("the breaker needs the operator role and a token not scoped to a tenant")
    text = check_reason(reason)
    now = db.clock.now()
    with db.transaction() as session:
        cluster_id = store.cluster_id_named(session, cluster.strip())
        if cluster_id is None:
            raise NotFound(f"no cluster named '{cluster}'")
        row = store.breaker(session, cluster_id, lock=True)
        if row is None:
            row = store.add_breaker(session, cluster_id=cluster_id, state=CLOSED, data={}, version=0)
        if row.state != state:
            row.state = state
            row.version += 1
            if state == OPEN:
                row.tripped_at, row.reason, row.data = now, f"tripped by {actor.name}: {text}", {"manual": True}
            else:
                row.reset_at, row.reset_by, row.reset_reason = now, actor.name, text
                # Held cases move on at the controller's next pass instead of waiting out their poll.
                store.wake_held_by_breaker(session, cluster_id, now)
        store.flush(session)
        return BreakerView(
            cluster.strip(),
            row.state,
            row.tripped_at,
            row.reason,
            dict(row.data or {}),
            row.reset_at,
            row.reset_by,
            row.reset_reason,
            _held(session, cluster_id),
        )
