"""Diagnose, repair, validate: the part of a case where the ladder is climbed and health is proven.

Diagnostics run once when the node is first idle (a few seconds for software faults, DCGM level 3 for hardware);
their recommendation is a floor under the rung the evidence asked for. A repair that does not take shows up as a
failed validation, whose recommendation raises the floor again, and the ladder (retries with backoff, then the next
rung) decides what comes next. Validation is the cluster's own policy through the validation services: a repair that
changed no hardware keeps the node on the fast track.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from gpufleet.adapters.drivers.base import UnknownNode, ValidationResult, ValidationState, ValidationSuite
from gpufleet.domain.remediation import DIAGNOSIS_FLOOR, SOFTWARE_ONLY, CaseState, kind_after, next_repair
from gpufleet.domain.validation import CHECKS, SUITES, CheckKind
from gpufleet.domain.xid_policy import Action, Kind
from gpufleet.remediation.reboots import (
    reboot_not_returned,
    reboot_requested,
    reboot_returned,
    reboot_went_down,
)
from gpufleet.remediation.step import Handler, Step, escalate, need_human
from gpufleet.remediation.tickets import resolve_ticket
from gpufleet.validation.ingest import record_results
from gpufleet.validation.policy import plan_for_node

SOURCE = "remediation-controller"
NOMINAL_FLOOR = 100.0
"""For measured checks the SKU's criteria do not name: drivers that judge by floors still report a number."""
UNREACHABLE = "UNREACHABLE"


def floor_of(result: ValidationResult) -> Action | None:
    """What a failed run recommends, as a rung; a node that does not answer is power-cycled first."""
    if result.state is not ValidationState.FAILED:
        return None
    if any(f.code == UNREACHABLE for f in result.failures):
        return Action.REBOOT
    return DIAGNOSIS_FLOOR.get(result.recommended_action.value)


def _diagnosing(s: Step) -> bool:
    c = s.case
    start = Action(c.start_action)
    if c.action is None:
        if start is Action.RMA:
            c.set(attempt=1)
            return escalate(s, c.reason)
        if start is Action.INSPECT:
            return need_human(s, f"hands needed: {c.reason}", action=Action.INSPECT.value)
        if "diag" not in c.pending:
            settings = s.policy.settings
            level = settings.diagnostics_hardware if c.kind == Kind.HARDWARE.value else settings.diagnostics_software
            suite = ValidationSuite(f"diagnostics-{level}", (level,), 1, CHECKS[level].minutes)
            run = s.scheduler.start_validation(c.hostname, suite)
            c.set(run_id=run.run_id, pending={**c.pending, "diag": level})
            end = s.engine.frame.to_record(run.expected_end) if run.expected_end else s.now + s.poll
            return s.wait(end)
        if c.run_id is not None:
            result = s.scheduler.validation_result(c.hostname, c.run_id)
            if result.state is ValidationState.RUNNING:
                return s.wait(s.now + s.poll)
            floor = floor_of(result)
            codes = [f.code for f in result.failures]
            c.set(floor_action=floor.value if floor else None, run_id=None)
            found = f"found {', '.join(codes)} (recommends {floor.value if floor else 'nothing'})" if codes else "clean"
            s.record("diagnosis", f"{c.pending.get('diag')}: {found}", codes=codes)
    floor = Action(c.floor_action) if c.floor_action else None
    last = Action(c.action) if c.action else None
    choice = next_repair(s.policy, start, floor, last, c.attempt)
    if choice.wait > timedelta(0):
        until = c.pending.get("backoff_until")
        if until is None:
            wake = s.now + s.span(choice.wait)
            c.set(pending={**c.pending, "backoff_until": wake.isoformat()})
            s.record("backoff", f"{choice.reason}: waiting {choice.wait} first")
            return s.wait(wake)
        if s.now < datetime.fromisoformat(until):
            return s.wait(datetime.fromisoformat(until))
    c.set(pending={k: v for k, v in c.pending.items() if k != "backoff_until"})
    if choice.to_supplier:
        c.set(attempt=choice.attempt if c.action == Action.RMA.value else 1)
        return escalate(s, f"{choice.reason}; {c.reason}")
    if choice.needs_human:
        c.set(kind=kind_after(Kind(c.kind), Action.INSPECT).value, owner="us")
        return need_human(s, choice.reason, action=Action.INSPECT.value)
    c.set(action=choice.action.value, attempt=choice.attempt)
    s.node(
        "repair",
        f"{choice.action.value} (attempt {choice.attempt}): {choice.reason}",
        action=choice.action.value,
        hardware_change=choice.action not in SOFTWARE_ONLY,
    )
    step = s.policy.step(choice.action)
    limit = s.span(step.time_limit) if step is not None else None
    return s.move("repair", choice.reason, step_limit=limit, attempt=choice.attempt)


def _repairing(s: Step) -> bool:
    c = s.case
    action = Action(c.action or Action.REBOOT.value)
    if action in (Action.REBOOT, Action.REIMAGE):
        return _rebooting(s, action)
    key = f"{action.value}:{c.attempt}"
    if c.pending.get("op") != key:
        c.set(pending={**c.pending, "op": key, "op_at": s.now.isoformat(), "op_done": False})
        s.checkpoint()
        scheduler = s.scheduler
        reason = f"gpufleet case {c.id}: {', '.join(c.codes)}"[:200]
        if action is Action.RESET_GPU:
            if not scheduler.can_reset_gpu:
                c.set(action=Action.REBOOT.value, pending={k: v for k, v in c.pending.items() if k != "op"})
                s.record("note", "this cluster's driver cannot reset a GPU: rebooting instead")
                return True
            scheduler.reset_gpu(c.hostname, c.gpu_index, reason)
        elif scheduler.can_restart_workload:
            scheduler.restart_workload(c.hostname, reason)
        else:
            s.record("note", "this cluster's driver restarts no workload: the drain already ended it")
        c.set(pending={**c.pending, "op_done": True})
    elif not c.pending.get("op_done"):
        s.record("note", f"{action.value} was under way when a controller stopped: not repeated, validation decides")
    s.engine.notify("repaired", c, {"action": action.value})
    return _repaired(s, action)


def _repaired(s: Step, action: Action) -> bool:
    c = s.case
    s.node("repaired", f"{action.value} done", action=action.value, hardware_change=action not in SOFTWARE_ONLY)
    c.set(pending={k: v for k, v in c.pending.items() if not k.startswith("op") and k not in ("reboot", "down")})
    return s.move("repaired", f"{action.value} done: validating")


def _rebooting(s: Step, action: Action) -> bool:
    c = s.case
    frame = s.engine.frame
    key = f"{action.value}:{c.attempt}"
    scheduler = s.scheduler
    if c.pending.get("op") != key:
        reason = f"gpufleet case {c.id}: {action.value} for {', '.join(c.codes)}"[:200]
        reboot_id = reboot_requested(s.session, c.node_id, c.cluster_id, c.id, reason, s.now)
        c.set(pending={**c.pending, "op": key, "op_at": s.now.isoformat(), "op_done": False, "reboot": reboot_id})
        s.checkpoint()
        scheduler.reboot(c.hostname, reason, reimage=action is Action.REIMAGE)
        c.set(pending={**c.pending, "op_done": True})
        s.engine.notify("reboot_requested", c, {"action": action.value})
    requested = datetime.fromisoformat(c.pending["op_at"])
    reboot_id = int(c.pending["reboot"])
    status = scheduler.power_status(c.hostname)
    booted = frame.to_record(status.booted_at) if status.booted_at is not None else None
    if not c.pending.get("op_done"):
        # A controller stopped between the intent and the call: ask only if the node shows no sign of it.
        if not status.reboot_pending and (booted is None or booted < requested):
            scheduler.reboot(c.hostname, f"gpufleet case {c.id}: {action.value}", reimage=action is Action.REIMAGE)
            status = scheduler.power_status(c.hostname)
        c.set(pending={**c.pending, "op_done": True})
    if status.reachable and booted is not None and booted >= requested:
        seconds = reboot_returned(s.session, reboot_id, booted)
        s.engine.notify("reboot_returned", c, {"minutes": seconds / 60})
        return _repaired(s, action)
    if not status.reachable and not c.pending.get("down"):
        reboot_went_down(s.session, reboot_id, s.now)
        c.set(pending={**c.pending, "down": True})
    timeout = requested + s.minutes(s.policy.settings.reboot_timeout_minutes)
    if s.now >= timeout:
        reboot_not_returned(s.session, reboot_id)
        s.engine.notify("reboot_not_returned", c, {})
        minutes = round((s.now - requested).total_seconds() / 60)
        return escalate(s, f"did not return from {action.value} within {minutes} min", reboot=reboot_id)
    # Most reboots are back within minutes; one that is not is looked at less and less often until its timeout.
    return s.wait(min(s.now + max(s.poll, (s.now - requested) / 3), timeout))


def _suite(plan: Any) -> ValidationSuite:
    spec = SUITES[plan.decision.suite]
    floors = dict(plan.criteria.minimums) if plan.criteria is not None else {}
    measured = {c: floors.get(c, NOMINAL_FLOOR) for c in spec.checks if CHECKS[c].kind is CheckKind.MINIMUM}
    return ValidationSuite(spec.name, spec.checks, plan.decision.passes, spec.minutes, measured)


def _validating(s: Step) -> bool:
    c = s.case
    if not c.plan.get("run_id"):
        plan = plan_for_node(s.session, c.node_id, s.now)
        if plan.decision.wait_for is not None:
            if c.held != "canary":
                s.record("hold", f"waiting for canary {plan.decision.wait_for}")
            return s.wait(s.now + s.poll, held="canary")
        suite = _suite(plan)
        run = s.scheduler.start_validation(c.hostname, suite)
        minutes = suite.passes * suite.pass_minutes
        expected = s.engine.frame.to_record(run.expected_end) if run.expected_end else s.now + s.minutes(minutes)
        c.set(
            held=None,
            plan={
                "path": plan.decision.path.value,
                "suite": suite.name,
                "passes": suite.passes,
                "attempt": plan.attempt,
                "config_version": plan.config_version,
                "cluster": plan.cluster,
                "run_id": run.run_id,
                "reason": plan.decision.reason,
            },
            deadline_at=max(expected, s.now) + s.span(timedelta(hours=2)),
        )
        s.record("validation", f"{plan.decision.path.value}: {suite.passes} x {suite.name} ({plan.decision.reason})")
        return s.wait(expected)
    try:
        result = s.scheduler.validation_result(c.hostname, c.plan["run_id"])
    except UnknownNode:
        c.set(plan={})
        s.record("note", "the cluster lost the validation run: starting it again")
        return True
    if result.state is ValidationState.RUNNING:
        return s.wait(s.now + s.poll)
    return _validated(s, result)


def _validated(s: Step, result: ValidationResult) -> bool:
    c = s.case
    plan = c.plan
    frame = s.engine.frame
    rows = []
    for p in result.passes:
        row: dict[str, Any] = {
            "node": c.node_id,
            "cluster": plan["cluster"],
            "attempt": plan["attempt"],
            "pass_number": p.number,
            "suite": plan["suite"],
            "started_at": frame.to_record(p.started_at).isoformat(),
            "finished_at": frame.to_record(p.finished_at).isoformat(),
            "result": "pass" if p.passed else "fail",
            "checks": dict(p.checks),
            "path": plan["path"],
            "passes_required": plan["passes"],
        }
        if plan.get("config_version") is not None:
            row["config_version"] = plan["config_version"]
        rows.append(row)
    if rows:
        report = record_results(s.session, list(enumerate(rows, start=1)), SOURCE, s.now)
        if not report.ok:
            return need_human(s, "validation results were refused: " + "; ".join(str(e) for e in report.errors[:3]))
    failed = result.state is ValidationState.FAILED
    s.engine.notify("validated", c, {"path": plan["path"], "failed": failed})
    if failed:
        floor = floor_of(result)
        codes = [f.code for f in result.failures]
        c.set(floor_action=floor.value if floor else c.floor_action, plan={})
        why = f"{plan['path']} validation failed at pass {result.passes_completed}: {', '.join(codes)}"
        s.node("fail_validation", why, path=plan["path"], codes=codes)
        return s.move("validation_failed", why, codes=codes)
    s.node(
        "admit",
        f"passed {result.passes_completed} {plan['suite']} pass(es)",
        path=plan["path"],
        attempt=plan["attempt"],
        passes=result.passes_completed,
    )
    scheduler = s.scheduler
    scheduler.clear_maintenance_taint(c.hostname, f"gpufleet case {c.id}: validated")
    scheduler.uncordon(c.hostname, f"gpufleet case {c.id}: validated")
    if c.ticket_id is not None:
        resolve_ticket(s.session, c.ticket_id, s.now, f"the unit passed {plan['path']} validation")
    c.set(resolution="reintegrated")
    return s.move("admit", f"reintegrated after {plan['path']} validation", path=plan["path"])


def step_failed(s: Step, reason: str) -> bool:
    """A diagnosis, repair or validation that outstayed its limit counts as one that did not help."""
    c = s.case
    state = c.case_state
    if state is CaseState.DIAGNOSING:
        c.set(
            run_id=None,
            pending={**c.pending, "diag": c.pending.get("diag", "skipped")},
            deadline_at=s.now + s.span(timedelta(hours=1)),
        )
        s.record("note", f"{reason}: choosing the repair without it")
        return True
    if state is CaseState.REPAIRING:
        s.node("repair_failed", reason)
        c.set(pending={k: v for k, v in c.pending.items() if not k.startswith("op")})
        return s.move("repair_failed", reason)
    c.set(plan={})
    s.node("fail_validation", reason)
    return s.move("validation_failed", reason)


REPAIR_HANDLERS: dict[CaseState, Handler] = {
    CaseState.DIAGNOSING: _diagnosing,
    CaseState.REPAIRING: _repairing,
    CaseState.VALIDATING: _validating,
}
