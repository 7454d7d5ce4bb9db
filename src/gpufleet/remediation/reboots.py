"""Reboot tracking: every reboot gpufleet asks for or sees, whether the node went down, came back, and how long.

A reboot that is not back within the policy's timeout is recorded as not returned (and its case escalates); the share
that returned is one of the remediation figures.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gpufleet.domain.remediation import percentile
from gpufleet.platform.context import Actor
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput
from gpufleet.remediation import store

OUTCOMES = ("pending", "returned", "not_returned")


def reboot_requested(
    session: UnitOfWork, node_id: str, cluster_id: int, case_id: int | None, reason: str, at: datetime
) -> int:
    return store.insert_reboot(
        session,
        node_id=node_id,
        cluster_id=cluster_id,
        case_id=case_id,
        source="requested",
        reason=reason,
        requested_at=at,
        outcome="pending",
    )


def reboot_went_down(session: UnitOfWork, reboot_id: int, at: datetime) -> None:
    store.reboot_went_down(session, reboot_id, at)


def reboot_returned(session: UnitOfWork, reboot_id: int, came_back_at: datetime) -> float:
    """Record the return; the duration runs from the request to the node answering again."""
    requested = store.reboot_requested_at(session, reboot_id)
    back = max(came_back_at, requested)
    seconds = (back - requested).total_seconds()
    store.reboot_returned(session, reboot_id, back, seconds, requested)
    return seconds


def reboot_not_returned(session: UnitOfWork, reboot_id: int) -> None:
    store.reboot_not_returned(session, reboot_id)


def reboot_observed(
    session: UnitOfWork,
    node_id: str,
    cluster_id: int,
    went_down_at: datetime | None,
    came_back_at: datetime,
    reason: str,
    case_id: int | None = None,
) -> int:
    """A reboot nobody here asked for (a crash, a supplier's maintenance), seen from the node's boot time."""
    start = went_down_at or came_back_at
    return store.insert_reboot(
        session,
        node_id=node_id,
        cluster_id=cluster_id,
        case_id=case_id,
        source="observed",
        reason=reason,
        requested_at=start,
        went_down_at=went_down_at,
        came_back_at=came_back_at,
        seconds=(came_back_at - start).total_seconds() if went_down_at else None,
        outcome="returned",
    )


def reboot_figures(session: UnitOfWork, since: datetime | None = None) -> dict[str, Any]:
    rows = store.reboot_outcomes(session, since)
    decided = [r for r in rows if r.outcome != "pending"]
    returned = [r for r in decided if r.outcome == "returned"]
    minutes = [r.seconds / 60 for r in returned if r.seconds is not None]
    p50, p90 = percentile(minutes, 0.5), percentile(minutes, 0.9)
    return {
        "total": len(rows),
        "requested": sum(1 for r in rows if r.source == "requested"),
        "observed": sum(1 for r in rows if r.source == "observed"),
        "returned": len(returned),
        "not_returned": len(decided) - len(returned),
        "pending": len(rows) - len(decided),
        "returned_share": round(len(returned) / len(decided), 4) if decided else None,
        "minutes_p50": round(p50, 1) if p50 is not None else None,
        "minutes_p90": round(p90, 1) if p90 is not None else None,
    }


def list_reboots(
    db: Database, actor: Actor, cluster: str | None = None, outcome: str | None = None, limit: int = 200
) -> dict[str, Any]:
    """Recent reboots and the figures: which nodes went down, which came back, the share that returned."""
    if actor.tenant_scoped:
        raise Forbidden("reboot tracking is fleet data; a tenant-scoped token cannot read it")
    if outcome is not None and outcome not in OUTCOMES:
        raise InvalidInput(f"unknown outcome '{outcome}'; expected one of: {', '.join(OUTCOMES)}", field="outcome")
    with db.reader() as session:
        rows = [
            {
                "id": r.id,
                "node": r.node_id,
                "hostname": hostname,
                "cluster": name,
                "case": r.case_id,
                "source": r.source,
                "reason": r.reason,
                "requested_at": r.requested_at.isoformat(),
                "went_down_at": r.went_down_at.isoformat() if r.went_down_at else None,
                "came_back_at": r.came_back_at.isoformat() if r.came_back_at else None,
                "minutes": round(r.seconds / 60, 1) if r.seconds is not None else None,
                "outcome": r.outcome,
            }
            for r, hostname, name in store.recent_reboots(session, limit, cluster, outcome)
        ]
        return {"figures": reboot_figures(session), "reboots": rows}
