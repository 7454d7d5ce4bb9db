"""The operations team of the simulated fleet: what people (and scripts) do today when a node breaks.

Every step moves the node through the lifecycle service and acts on the cluster through its driver:

    failure -> quarantine (cordon) -> drain (deadline) -> drained -> diagnose (maintenance taint, diagnostics)
      software:        repair (reboot) -> repaired -> validating -> admit (uncordon)
      hardware fix:    repair (technician, reboot) -> repaired -> validating -> admit
      supplier's:      escalate_supplier -> awaiting_supplier -> supplier_returned -> validating -> admit
      did not reboot:  escalate_supplier -> ...
      failed check:    fail_validation -> diagnosing -> ...

Validation runs what the cluster's policy decides for the node (fast track, slow path or canary), and its results
are recorded as validation history before the node is admitted.

It is one class behind three entry points (``on_failure``, ``bring_up``, ``adopt``) so that the remediation
controller can take its place without the simulator changing. ``adopt`` picks up a node from whatever state the
database holds, which is how a restarted demo carries on where it stopped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gpufleet.adapters.drivers.base import RepairAction, ValidationState, ValidationSuite, Work
from gpufleet.adapters.drivers.simulated import Fault
from gpufleet.services.context import Actor, Role
from gpufleet.services.errors import InvalidTransition, NotFound, VersionConflict
from gpufleet.services.lifecycle import apply_transition
from gpufleet.services.sim_history import node_state
from gpufleet.sim import validation
from gpufleet.sim.calibration import Component
from gpufleet.sim.failures import DAY, HOUR, spread_sample

if TYPE_CHECKING:
    from gpufleet.sim.engine import FleetNode, Simulation

MINUTE = 60.0
DIAGNOSTIC_CHECKS = ("dcgm_r3",)


@dataclass(eq=False)
class Case:
    """One node's trip through remediation (or bring-up), under one correlation id."""

    actor: Actor
    kind: str
    """``failure``, ``bring_up`` or ``adopted``."""
    started: float
    component: Component | None = None
    fault_kind: str | None = None
    drain_started: float = 0.0
    reboot_started: float = 0.0
    run_id: str = ""
    supplier_since: float = 0.0
    plan: validation.Plan | None = None


class LostTrack(RuntimeError):
    """The database holds a state the operator did not expect: someone else moved the node."""


class Operator:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.policy = sim.scenario.policies
        self.rng = random.Random(f"{sim.seed}:operations")
        self.cases = 0
        self.diagnostics = ValidationSuite(
            "diagnostics", DIAGNOSTIC_CHECKS, 1, self.policy.validation.diagnostics_minutes
        )

    # -- entry points --------------------------------------------------------------------------------------

    def on_failure(self, node: FleetNode, component: Component, fault: Fault) -> None:
        """A fault has happened on an in-service node; the team notices it after the health checks run."""
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
        if state == "in_service":
            node.case = None
            self.sim.start_service(node)
            return
        if state in ("maintenance", "decommissioning", "decommissioned"):
            node.case = None  # someone else's work: leave the node alone
            return
        case = self._open(node, "adopted")
        driver, host = node.driver, node.hostname
        if state in ("received", "provision_failed"):
            event = "provision" if state == "received" else "retry"
            if self._move(node, event, "picking up a node that was waiting for provisioning"):
                self.sim.schedule(HOUR * spread_sample(self.rng, self.policy.provision_hours), self._provisioned, node)
        elif state == "provisioning":
            self.sim.schedule(HOUR * spread_sample(self.rng, self.policy.provision_hours), self._provisioned, node)
        elif state == "quarantined":
            driver.cordon(host, "picked up in quarantine")
            self._start_drain(node, "picked up in quarantine")
        elif state == "draining":
            self._start_drain(node, "picked up while draining", move=False)
        elif state == "drained":
            self._diagnose(node)
        elif state == "diagnosing":
            self._run_diagnostics(node)
        elif state == "repairing":
            self._reboot(node, "picked up during a repair: rebooting")
        elif state == "awaiting_supplier":
            self.sim.world.hand_to_supplier(node.body)
            case.supplier_since = self.sim.t
            self.sim.schedule(self.sim.model.rma_seconds(node.cls), self._supplier_returns, node)
        elif state == "validating":
            self._validate(node)

    # -- steps ---------------------------------------------------------------------------------------------

    def _detect(self, node: FleetNode, _: Any = None) -> None:
        case = self._case(node)
        component = case.component
        assert component is not None
        reason = f"{component.name} ({component.kind}) detected by health checks"
        data = {"component": component.name, "category": component.category, "kind": component.kind}
        if not self._move(node, "quarantine", reason, data):
            return
        node.driver.cordon(node.hostname, reason)
        self._start_drain(node, reason)

    def _start_drain(self, node: FleetNode, reason: str, move: bool = True) -> None:
        case = self._case(node)
        if move and not self._move(node, "drain", f"moving work off: {reason}"):
            return
        case.drain_started = self.sim.t
        deadline = self.sim.clock.now() + timedelta(minutes=self.policy.drain_deadline_minutes)
        self.sim.metrics.drains += 1
        status = node.driver.drain(node.hostname, reason, deadline)
        self._after_drain_check(node, status.complete, status.deadline, status.remaining, bool(status.forced))

    def _check_drain(self, node: FleetNode, _: Any = None) -> None:
        deadline = self.sim.clock.now() + timedelta(minutes=self.policy.drain_deadline_minutes)
        status = node.driver.drain(node.hostname, "drain in progress", deadline)
        self._after_drain_check(node, status.complete, status.deadline, status.remaining, bool(status.forced))

    def _after_drain_check(
        self, node: FleetNode, complete: bool, deadline: datetime, remaining: tuple[Work, ...], forced: bool
    ) -> None:
        if forced:
            self.sim.metrics.drains_forced += 1
        if complete:
            case = self._case(node)
            minutes = (self.sim.t - case.drain_started) / MINUTE
            self.sim.metrics.drain_minutes.append(minutes)
            if self._move(node, "drained", "no work left on the node", {"drain_minutes": round(minutes, 1)}):
                self._diagnose(node)
            return
        now = self.sim.clock.now()
        ends = [w.expected_end for w in remaining if w.expected_end is not None]
        wake = min([*ends, deadline]) if ends else deadline
        delay = max((wake - now).total_seconds(), 1.0)
        self.sim.schedule(min(delay, MINUTE * self.policy.poll_minutes * 12), self._check_drain, node)

    def _diagnose(self, node: FleetNode) -> None:
        if not self._move(node, "diagnose", "running diagnostics on the idle node"):
            return
        node.driver.set_maintenance_taint(node.hostname, "remediation")
        self._run_diagnostics(node)

    def _run_diagnostics(self, node: FleetNode) -> None:
        run = node.driver.start_validation(node.hostname, self.diagnostics)
        self._case(node).run_id = run.run_id
        self.sim.schedule_at_time(run.expected_end, self._check_diagnostics, node)

    def _check_diagnostics(self, node: FleetNode, _: Any = None) -> None:
        case = self._case(node)
        result = node.driver.validation_result(node.hostname, case.run_id)
        if result.state is ValidationState.RUNNING:
            self.sim.schedule(MINUTE * self.policy.poll_minutes, self._check_diagnostics, node)
            return
        action = result.recommended_action
        codes = [f.code for f in result.failures]
        if action is RepairAction.NONE:
            if self._move(node, "diagnosed_healthy", "diagnostics found nothing"):
                self._validate(node)
        elif action in (RepairAction.REBOOT, RepairAction.REIMAGE):
            if self._move(node, "repair", f"{action.value} to clear {', '.join(codes)}", {"action": action.value}):
                self._reboot(node, f"{action.value} for {', '.join(codes)}")
        elif action is RepairAction.RESET:
            if self._move(node, "repair", f"technician reset/reseat for {', '.join(codes)}", {"action": "reset"}):
                self.sim.metrics.in_house += 1
                self.sim.schedule(self.sim.model.in_house_seconds(), self._technician_done, node)
        else:
            self._escalate(node, f"supplier repair needed: {', '.join(codes)}", {"codes": codes})

    def _technician_done(self, node: FleetNode, _: Any = None) -> None:
        self.sim.world.fix(node.body)
        self._reboot(node, "bringing the node up after the hardware fix")

    def _reboot(self, node: FleetNode, reason: str) -> None:
        case = self._case(node)
        case.reboot_started = self.sim.t
        self.sim.metrics.reboots += 1
        node.driver.reboot(node.hostname, reason)
        self.sim.schedule(MINUTE * self.policy.poll_minutes, self._check_boot, node)

    def _check_boot(self, node: FleetNode, _: Any = None) -> None:
        case = self._case(node)
        status = node.driver.power_status(node.hostname)
        waited = self.sim.t - case.reboot_started
        if status.reachable:
            self.sim.metrics.reboots_returned += 1
            self.sim.metrics.reboot_minutes.append(waited / MINUTE)
            if self._move(node, "repaired", "node is back and healthy after the repair"):
                self._validate(node)
        elif waited >= MINUTE * self.policy.reboot_timeout_minutes:
            self.sim.metrics.reboots_not_returned += 1
            self._escalate(node, "node did not come back from reboot", {"reboot_minutes": round(waited / MINUTE)})
        else:
            self.sim.schedule(MINUTE * self.policy.poll_minutes, self._check_boot, node)

    def _escalate(self, node: FleetNode, reason: str, data: dict[str, Any]) -> None:
        case = self._case(node)
        if not self._move(node, "escalate_supplier", reason, data):
            return
        self.sim.metrics.rma += 1
        self.sim.world.hand_to_supplier(node.body)
        case.supplier_since = self.sim.t
        self.sim.schedule(self.sim.model.rma_seconds(node.cls), self._supplier_returns, node)

    def _supplier_returns(self, node: FleetNode, _: Any = None) -> None:
        case = self._case(node)
        self.sim.world.replace_hardware(node.body, defect=self.sim.model.returns_defective(node.cls))
        self.sim.metrics.rma_days.append((self.sim.t - case.supplier_since) / DAY)
        if self._move(node, "supplier_returned", "supplier returned the hardware"):
            self._validate(node)

    def _provisioned(self, node: FleetNode, _: Any = None) -> None:
        self.sim.world.set_defect(node.body, self.sim.model.returns_defective(node.cls))
        node.driver.cordon(node.hostname, "validating new hardware")
        if self._move(node, "provisioned", "imaged and joined to the scheduler"):
            self._validate(node)

    def _validate(self, node: FleetNode) -> None:
        """Run what the cluster's validation policy asks of this node now."""
        case = self._case(node)
        plan = validation.plan(self.sim.uow.session(), node.id, self.sim.record_now())
        case.plan = plan
        run = node.driver.start_validation(node.hostname, plan.suite)
        case.run_id = run.run_id
        self.sim.schedule_at_time(run.expected_end, self._check_validation, node)

    def _check_validation(self, node: FleetNode, _: Any = None) -> None:
        case = self._case(node)
        plan = case.plan
        assert plan is not None
        result = node.driver.validation_result(node.hostname, case.run_id)
        if result.state is ValidationState.RUNNING:
            self.sim.schedule(MINUTE * self.policy.poll_minutes, self._check_validation, node)
            return
        rows = validation.records(node.id, node.cluster, plan, result, self.sim.to_record_time)
        validation.record(self.sim.uow.session(), rows, self.sim.record_now())
        failed = result.state is ValidationState.FAILED
        self.sim.metrics.validated(plan.path, node.supplier, node.sku, failed)
        if failed:
            codes = [f.code for f in result.failures]
            data = {"path": plan.path, "attempt": plan.attempt, "pass": result.passes_completed, "codes": codes}
            reason = f"{plan.path} validation failed at pass {result.passes_completed}"
            if self._move(node, "fail_validation", reason, data):
                self._run_diagnostics(node)
            return
        data = {"path": plan.path, "attempt": plan.attempt, "passes": result.passes_completed}
        if not self._move(node, "admit", f"passed {result.passes_completed} {plan.suite.name} pass(es)", data):
            return
        node.driver.clear_maintenance_taint(node.hostname)
        node.driver.uncordon(node.hostname, "admitted")
        if case.kind == "failure" and case.fault_kind is not None:
            self.sim.metrics.repaired(case.fault_kind, (self.sim.t - case.started) / HOUR)
        if case.kind == "bring_up":
            self.sim.metrics.brought_up_gpus += node.gpus
        node.case = None
        self.sim.start_service(node, after_hardware=plan.path != "fast_track")

    # -- bookkeeping ---------------------------------------------------------------------------------------

    def _open(self, node: FleetNode, kind: str) -> Case:
        self.cases += 1
        correlation = f"sim-{self.sim.seed}-{self.cases}"
        actor = Actor(name="sim:operations", role=Role.OPERATOR, correlation_id=correlation)
        case = Case(actor, kind, self.sim.t)
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
