"""What every case handler works with: one case's step in one pass, and the moves that hand a case on.

The engine runs the handlers; the handlers (the engine's own and the repair's) take a ``Step`` and use its moves
(record, wait, checkpoint, move, node) and the two hand-offs every stage may need: to the supplier (``escalate``) and
to a person (``need_human``). Both the engine and the repair import this module, and it imports neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from gpufleet.clusters.scheduler import Scheduler
from gpufleet.domain.lifecycle import TRANSITIONS, InvalidTransition
from gpufleet.domain.remediation import CaseState, case_deadline, kind_after, next_case_state
from gpufleet.domain.xid_policy import Action, Kind, XidPolicy
from gpufleet.fleet.lifecycle import apply_transition
from gpufleet.platform.context import Actor
from gpufleet.platform.database import UnitOfWork
from gpufleet.platform.errors import NotFound, VersionConflict
from gpufleet.remediation import store
from gpufleet.remediation.intake import node_events
from gpufleet.remediation.outbox import enqueue
from gpufleet.remediation.runtime import ClusterBook, TimeFrame, Work
from gpufleet.remediation.tickets import open_ticket

MIN_WAIT = timedelta(seconds=1)


class Observer(Protocol):
    """Who else wants to know what remediation did (the simulator keeps its own books this way)."""

    def node_moved(self, node_id: str, from_state: str, to_state: str, event: str, data: dict[str, Any]) -> None: ...

    def noted(self, what: str, case: store.CaseRow, data: dict[str, Any]) -> None: ...


class Runner(Protocol):
    """What a step needs of the engine that runs it."""

    actor: str
    frame: TimeFrame
    clusters: ClusterBook
    observer: Observer | None
    supplier_poll: timedelta
    breakers: dict[int, str]
    spent: dict[int, datetime]

    def notify(self, what: str, case: store.CaseRow, data: dict[str, Any]) -> None: ...


class LostNode(Exception):
    """The node is not where the case expects it: someone moved it outside remediation."""

    def __init__(self, state: str | None, why: str) -> None:
        self.state = state
        super().__init__(why)


@dataclass
class Step:
    """Everything a handler needs for one case in one pass."""

    engine: Runner
    work: Work
    case: store.CaseRow
    policy: XidPolicy
    now: datetime
    actor: Actor

    @property
    def session(self) -> UnitOfWork:
        return self.work.session()

    @property
    def scheduler(self) -> Scheduler:
        return self.engine.clusters.scheduler(self.session, self.case.cluster_id)

    def span(self, duration: timedelta) -> timedelta:
        return self.engine.frame.span(duration)

    def minutes(self, value: float) -> timedelta:
        return self.span(timedelta(minutes=value))

    @property
    def poll(self) -> timedelta:
        return self.span(timedelta(seconds=self.policy.settings.poll_seconds))

    def record(self, kind: str, detail: str, **data: Any) -> None:
        c = self.case
        store.step(c, self.now, self.engine.actor, kind, detail, c.state, c.state, c.action, data)

    def wait(self, until: datetime, held: str | None = None) -> bool:
        self.case.set(next_check_at=max(until, self.now + MIN_WAIT), held=held)
        return False

    def checkpoint(self) -> None:
        """Make the case (and its intent) durable before acting on the cluster."""
        if not getattr(self.work, "durable", True):
            return
        if not store.save(self.session, self.case, release=False):
            raise VersionConflict(self.case.node_id, self.case.version, -1)
        self.work.checkpoint()

    def move(self, event: str, detail: str, step_limit: timedelta | None = None, **data: Any) -> bool:
        """Move the case on its own table, with a step, a fresh deadline and an immediate next look."""
        c = self.case
        before = c.case_state
        after = next_case_state(before, event)
        c.set(
            state=after.value,
            state_since=self.now,
            held=None,
            next_check_at=self.now,
            deadline_at=case_deadline(after, self.now, self.policy.settings, step_limit),
        )
        if after in (CaseState.REINTEGRATED, CaseState.CLOSED):
            resolution = c.resolution or str(
                data.get("resolution") or ("dismissed" if event == "dismiss" else "closed")
            )
            c.set(
                open_node_id=None,
                closed_at=self.now,
                next_check_at=None,
                deadline_at=None,
                pending={},
                resolution=resolution,
            )
        store.step(c, self.now, self.engine.actor, "transition", detail, before.value, after.value, c.action, data)
        if after in (CaseState.REINTEGRATED, CaseState.CLOSED):
            self.engine.notify("case_closed", c, data)
        return True

    def node(self, event: str, reason: str, **data: Any) -> None:
        """Apply a lifecycle event to the node (already there counts as done)."""
        c = self.case
        payload = {"case": c.id, **data}
        try:
            result = apply_transition(self.session, c.node_id, event, reason, self.actor, self.now, data=payload)
        except (InvalidTransition, NotFound) as exc:
            state = store.node_state(self.session, c.node_id)
            if state is not None and state in {t.target.value for t in TRANSITIONS if t.event == event}:
                return
            raise LostNode(state, f"{event} refused: {exc}") from exc
        observer = self.engine.observer
        if observer is not None:
            observer.node_moved(c.node_id, result.from_state, result.to_state, event, payload)


Handler = Callable[[Step], bool]


def escalate(s: Step, reason: str, **data: Any) -> bool:
    """Hand the hardware to its supplier: node to awaiting_supplier, a ticket with the evidence, then wait."""
    c = s.case
    c.set(action=Action.RMA.value, kind=kind_after(_kind(c), Action.RMA).value, owner="supplier")
    s.node("escalate_supplier", reason[:2000], **data)
    evidence = [*node_events(s.session, c.id, latest=50), {"note": reason, **data}]
    ticket = open_ticket(s.session, c.node_id, c.gpu_index, c.id, "rma", reason, evidence, s.now)
    c.set(ticket_id=ticket.id)
    s.engine.notify("escalated", c, {"reason": reason, "ticket": ticket.id})
    s.move("escalate", f"to the supplier: {reason} (ticket {ticket.id}, {ticket.unit})", ticket=ticket.id, **data)
    return s.wait(min(c.deadline_at or s.now, s.now + s.span(s.engine.supplier_poll)))


def _kind(c: store.CaseRow) -> Kind:
    return Kind(c.kind)


def need_human(s: Step, reason: str, action: str | None = None, **data: Any) -> bool:
    c = s.case
    if action is not None:
        c.set(action=action)
    enqueue(
        s.session,
        f"case-{c.id}-human-{c.version}",
        "case.needs_human",
        {"case": c.id, "node": c.node_id, "hostname": c.hostname, "reason": reason, "action": c.action},
        s.now,
    )
    s.engine.notify("needs_human", c, {"reason": reason, "action": c.action, **data})
    s.move("need_human", reason, **data)
    return s.wait(c.deadline_at or s.now + s.span(timedelta(hours=s.policy.settings.human_hours)))
