"""Cases as people see and steer them: lists, one case with its steps and evidence, and what a person may do.

A person's action always carries a reason and marks the case as touched by a human, which is what the automation
rate counts. The supplier's return is not a human act: it is how an escalated case continues on its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gpufleet.adapters.db.models import RemediationCase
from gpufleet.domain.lifecycle import NodeState
from gpufleet.domain.remediation import (
    PERSON_ACTIONS,
    CaseState,
    InvalidCaseTransition,
    case_deadline,
    next_case_state,
)
from gpufleet.domain.xid_policy import Action
from gpufleet.fleet.lifecycle import TransitionResult, apply_transition, check_reason
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound, ServiceError
from gpufleet.remediation import store
from gpufleet.remediation.intake import node_events
from gpufleet.remediation.policy import PolicyBook
from gpufleet.remediation.tickets import open_ticket, resolve_ticket

HUMAN_ACTIONS = tuple(PERSON_ACTIONS)
"""What a person may do to an open case (``act``), in the case table's order: repaired, retry, escalate, close."""
MAX_LIST = 5000


class CaseConflict(ServiceError):
    status = 409
    title = "Conflict"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def case_view(case: RemediationCase, serial: str, hostname: str, cluster: str, supplier: str) -> dict[str, Any]:
    mttr = None
    if case.resolution == "reintegrated" and case.closed_at is not None:
        mttr = round((case.closed_at - case.detected_at).total_seconds() / 60, 1)
    return {
        "id": case.id,
        "node": {"id": case.node_id, "serial": serial, "hostname": hostname},
        "cluster": cluster,
        "supplier": supplier,
        "pool": case.pool,
        "state": case.state,
        "action": case.action or case.start_action,
        "attempt": case.attempt,
        "kind": case.kind,
        "owner": case.owner,
        "codes": list(case.codes),
        "reason": case.reason,
        "held": case.held,
        "dry_run": case.dry_run,
        "human": case.human,
        "resolution": case.resolution,
        "ticket": case.ticket_id,
        "policy_version": case.policy_version,
        "correlation_id": case.correlation_id,
        "detected_at": _iso(case.detected_at),
        "opened_at": _iso(case.opened_at),
        "state_since": _iso(case.state_since),
        "closed_at": _iso(case.closed_at),
        "next_check_at": _iso(case.next_check_at),
        "deadline_at": _iso(case.deadline_at),
        "minutes_to_repair": mttr,
        "validation": dict(case.plan) if case.plan else None,
    }


def list_cases(
    db: Database,
    actor: Actor,
    state: str | None = None,
    cluster: str | None = None,
    node: str | None = None,
    open_only: bool = False,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Cases newest first, filtered; a tenant-scoped caller sees only cases of nodes allocated to its tenant."""
    if state is not None and state not in {s.value for s in CaseState}:
        names = ", ".join(s.value for s in CaseState)
        raise InvalidInput(f"unknown case state '{state}'; expected one of: {names}", field="state")
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit must be from 1 to {MAX_LIST}", field="limit")
    now = db.clock.now()
    with db.reader() as session:
        node_id = resolve_node_id(session, node, actor, now) if node else None
        rows = store.case_views(session, actor, now, limit, state, open_only, cluster, node_id)
        return [case_view(*row) for row in rows]


def show_case(db: Database, actor: Actor, case_id: int) -> dict[str, Any]:
    """One case with its steps (who or what, when) and its evidence."""
    now = db.clock.now()
    with db.reader() as session:
        row = store.case_view_row(session, actor, now, case_id)
        if row is None:
            raise NotFound(f"no case with id {case_id}")
        view = case_view(*row)
        view["steps"] = [
            {
                "at": s.at.isoformat(),
                "actor": s.actor,
                "kind": s.kind,
                "from_state": s.from_state,
                "to_state": s.to_state,
                "action": s.action,
                "detail": s.detail,
                "data": s.data,
            }
            for s in store.case_steps(session, case_id)
        ]
        view["evidence"] = node_events(session, case_id)
        view["reboots"] = [
            {
                "id": r.id,
                "source": r.source,
                "requested_at": r.requested_at.isoformat(),
                "went_down_at": _iso(r.went_down_at),
                "came_back_at": _iso(r.came_back_at),
                "minutes": round(r.seconds / 60, 1) if r.seconds is not None else None,
                "outcome": r.outcome,
            }
            for r in store.case_reboots(session, case_id)
        ]
        ticket = store.ticket(session, row[0].ticket_id) if row[0].ticket_id else None
        view["ticket_detail"] = (
            {"id": ticket.id, "unit": ticket.unit, "status": ticket.status, "kind": ticket.kind} if ticket else None
        )
        return view


# ---------------------------------------------------------------------------------------------------------------
# What people (and suppliers) do.


def _node_to(
    session: UnitOfWork,
    node_id: str,
    events: list[str],
    reason: str,
    actor: Actor,
    now: datetime,
    data: dict[str, Any],
) -> list[TransitionResult]:
    return [apply_transition(session, node_id, e, reason, actor, now, data=data) for e in events]


def _move(
    session: UnitOfWork,
    case: store.CaseRow,
    event: str,
    detail: str,
    actor: str,
    now: datetime,
    book: PolicyBook,
    **data: Any,
) -> None:
    try:
        after = next_case_state(case.case_state, event)
    except InvalidCaseTransition as exc:
        raise CaseConflict(str(exc)) from None
    policy = book.get(case.cluster_id, case.pool)
    store.add_step(session, case.id, now, actor, "transition", detail, case.state, after.value, case.action, data)
    case.set(
        state=after.value,
        state_since=now,
        held=None,
        next_check_at=now,
        deadline_at=case_deadline(after, now, policy.settings),
    )
    if after in (CaseState.REINTEGRATED, CaseState.CLOSED):
        case.set(open_node_id=None, closed_at=now, next_check_at=None, deadline_at=None)


def act(
    session: UnitOfWork,
    case_id: int,
    action: str,
    reason: str,
    actor: Actor,
    now: datetime,
    hardware_change: bool = True,
) -> list[TransitionResult]:
    """A person's decision on a case, inside the caller's transaction. Returns the node transitions it applied."""
    case = store.load(session, case_id)
    if case is None:
        raise NotFound(f"no case with id {case_id}")
    if not case.is_open:
        raise CaseConflict(f"case {case_id} is {case.state}: closed cases take no action")
    if action not in HUMAN_ACTIONS:
        raise InvalidInput(f"unknown action '{action}'; expected one of: {', '.join(HUMAN_ACTIONS)}", field="action")
    book = PolicyBook(session)
    state = store.node_state(session, case.node_id)
    data = {"case": case.id, "by": actor.name}
    moves: list[TransitionResult] = []
    case.set(human=True)
    if action == "close":
        _move(session, case, "close", f"closed by {actor.name}: {reason}", actor.name, now, book)
        case.set(resolution="closed_by_person")
    elif action == "repaired":
        if state == NodeState.DIAGNOSING.value:
            events = ["repair", "repaired"]
        elif state == NodeState.REPAIRING.value:
            events = ["repaired"]
        elif state == NodeState.AWAITING_SUPPLIER.value:
            events = ["supplier_returned"]
        else:
            raise CaseConflict(
                f"the node is {state}: a repair is recorded from diagnosing, repairing or awaiting_supplier"
            )
        moves = _node_to(
            session,
            case.node_id,
            events,
            f"repaired by {actor.name}: {reason}",
            actor,
            now,
            {**data, "action": case.action or Action.INSPECT.value, "hardware_change": hardware_change},
        )
        if case.case_state is not CaseState.NEEDS_HUMAN:
            _move(session, case, "need_human", f"{actor.name} took the case over", actor.name, now, book)
        _move(session, case, "human_repaired", f"repaired by {actor.name}: {reason}", actor.name, now, book)
        case.set(plan={}, pending={})
    elif action == "retry":
        if state == NodeState.REPAIRING.value:
            moves = _node_to(
                session, case.node_id, ["repair_failed"], f"retry by {actor.name}: {reason}", actor, now, data
            )
        elif state != NodeState.DIAGNOSING.value:
            raise CaseConflict(f"the node is {state}: automation can take the case back from diagnosing or repairing")
        if case.case_state is not CaseState.NEEDS_HUMAN:
            _move(session, case, "need_human", f"{actor.name} took the case over", actor.name, now, book)
        _move(
            session, case, "human_retry", f"handed back to automation by {actor.name}: {reason}", actor.name, now, book
        )
        case.set(action=None, attempt=0, floor_action=None, pending={}, plan={}, run_id=None)
    else:  # escalate
        if state not in (NodeState.DIAGNOSING.value, NodeState.REPAIRING.value):
            raise CaseConflict(f"the node is {state}: it goes to the supplier from diagnosing or repairing")
        moves = _node_to(
            session, case.node_id, ["escalate_supplier"], f"escalated by {actor.name}: {reason}", actor, now, data
        )
        if case.case_state is not CaseState.NEEDS_HUMAN:
            _move(session, case, "need_human", f"{actor.name} took the case over", actor.name, now, book)
        ticket = open_ticket(
            session,
            case.node_id,
            case.gpu_index,
            case.id,
            "escalation",
            reason,
            [*node_events(session, case.id, latest=50), {"note": reason, "by": actor.name}],
            now,
        )
        case.set(ticket_id=ticket.id, action=Action.RMA.value, owner="supplier")
        _move(
            session,
            case,
            "escalate",
            f"escalated by {actor.name}: {reason} (ticket {ticket.id})",
            actor.name,
            now,
            book,
        )
    if not store.save(session, case):
        raise CaseConflict(f"case {case_id} changed while this action was applied; look again and retry")
    return moves


def act_on_case(
    db: Database, actor: Actor, case_id: int, action: str, reason: str | None, hardware_change: bool = True
) -> dict[str, Any]:
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("acting on a case needs the operator role and a token not scoped to a tenant")
    text = check_reason(reason)
    with db.transaction() as session:
        act(session, case_id, action, text, actor, db.clock.now(), hardware_change)
    return show_case(db, actor, case_id)


def supplier_returned(
    session: UnitOfWork, node_id: str, actor: Actor, now: datetime, note: str
) -> list[TransitionResult]:
    """The supplier gave the hardware back: the node validates (slow path) and its case carries on by itself."""
    case = store.open_case_of(session, node_id)
    moves = [
        apply_transition(
            session, node_id, "supplier_returned", note, actor, now, data={"case": case.id} if case else {}
        )
    ]
    if case is not None and case.case_state is CaseState.ESCALATED:
        book = PolicyBook(session)
        _move(session, case, "supplier_returned", f"{note} ({actor.name})", actor.name, now, book)
        if case.ticket_id is not None:
            resolve_ticket(session, case.ticket_id, now, note)
        case.set(plan={}, pending={})
        store.save(session, case)
    return moves


def return_from_supplier(db: Database, actor: Actor, node_ref: str, note: str | None) -> dict[str, Any]:
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("recording a supplier's return needs the operator role and a token not scoped to a tenant")
    text = check_reason(note)
    now = db.clock.now()
    with db.transaction() as session:
        node_id = resolve_node_id(session, node_ref, actor, now)
        supplier_returned(session, node_id, actor, now, text)
        case = store.latest_case_id(session, node_id)
    return {"node": node_id, "case": case}
