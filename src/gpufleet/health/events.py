"""Reading the health events: filtered pages, the unmatched list, and matching it again once the inventory is fixed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gpufleet.adapters.db.models import HealthEvent
from gpufleet.adapters.formats.health_observation import SEVERITIES, GpuRef
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.health import store
from gpufleet.health.ingest import FORMATS, STALE, STALE_AGE, notify
from gpufleet.health.match import Inventory
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput

MAX_PAGE = 1000


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
        node_id = None if where.node is None else resolve_node_id(session, where.node, actor, now)
        rows = store.event_page(
            session,
            limit + 1,
            before,
            node_id=node_id,
            unmatched=where.unmatched,
            source=where.source,
            code=where.code,
            severity=where.severity,
            since=where.since,
        )
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
        events = store.unmatched_events(session, limit)
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
        store.save_rematched(session, changes)
    if report.event_ids:
        notify(db, report.event_ids)
    return report
