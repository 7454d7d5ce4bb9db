"""Supplier tickets: one open RMA or escalation per hardware unit, with the evidence, sent through the outbox.

The unit is the GPU when the evidence names one with a serial, else the node (its supplier serial): a second case on
the same unit while its ticket is open adds its evidence to that ticket instead of opening another, so the supplier
hears about a unit once. Status moves open -> sent (the notifier delivered it) -> acknowledged (the supplier said
so) -> resolved (the hardware came back) or closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gpufleet.adapters.db.models import Ticket
from gpufleet.fleet.lifecycle import check_reason
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound
from gpufleet.remediation import store
from gpufleet.remediation.outbox import enqueue

STATUSES = ("open", "sent", "acknowledged", "resolved", "closed")
OPEN_STATUSES = ("open", "sent", "acknowledged")
MAX_EVIDENCE = 200


@dataclass(frozen=True)
class TicketRef:
    id: int
    created: bool
    unit: str


def _unit(session: UnitOfWork, node_id: str, gpu_index: int | None) -> tuple[str, str | None, str, int, str]:
    node = store.ticket_node(session, node_id)
    gpu_serial = None
    if gpu_index is not None:
        gpu_serial = store.gpu_serial(session, node_id, gpu_index)
    unit = f"gpu:{gpu_serial}" if gpu_serial else f"node:{node.serial}"
    return unit, gpu_serial, node.serial, node.supplier_id, node.hostname


def open_ticket(
    session: UnitOfWork,
    node_id: str,
    gpu_index: int | None,
    case_id: int,
    kind: str,
    summary: str,
    evidence: list[dict[str, Any]],
    now: datetime,
) -> TicketRef:
    """Open a ticket for the unit, or add this case and its evidence to the unit's open ticket."""
    unit, gpu_serial, serial, supplier_id, hostname = _unit(session, node_id, gpu_index)
    open_unit = f"{supplier_id}|{unit}"
    ticket = store.open_ticket_of(session, open_unit)
    if ticket is not None:
        if case_id not in ticket.case_ids:
            ticket.case_ids = [*ticket.case_ids, case_id]
            ticket.evidence = [*ticket.evidence, *evidence][-MAX_EVIDENCE:]
            ticket.updated_at = now
            ticket.version += 1
            enqueue(
                session,
                f"ticket-{ticket.id}-case-{case_id}",
                "ticket.updated",
                _payload(ticket, serial, hostname, summary),
                now,
                supplier_id,
                ticket.id,
            )
        return TicketRef(ticket.id, False, unit)
    ticket = store.add_ticket(
        session,
        supplier_id=supplier_id,
        node_id=node_id,
        unit=unit,
        open_unit=open_unit,
        gpu_serial=gpu_serial,
        kind=kind,
        status="open",
        summary=summary,
        case_ids=[case_id],
        evidence=evidence[-MAX_EVIDENCE:],
        created_at=now,
        updated_at=now,
        version=1,
    )
    enqueue(
        session,
        f"ticket-{ticket.id}-opened",
        "ticket.opened",
        _payload(ticket, serial, hostname, summary),
        now,
        supplier_id,
        ticket.id,
    )
    return TicketRef(ticket.id, True, unit)


def _payload(ticket: Ticket, serial: str, hostname: str, summary: str) -> dict[str, Any]:
    return {
        "ticket": ticket.id,
        "kind": ticket.kind,
        "unit": ticket.unit,
        "node_serial": serial,
        "gpu_serial": ticket.gpu_serial,
        "hostname": hostname,
        "summary": summary,
        "cases": list(ticket.case_ids),
        "evidence": list(ticket.evidence),
    }


def resolve_ticket(session: UnitOfWork, ticket_id: int, now: datetime, note: str) -> None:
    """The hardware came back: the unit may get a new ticket from now on."""
    ticket = store.ticket(session, ticket_id)
    if ticket is None or ticket.status not in OPEN_STATUSES:
        return
    ticket.status, ticket.open_unit, ticket.updated_at = "resolved", None, now
    ticket.version += 1
    enqueue(
        session,
        f"ticket-{ticket.id}-resolved",
        "ticket.resolved",
        {"ticket": ticket.id, "note": note},
        now,
        ticket.supplier_id,
        ticket.id,
    )


def _view(ticket: Ticket, supplier: str) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "supplier": supplier,
        "kind": ticket.kind,
        "unit": ticket.unit,
        "node": ticket.node_id,
        "gpu_serial": ticket.gpu_serial,
        "status": ticket.status,
        "summary": ticket.summary,
        "cases": list(ticket.case_ids),
        "evidence": list(ticket.evidence),
        "external_ref": ticket.external_ref,
        "created_at": ticket.created_at.isoformat(),
        "updated_at": ticket.updated_at.isoformat(),
    }


def _reader(actor: Actor) -> None:
    if actor.tenant_scoped:
        raise Forbidden("supplier tickets are fleet data; a tenant-scoped token cannot read them")


def list_tickets(
    db: Database, actor: Actor, status: str | None = None, supplier: str | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    _reader(actor)
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown status '{status}'; expected one of: {', '.join(STATUSES)}", field="status")
    with db.reader() as session:
        return [_view(t, name) for t, name in store.tickets(session, limit, status, supplier)]


def set_ticket_status(
    db: Database, actor: Actor, ticket_id: int, status: str, reason: str | None, external_ref: str | None = None
) -> dict[str, Any]:
    """Record what the supplier said (acknowledged, their reference) or close a ticket, with a reason."""
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("changing a ticket needs the operator role and a token not scoped to a tenant")
    check_reason(reason)
    if status not in STATUSES:
        raise InvalidInput(f"unknown status '{status}'; expected one of: {', '.join(STATUSES)}", field="status")
    if external_ref is not None and len(external_ref) > 200:
        raise InvalidInput("the supplier's reference is at most 200 characters", field="external_ref")
    now = db.clock.now()
    with db.transaction() as session:
        row = store.ticket_with_supplier(session, ticket_id)
        if row is None:
            raise NotFound(f"no ticket with id {ticket_id}")
        ticket, supplier = row
        if ticket.status != status or (external_ref and external_ref != ticket.external_ref):
            ticket.status = status
            if external_ref:
                ticket.external_ref = external_ref
            if status not in OPEN_STATUSES:
                ticket.open_unit = None
            ticket.updated_at = now
            ticket.version += 1
        return _view(ticket, supplier)
