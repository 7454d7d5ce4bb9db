"""The remediation engine: one pass takes new evidence into cases and moves every due case as far as it can go.

Each case state has a handler that either moves the case on (and the loop continues) or says when to look again.
The domain decides (classification, ladder, budgets, deadlines); this module reads what the cluster reports through
its scheduler and applies node transitions through the lifecycle service, so node and case always agree. A state's
time limit is checked before its handler runs: a case past it escalates instead of waiting. Steps that must not be
repeated record their intent, and the work is checkpointed, before the driver is called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gpufleet.adapters.drivers.base import DriverError
from gpufleet.clusters.drivers import DriverRegistry
from gpufleet.domain.lifecycle import CORDONED_STATES, LEAVING_STATES, SERVING_STATES, NodeState
from gpufleet.domain.remediation import CaseState
from gpufleet.domain.xid_policy import Drain, XidPolicy
from gpufleet.platform.clock import Clock
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import UnitOfWork
from gpufleet.remediation import store
from gpufleet.remediation.intake import Intake, IntakeResult
from gpufleet.remediation.policy import PolicyBook, base_policy
from gpufleet.remediation.repair import REPAIR_HANDLERS, step_failed
from gpufleet.remediation.runtime import ClusterBook, TimeFrame, Work, process_name
from gpufleet.remediation.safety import breaker_open, budget, open_breakers
from gpufleet.remediation.step import Handler, LostNode, Observer, Step, need_human

ACTOR = "controller:remediation"
MAX_MOVES = 16
INTAKE_BATCH = 2000
MAX_INTAKE_BATCHES = 100
DRY_RUN_QUIET = timedelta(hours=1)
SPENT_FOR = timedelta(seconds=10)
"""How long a cluster whose own budget was found spent is taken as still spent: the controller's interval, so a fault
the reaction leaves waits no longer than it would for its hold to be looked at again."""


@dataclass
class PassReport:
    intake: IntakeResult = field(default_factory=IntakeResult)
    advanced: int = 0
    closed: int = 0
    next_due: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.intake.events,
            "opened": len(self.intake.opened),
            "attached": self.intake.attached,
            "evidence_only": self.intake.evidence_only,
            "stale": self.intake.stale,
            "advanced": self.advanced,
            "closed": self.closed,
            "next_due": self.next_due.isoformat() if self.next_due else None,
        }


class Engine:
    def __init__(
        self,
        registry: DriverRegistry,
        clock: Clock,
        actor: str = ACTOR,
        correlation_prefix: str = "remediation",
        frame: TimeFrame | None = None,
        owner: str | None = None,
        batch: int = 200,
        policy: XidPolicy | None = None,
        observer: Observer | None = None,
        leases: bool = True,
        policy_ttl: timedelta = timedelta(seconds=30),
        supplier_poll: timedelta = timedelta(hours=24),
    ) -> None:
        self.clock = clock
        self.actor = actor
        self.frame = frame or TimeFrame()
        self.owner = owner or process_name()
        self.batch = batch
        self.base = policy or base_policy()
        self.observer = observer
        self.leases = leases
        self.policy_ttl = policy_ttl
        self.supplier_poll = supplier_poll
        self._book: tuple[PolicyBook, datetime] | None = None
        self.breakers: dict[int, str] = {}
        """Open breakers by cluster, read with the overrides (a reset elsewhere shows within ``policy_ttl``)."""
        self.spent: dict[int, datetime] = {}
        """Clusters whose own blast-radius budget this process last found spent, until when it takes their new
        faults as spent too (``SPENT_FOR``)."""
        self.clusters = ClusterBook(registry)
        self.intake = Intake(actor, correlation_prefix, self.clusters)
        self.handlers: dict[CaseState, Handler] = {
            CaseState.DETECTED: _detected,
            CaseState.QUARANTINED: _quarantined,
            CaseState.DRAINING: _draining,
            CaseState.ESCALATED: _escalated,
            CaseState.NEEDS_HUMAN: _needs_human,
            **REPAIR_HANDLERS,
        }

    def notify(self, what: str, case: store.CaseRow, data: dict[str, Any]) -> None:
        if self.observer is not None:
            self.observer.noted(what, case, data)

    def react(self, work: Work, ids: list[int]) -> PassReport:
        """Take just-stored events at once and move the cases they opened or woke as far as they go now.

        What ingest calls after its commit, so an Xid on a serving node quarantines it within the request rather
        than at the next pass; anything left (a busy row, a case leased elsewhere) the regular pass picks up.
        """
        report = PassReport()
        now = self.clock.now()
        book = self.policies(work.session(), now)
        # One transaction from the events to the cordon: the write lock is taken once, and nothing before the
        # first checkpoint (an intent) needs to be durable on its own.
        owner = self.owner if self.leases else None
        report.intake = self.intake.process(work.session(), now, book, ids=ids, lease_to=owner)
        self.breakers.update(report.intake.tripped)
        woken = set(report.intake.opened) | set(report.intake.woken)
        for case_id in sorted(woken):
            # A case opened just now is leased to this process as it was written; only woken ones are claimed.
            case = report.intake.leased.get(case_id) or store.claim(work.session(), case_id, now, owner)
            if case is not None:
                self.advance(work, book, case)
                report.advanced += 1
                work.checkpoint()
        return report

    def run_pass(self, work: Work, events: bool = True) -> PassReport:
        """Take new evidence, then move every due case; returns when the next case falls due."""
        report = PassReport()
        now = self.clock.now()
        book = self.policies(work.session(), now)
        if events:
            # A backlog (noise the reaction left to this pass) is taken in batches, each its own transaction.
            for _ in range(MAX_INTAKE_BATCHES):
                batch = self.intake.process(work.session(), now, book, limit=INTAKE_BATCH)
                self.breakers.update(batch.tripped)
                work.checkpoint()
                report.intake.merge(batch)
                if batch.events < INTAKE_BATCH:
                    break
        while True:
            due = store.claim_due(work.session(), now, self.owner if self.leases else None, self.batch)
            work.checkpoint()
            for case in due:
                self.advance(work, book, case)
                report.advanced += 1
                report.closed += 0 if case.is_open else 1
                work.checkpoint()
            if len(due) < self.batch:
                break
        report.next_due = store.next_due(work.session())
        return report

    def held_clusters(self, now: datetime) -> set[int]:
        """Clusters where a new fault would only be held now: the breaker is open, or the cluster's own budget was
        found spent within ``SPENT_FOR``. The reaction leaves their new faults to the next pass, which opens the held
        cases; in a storm it is these that would otherwise make every ingest wait (see ``Intake.triage``)."""
        return set(self.breakers) | {c for c, until in self.spent.items() if now < until}

    def policies(self, session: UnitOfWork, now: datetime) -> PolicyBook:
        """The overrides in force, re-read at most every ``policy_ttl`` (an override takes effect within it)."""
        if self._book is None or not self._book[1] <= now < self._book[1] + self.policy_ttl:
            self._book = (PolicyBook(session, self.base), now)
            self.breakers = open_breakers(session)
        return self._book[0]

    def forget(self) -> None:
        """Re-read overrides and clusters at the next pass."""
        self._book = None
        self.clusters.forget()

    def advance(self, work: Work, book: PolicyBook, case: store.CaseRow) -> None:
        policy = book.get(case.cluster_id, case.pool)
        step = Step(
            self, work, case, policy, self.clock.now(), Actor(self.actor, Role.OPERATOR, None, case.correlation_id)
        )
        try:
            for _ in range(MAX_MOVES):
                if not case.is_open:
                    break
                if _overdue(step) or self.handlers[case.case_state](step):
                    continue
                break
        except LostNode as exc:
            _lost(step, exc)
        except DriverError as exc:
            _driver_failed(step, exc)
        if not store.save(work.session(), case):
            return  # another process moved it first: its version stands


# ---------------------------------------------------------------------------------------------------------------
# Handlers of the states before and after the repair.


def _detected(s: Step) -> bool:
    c, settings = s.case, s.policy.settings
    state = store.node_state(s.session, c.node_id)
    if state in CORDONED_STATES:
        return s.move("quarantine", f"the node was already {state}: taking it over")
    if state not in SERVING_STATES:
        return s.move("dismiss", f"the node is {state}, not serving: the evidence is kept, nothing to do")
    plan = _plan_text(s)
    if settings.dry_run or c.dry_run:
        if not c.dry_run:
            c.set(dry_run=True)
            s.record("dry_run", f"dry run: would {plan}")
            s.engine.notify("dry_run", c, {"plan": plan})
            return s.wait(s.now + s.span(DRY_RUN_QUIET), held="dry_run")
        return s.move("dismiss", f"dry run over: it would have {plan}", resolution="dry_run")
    reason = s.engine.breakers.get(c.cluster_id)
    if reason is not None and breaker_open(s.session, c.cluster_id) is None:
        del s.engine.breakers[c.cluster_id]  # reset since it was read
        reason = None
    if reason is not None:
        if c.held != "breaker":
            s.record("hold", f"held: the circuit breaker is open ({reason})")
        return s.wait(s.now + s.poll, held="breaker")
    check = budget(s.session, s.engine.clusters, s.policy, c.cluster_id, c.nvlink_domain_id, s.now)
    if check.whole_cluster:
        s.engine.spent[c.cluster_id] = s.now + SPENT_FOR
    if not check.allowed:
        if c.held != "budget":
            s.record("hold", f"held by the blast-radius budget: {check.reason}")
        return s.wait(s.now + s.poll, held="budget")
    data: dict[str, Any] = {"codes": c.codes, "kind": c.kind, "left_healthy": True}
    if c.pending.get("component"):
        data["component"] = c.pending["component"]
    s.node("quarantine", f"remediation: {c.reason}"[:2000], **data)
    s.scheduler.cordon(c.hostname, f"gpufleet case {c.id}: {', '.join(c.codes)}"[:200])
    return s.move("quarantine", f"quarantined: {c.reason}", codes=c.codes)


def _plan_text(s: Step) -> str:
    c = s.case
    return f"quarantine {c.hostname}, drain it ({c.drain}), then {c.start_action} ({c.reason})"


def _quarantined(s: Step) -> bool:
    c = s.case
    minutes = s.policy.settings.drain_deadline_minutes if c.drain == Drain.GRACEFUL.value else 0
    deadline = s.now + s.minutes(minutes)
    s.node("drain", f"moving work off for case {c.id}")
    c.set(pending={**c.pending, "drain_deadline": deadline.isoformat(), "drain_started": s.now.isoformat()})
    s.engine.notify("drain_started", c, {})
    return s.move("drain", f"draining ({c.drain}), deadline {deadline.isoformat()}")


def _draining(s: Step) -> bool:
    c = s.case
    deadline = datetime.fromisoformat(c.pending.get("drain_deadline", s.now.isoformat()))
    frame = s.engine.frame
    status = s.scheduler.drain(c.hostname, f"gpufleet case {c.id}", frame.to_driver(deadline))
    if status.forced:
        s.engine.notify("drain_forced", c, {"forced": len(status.forced)})
    if not status.complete:
        # Look again when the first job should be gone, or at the deadline (when the driver ends the rest).
        times = [frame.to_record(w.expected_end) for w in status.remaining if w.expected_end is not None]
        times.append(frame.to_record(status.deadline))
        upcoming = [t for t in times if t > s.now]
        wake = min(upcoming) if upcoming else s.now + s.poll
        return s.wait(min(wake, s.now + 12 * s.poll))
    started = datetime.fromisoformat(c.pending.get("drain_started", s.now.isoformat()))
    s.node("drained", "no work left on the node")
    s.node("diagnose", f"diagnosing for case {c.id}")
    s.scheduler.set_maintenance_taint(c.hostname, f"gpufleet case {c.id}")
    s.engine.notify("drained", c, {"minutes": (s.now - started).total_seconds() / 60})
    pending = {k: v for k, v in c.pending.items() if not k.startswith("drain_")}
    c.set(pending=pending)
    return s.move("drained", "the node is idle")


def _escalated(s: Step) -> bool:
    c = s.case
    state = store.node_state(s.session, c.node_id)
    if state == NodeState.VALIDATING.value:
        return s.move("supplier_returned", "the supplier returned the hardware")
    if state == NodeState.AWAITING_SUPPLIER.value:
        return s.wait(min(c.deadline_at or s.now, s.now + s.span(s.engine.supplier_poll)))
    raise LostNode(state, f"the node is {state} while its case waits for the supplier")


def _needs_human(s: Step) -> bool:
    c = s.case
    state = store.node_state(s.session, c.node_id)
    if state == NodeState.IN_SERVICE.value:
        c.set(human=True)
        return s.move("close", "a person returned the node to service", resolution="resolved_by_person")
    return s.wait(c.deadline_at or s.now + s.span(timedelta(hours=s.policy.settings.human_hours)))


def _overdue(s: Step) -> bool:
    """Past its state's limit: escalate rather than wait. True when the case moved."""
    c = s.case
    if c.deadline_at is None or s.now < c.deadline_at:
        return False
    state = c.case_state
    late = f"past the {state.value} limit ({c.deadline_at.isoformat()})"
    if state is CaseState.NEEDS_HUMAN:
        need_human(s, f"still waiting for a person: {late}")
        return False
    if state is CaseState.DETECTED and c.dry_run:
        return s.move("dismiss", "dry run over", resolution="dry_run")
    if state in (CaseState.DIAGNOSING, CaseState.REPAIRING, CaseState.VALIDATING):
        return step_failed(s, f"stuck: {late}")
    need_human(s, f"stuck: {late}")
    return False


def _lost(s: Step, exc: LostNode) -> None:
    c = s.case
    if exc.state in (NodeState.IN_SERVICE.value, None) or exc.state in LEAVING_STATES:
        c.set(human=True)
        s.move("close", f"the node was moved outside remediation (now {exc.state}): {exc}", resolution="moved_outside")
        return
    need_human(s, f"the node was moved outside remediation (now {exc.state}): {exc}")


def _driver_failed(s: Step, exc: DriverError) -> None:
    c = s.case
    retries = int(c.pending.get("driver_retries", 0)) + 1
    if exc.retryable and retries <= 5:
        c.set(pending={**c.pending, "driver_retries": retries})
        s.record("note", f"the cluster refused ({exc}); retry {retries} of 5", retryable=True)
        s.wait(s.now + s.span(s.policy.backoff.delay(retries)))
        return
    c.set(pending={k: v for k, v in c.pending.items() if k != "driver_retries"})
    need_human(s, f"the cluster driver failed: {exc}")
