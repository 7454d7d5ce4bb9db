"""The people around the simulated fleet, and the books they keep; remediation itself is the product's controller.

When a node breaks, its health checks report what an operator would see (``telemetry.py``) as health events, and the
real remediation controller takes it from there on simulated time: quarantine, drain, diagnose, the repair ladder,
validation, reintegration or the supplier. What is left here is what people and suppliers do:

    bring-up:    provision -> provisioned -> validating -> admit (new hardware, the cluster's slow path)
    technician:  a case that needs hands (a reseat) is repaired in house after the technician's time
    supplier:    hardware handed over with an RMA ticket comes back after the supplier's turnaround

and the simulator's own tallies, which it keeps by watching the controller (``node_moved`` and ``noted``).

``adopt`` picks up a node from whatever state the database holds, which is how a restarted demo carries on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpufleet.adapters.drivers.base import ValidationState
from gpufleet.adapters.drivers.simulated import Fault
from gpufleet.clusters.scheduler import Scheduler
from gpufleet.domain.lifecycle import LEAVING_STATES, NodeState
from gpufleet.domain.remediation import CaseState
from gpufleet.domain.xid_policy import Action
from gpufleet.fleet.lifecycle import TransitionResult, apply_transition
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.errors import InvalidTransition, NotFound, VersionConflict
from gpufleet.remediation.cases import act, supplier_returned
from gpufleet.remediation.intake import record_health_event
from gpufleet.remediation.store import CaseRow, open_case_of
from gpufleet.reports.sim_history import node_state
from gpufleet.sim import telemetry, validation
from gpufleet.sim.calibration import Component
from gpufleet.sim.failures import DAY, HOUR, NODE_DOWN_COMPONENTS, spread_sample

if TYPE_CHECKING:
    from gpufleet.sim.engine import FleetNode, Simulation

MINUTE = 60.0
OTHERS_WORK = LEAVING_STATES | {NodeState.MAINTENANCE}
"""States whose node someone else is working on: the simulated operator leaves it alone."""


@dataclass(eq=False)
class Case:
    """One node's trip through a failure (or bring-up), as the simulator keeps it for its own figures."""

    actor: Actor
    kind: str
    """``failure``, ``bring_up`` or ``adopted``."""
    started: float
    component: Component | None = None
    fault_kind: str | None = None
    run_id: str = ""
    supplier_since: float = 0.0
    plan: validation.Plan | None = None
    case_id: int | None = None


class LostTrack(RuntimeError):
    """The database holds a state the operator did not expect: someone else moved the node."""


class Operator:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.policy = sim.scenario.policies
        self.rng = random.Random(f"{sim.seed}:operations")
        self.signal_rng = random.Random(f"{sim.seed}:telemetry")
        self.cases = 0
        self.people = Actor(name="sim:operations", role=Role.OPERATOR, correlation_id=f"sim-{sim.seed}-people")
        self._schedulers: dict[str, Scheduler] = {}

    # -- entry points --------------------------------------------------------------------------------------

    def on_failure(self, node: FleetNode, component: Component, fault: Fault) -> None:
        """A fault has happened on an in-service node; its health checks report it a few minutes later."""
        case = self._open(node, "failure")
        case.component = component
        case.fault_kind = fault.kind
        window = self.policy.detection_minutes
        self.sim.schedule(MINUTE * self.rng.uniform(window.min, window.max), self._detect, node)

    def bring_up(self, node: FleetNode) -> None:
        self._open(node, "bring_up")
        if self._move(node, "provision", "new hardware received: provisioning"):
            self.sim.schedule(HOUR * spread_sample(self.rng, self.policy.provision_hours), self._provisioned, node)

    def adopt(self, node: FleetNode, state: str) -> None:
        """Carry on from a state recorded before this run (or set by someone else)."""
        node.state = state
        if state == NodeState.IN_SERVICE:
            node.case = None
            self.sim.start_service(node)
            return
        if state in OTHERS_WORK:
            node.case = None  # someone else's work: leave the node alone
            return
        case = self._open(node, "adopted")
        session = self.sim.uow.session()
        open_case = open_case_of(session, node.id)
        if open_case is not None:
            case.case_id = open_case.id
            if open_case.state == CaseState.NEEDS_HUMAN and open_case.action == Action.INSPECT:
                self._send_technician(node)
            self.sim.kick_controller()
        if state in (NodeState.RECEIVED, NodeState.PROVISION_FAILED):
            event = "provision" if state == NodeState.RECEIVED else "retry"
            if self._move(node, event, "picking up a node that was waiting for provisioning"):
                self.sim.schedule(HOUR * spread_sample(self.rng, self.policy.provision_hours), self._provisioned, node)
        elif state == NodeState.PROVISIONING:
            self.sim.schedule(HOUR * spread_sample(self.rng, self.policy.provision_hours), self._provisioned, node)
        elif state == NodeState.AWAITING_SUPPLIER:
            self.sim.world.hand_to_supplier(node.body)
            case.supplier_since = self.sim.t
            self.sim.schedule(self.sim.model.rma_seconds(node.cls), self._supplier_returns, node)
        elif state == NodeState.VALIDATING and open_case is None:
            self._validate(node)

    # -- what the health checks report ---------------------------------------------------------------------

    def _detect(self, node: FleetNode, _: Any = None) -> None:
        case = self._case(node)
        component = case.component
        assert component is not None
        codes = telemetry.signals(self.signal_rng, component, component.name in NODE_DOWN_COMPONENTS)
        gpu = self.signal_rng.randrange(node.gpus) if component.category == "GPU" else None
        now = self.sim.record_now()
        session = self.sim.uow.session()
        for code in codes:
            record_health_event(
                session,
                node.id,
                code,
                now,
                now,
                severity="critical",
                source="sim",
                gpu_index=gpu,
                message=f"{component.name} ({component.kind})",
                data={"component": component.name, "category": component.category, "kind": component.kind},
            )
        self.sim.kick_controller(evidence=True)

    # -- what the controller did (the simulator's books) ---------------------------------------------------

    def node_moved(self, node_id: str, from_state: str, to_state: str, event: str, data: dict[str, Any]) -> None:
        node = self.sim.by_id.get(node_id)
        if node is None:
            return
        self.sim.on_transition(node, from_state, to_state, event)
        if event == "escalate_supplier":
            self.sim.metrics.rma += 1
            self._hand_to_supplier(node)
        elif event == "admit":
            self._admitted(node, data.get("path") != "fast_track")

    def noted(self, what: str, case: CaseRow, data: dict[str, Any]) -> None:
        m = self.sim.metrics
        node = self.sim.by_id.get(case.node_id)
        if node is None:
            return
        if node.case is not None:
            node.case.case_id = case.id
        if what == "drain_started":
            m.drains += 1
        elif what == "drain_forced":
            m.drains_forced += 1
        elif what == "drained":
            m.drain_minutes.append(float(data["minutes"]))
        elif what == "reboot_requested":
            m.reboots += 1
        elif what == "reboot_returned":
            m.reboots_returned += 1
            m.reboot_minutes.append(float(data["minutes"]))
        elif what == "reboot_not_returned":
            m.reboots_not_returned += 1
        elif what == "validated":
            m.validated(str(data["path"]), node.supplier, node.sku, bool(data["failed"]))
        elif what == "needs_human" and data.get("action") == "inspect":
            m.in_house += 1
            self._send_technician(node)
        elif what == "case_closed" and case.resolution != "reintegrated" and node.state == NodeState.IN_SERVICE:
            node.case = None
            self.sim.start_service(node)

    def _admitted(self, node: FleetNode, after_hardware: bool) -> None:
        case = node.case
        if case is not None and case.kind == "failure" and case.fault_kind is not None:
            self.sim.metrics.repaired(case.fault_kind, (self.sim.t - case.started) / HOUR)
        node.case = None
        self.sim.start_service(node, after_hardware=after_hardware)

    # -- people and suppliers ------------------------------------------------------------------------------

    def _send_technician(self, node: FleetNode) -> None:
        self.sim.schedule(self.sim.model.in_house_seconds(), self._technician_done, node)

    def _technician_done(self, node: FleetNode, _: Any = None) -> None:
        session = self.sim.uow.session()
        open_case = open_case_of(session, node.id)
        if open_case is None or open_case.state != "needs_human":
            return
        self.sim.world.fix(node.body)
        moves = act(
            session,
            open_case.id,
            "repaired",
            "technician reseated the part",
            self.people,
            self.sim.record_now(),
            hardware_change=True,
        )
        self._moved(node, moves)

    def _hand_to_supplier(self, node: FleetNode) -> None:
        if node.case is None:
            node.case = self._new_case("adopted")
        node.case.supplier_since = self.sim.t
        self.sim.world.hand_to_supplier(node.body)
        self.sim.schedule(self.sim.model.rma_seconds(node.cls), self._supplier_returns, node)

    def _supplier_returns(self, node: FleetNode, _: Any = None) -> None:
        case = self._case(node)
        self.sim.world.replace_hardware(node.body, defect=self.sim.model.returns_defective(node.cls))
        self.sim.metrics.rma_days.append((self.sim.t - case.supplier_since) / DAY)
        session = self.sim.uow.session()
        try:
            moves = supplier_returned(
                session, node.id, self.people, self.sim.record_now(), "supplier returned the hardware"
            )
        except (InvalidTransition, NotFound, VersionConflict) as exc:
            raise LostTrack(f"node {node.id} ({node.hostname}): {exc}") from exc
        self._moved(node, moves)
        if case.kind != "failure" and open_case_of(session, node.id) is None:
            self._validate(node)  # a node handed over before this run, without a case: validate it here

    def _moved(self, node: FleetNode, moves: list[TransitionResult]) -> None:
        for move in moves:
            self.sim.on_transition(node, move.from_state, move.to_state, move.event)
        self.sim.kick_controller()

    # -- bring-up ------------------------------------------------------------------------------------------

    def _provisioned(self, node: FleetNode, _: Any = None) -> None:
        self.sim.world.set_defect(node.body, self.sim.model.returns_defective(node.cls))
        scheduler = self._scheduler(node)
        scheduler.cordon(node.hostname, "validating new hardware")
        if self._move(node, "provisioned", "imaged and joined to the scheduler"):
            self._validate(node)

    def _validate(self, node: FleetNode) -> None:
        """Run what the cluster's validation policy asks of this node now."""
        case = self._case(node)
        plan = validation.plan(self.sim.uow.session(), node.id, self.sim.record_now())
        case.plan = plan
        scheduler = self._scheduler(node)
        run = scheduler.start_validation(node.hostname, plan.suite)
        case.run_id = run.run_id
        self.sim.schedule_at_time(run.expected_end, self._check_validation, node)

    def _check_validation(self, node: FleetNode, _: Any = None) -> None:
        case = self._case(node)
        plan = case.plan
        assert plan is not None
        result = self._scheduler(node).validation_result(node.hostname, case.run_id)
        if result.state is ValidationState.RUNNING:
            self.sim.schedule(MINUTE * self.policy.poll_minutes, self._check_validation, node)
            return
        rows = validation.records(node.id, node.cluster, plan, result, self.sim.to_record_time)
        validation.record(self.sim.uow.session(), rows, self.sim.record_now())
        failed = result.state is ValidationState.FAILED
        self.sim.metrics.validated(plan.path, node.supplier, node.sku, failed)
        if failed:
            # New hardware that fails its checks goes back to the supplier that delivered it.
            codes = [f.code for f in result.failures]
            reason = f"{plan.path} validation of new hardware failed at pass {result.passes_completed}"
            data = {"path": plan.path, "attempt": plan.attempt, "pass": result.passes_completed, "codes": codes}
            if self._move(node, "fail_validation", reason, data) and self._move(
                node, "escalate_supplier", f"{reason}: {', '.join(codes)}", {"codes": codes}
            ):
                self.sim.metrics.rma += 1
                self._hand_to_supplier(node)
            return
        data = {"path": plan.path, "attempt": plan.attempt, "passes": result.passes_completed}
        if not self._move(node, "admit", f"passed {result.passes_completed} {plan.suite.name} pass(es)", data):
            return
        scheduler = self._scheduler(node)
        scheduler.clear_maintenance_taint(node.hostname, "admitted")
        scheduler.uncordon(node.hostname, "admitted")
        if case.kind == "bring_up":
            self.sim.metrics.brought_up_gpus += node.gpus
        node.case = None
        self.sim.start_service(node, after_hardware=plan.path != "fast_track")

    # -- bookkeeping ---------------------------------------------------------------------------------------

    def _scheduler(self, node: FleetNode) -> Scheduler:
        """The node's cluster as people act on it, one per cluster while its driver stays the same."""
        scheduler = self._schedulers.get(node.cluster)
        if scheduler is None or scheduler.driver is not node.driver:
            scheduler = self._schedulers[node.cluster] = Scheduler(node.driver)
        return scheduler

    def _new_case(self, kind: str) -> Case:
        self.cases += 1
        correlation = f"sim-{self.sim.seed}-{self.cases}"
        actor = Actor(name="sim:operations", role=Role.OPERATOR, correlation_id=correlation)
        return Case(actor, kind, self.sim.t)

    def _open(self, node: FleetNode, kind: str) -> Case:
        case = self._new_case(kind)
        node.case = case
        return case

    def _case(self, node: FleetNode) -> Case:
        case = node.case
        if case is None:
            raise LostTrack(f"node {node.id} has no open case")
        return case

    def _move(self, node: FleetNode, event: str, reason: str, data: dict[str, Any] | None = None) -> bool:
        """Apply one lifecycle event through the service, in the current step's transaction."""
        case = self._case(node)
        session = self.sim.uow.session()
        try:
            result = apply_transition(session, node.id, event, reason, case.actor, self.sim.record_now(), data=data)
        except (InvalidTransition, NotFound, VersionConflict) as exc:
            if not self.sim.live:
                raise LostTrack(f"node {node.id} ({node.hostname}): {exc}") from exc
            # Somebody else moved the node (a user through the API): start over from what is stored.
            node.case = None
            node.gen += 1
            stored = node_state(session, node.id)
            if stored is not None:
                self.sim.note_state(node, stored)
                self.adopt(node, stored)
            return False
        self.sim.on_transition(node, result.from_state, result.to_state, event)
        return True
