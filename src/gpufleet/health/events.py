"""Reading the health events: filtered pages, the unmatched list, and matching it again once the inventory is fixed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import HealthEvent, Node
from gpufleet.adapters.formats.health_observation import SEVERITIES, GpuRef
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.health.ingest import FORMATS, STALE, STALE_AGE, notify
from gpufleet.health.match import Inventory
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput

MAX_PAGE = 1000
EVENTS = cast(Table, HealthEvent.__table__)


@dataclass(frozen=True)
class EventFilter:
    node: str | None = None
    unmatched: bool = False
    source: str | None = None
    code: str | None = None
    severity: str | None = None
    since: datetime | None = None


@dataclass
class EventPage:
    items: list[dict[str, Any]]
    next_before: int | None
    """Pass as ``before`` for the next (older) page; None on the last page."""


def _check_reader(actor: Actor) -> None:
    if actor.tenant_scoped:
        raise Forbidden("health events are fleet data; a tenant-scoped token cannot read them")


def _item(event: HealthEvent, hostname: str | None, serial: str | None) -> dict[str, Any]:
    data = dict(event.data or {})
    return {
        "id": event.id,
        "observed_at": event.observed_at.isoformat(),
        "received_at": event.received_at.isoformat(),
        "source": event.source,
        "code": event.code,
        "severity": event.severity,
        "status": event.status,
        "node": None if event.node_id is None else {"id": event.node_id, "hostname": hostname, "serial": serial},
        "gpu_index": event.gpu_index,
        "subject": event.subject,
        "message": event.message,
        "flag": data.get("flag"),
        "unmatched": data.get("unmatched"),
        "processed_at": event.processed_at.isoformat() if event.processed_at else None,
        "case_id": event.case_id,
        "data": data,
    }


def list_events(
    db: Database, actor: Actor, where: EventFilter | None = None, limit: int = 100, before: int | None = None
) -> EventPage:
    """Newest first. ``unmatched`` lists the events no node could be found for."""
    _check_reader(actor)
    where = where or EventFilter()
    if where.source is not None and where.source not in (*FORMATS, "agent"):
        raise InvalidInput(f"unknown source '{where.source}'; expected one of {', '.join(FORMATS)}", field="source")
    if where.severity is not None and where.severity not in SEVERITIES:
        raise InvalidInput(f"unknown severity '{where.severity}'", field="severity")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be from 1 to {MAX_PAGE}", field="limit")
    now = db.clock.now()
    with db.reader() as session:
        query = (
            select(HealthEvent, Node.hostname, Node.serial)
            .outerjoin(Node, Node.id == HealthEvent.node_id)
            .order_by(HealthEvent.id.desc())
            .limit(limit + 1)
        )
        if where.node is not None:
            query = query.where(HealthEvent.node_id == resolve_node_id(session, where.node, actor, now))
        if where.unmatched:
            query = query.where(HealthEvent.node_id.is_(None))
        if where.source is not None:
            query = query.where(HealthEvent.source == where.source)
        if where.code is not None:
            query = query.where(HealthEvent.code == where.code)
        if where.severity is not None:
            query = query.where(HealthEvent.severity == where.severity)
        if where.since is not None:
            query = query.where(HealthEvent.observed_at >= where.since)
        if before is not None:
            query = query.where(HealthEvent.id < before)
        rows = session.execute(query).all()
        items = [_item(event, hostname, serial) for event, hostname, serial in rows[:limit]]
    return EventPage(items, items[-1]["id"] if len(rows) > limit else None)


@dataclass
class RematchReport:
    examined: int = 0
    matched: int = 0
    still_unmatched: int = 0
    stale: int = 0
    event_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _unmatched(session: Session, limit: int) -> list[HealthEvent]:
    query = select(HealthEvent).where(HealthEvent.node_id.is_(None)).order_by(HealthEvent.id).limit(limit)
    return list(session.execute(query).scalars())


def rematch(db: Database, actor: Actor, limit: int = 100_000) -> RematchReport:
    """Match the unmatched events again against today's inventory (after adding a node or fixing a GPU serial).

    An event that now matches gets its node and GPU and becomes unprocessed, so remediation sees it, unless it is
    older than 30 days by now; one that still does not match keeps its current reason.
    """
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("matching health events again needs the operator role and no tenant scope")
    report = RematchReport()
    now = db.clock.now()
    with db.transaction() as session:
        events = _unmatched(session, limit)
        report.examined = len(events)
        refs = [str(e.data.get("node_ref") or "") for e in events]
        gpus = [GpuRef(**e.data["gpu_ref"]) if e.data.get("gpu_ref") else None for e in events]
        inventory = Inventory(session, refs, [g for g in gpus if g is not None])
        changes: list[dict[str, Any]] = []
        for event, ref, gpu in zip(events, refs, gpus, strict=True):
            match = inventory.match(ref or None, gpu)
            data = dict(event.data)
            if match.node_id is None:
                report.still_unmatched += 1
                if match.reason and match.reason != data.get("unmatched"):
                    data["unmatched"] = match.reason
                    changes.append({"b_id": event.id, "b_node": None, "b_gpu": None, "b_data": data, "b_done": now})
                continue
            data.pop("unmatched", None)
            data["rematched_at"] = now.isoformat()
            if match.gpu_unresolved:
                data["gpu_unresolved"] = True
            done: datetime | None = None
            if data.get("flag") or event.observed_at < now - STALE_AGE:
                data["flag"] = data.get("flag") or STALE
                report.stale += 1
                done = now
            else:
                report.event_ids.append(event.id)
            report.matched += 1
            changes.append(
                {"b_id": event.id, "b_node": match.node_id, "b_gpu": match.gpu_index, "b_data": data, "b_done": done}
            )
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
    if report.event_ids:
        notify(db, report.event_ids)
    return report
