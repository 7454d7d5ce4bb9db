"""The remediation controller end to end on a simulated cluster, on SQLite and PostgreSQL.

Each test breaks a node in the simulated world, reports what real telemetry would say, and lets the controller run
on the test's clock; the assertions read what the product recorded.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gpufleet.adapters.db.models import HealthEvent, NodeEvent, OutboxMessage, Reboot, Ticket, ValidationAttempt
from gpufleet.adapters.drivers.base import RepairAction, ValidationResult, ValidationState
from gpufleet.adapters.drivers.simulated import SimulatedDriver
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.database import Database
from gpufleet.remediation.cases import act, supplier_returned
from gpufleet.remediation.intake import node_events
from gpufleet.reports.remediation import remediation_figures
from tests.factories import ADMIN
from tests.integration.remediation_support import PEOPLE, Harness, harness, node_id, transitions_of

PIPELINE = [
    "None->detected",
    "detected->quarantined",
    "quarantined->draining",
    "draining->diagnosing",
    "diagnosing->repairing",
    "repairing->validating",
    "validating->reintegrated",
]


@pytest.fixture
def h(db: Database, clock: ManualClock) -> Harness:
    return harness(db, clock)


def test_an_application_fault_is_restarted_fast_tracked_and_back_within_minutes(h: Harness) -> None:
    h.break_node("E1", RepairAction.REBOOT, kind="software", remedy="restart_app")
    h.report("E1", "xid:13", gpu=2)
    h.settle(hours=2)
    case = h.case("E1")
    assert (case.state, case.action, case.kind, case.owner, case.resolution) == (
        "reintegrated",
        "restart_app",
        "workload",
        "customer",
        "reintegrated",
    )
    assert transitions_of(h, case.id) == PIPELINE
    assert h.node_state("E1") == "in_service"
    minutes = (case.closed_at - case.detected_at).total_seconds() / 60
    assert minutes < 15
    with h.db.reader() as session:
        attempt = session.execute(
            select(ValidationAttempt).where(ValidationAttempt.node_id == node_id("E1"))
        ).scalar_one()
        assert (attempt.path, attempt.status) == ("fast_track", "passed")
        moves = [
            e.event
            for e in session.scalars(
                select(NodeEvent)
                .where(NodeEvent.node_id == node_id("E1"), NodeEvent.kind == "transition")
                .order_by(NodeEvent.id)
            )
        ]
        assert moves == ["quarantine", "drain", "drained", "diagnose", "repair", "repaired", "admit"]
        events = session.scalars(select(HealthEvent).where(HealthEvent.node_id == node_id("E1"))).all()
        assert all(e.case_id == case.id and e.processed_at is not None for e in events)
    driver_node = h.world.node("east-frontier", "host-e1")
    assert driver_node.schedulable and driver_node.fault is None
    figures = remediation_figures(h.db, ADMIN)
    assert figures["mttr_minutes"]["software"] == {"count": 1, "p50": round(minutes, 1), "p90": round(minutes, 1)}
    assert figures["automation"]["rate"] == 1.0
    breakdown = figures["mttr_breakdown"]["software"]
    assert breakdown["cases"] == 1 and sum(breakdown["mean_minutes_by_state"].values()) == pytest.approx(
        minutes, abs=0.2
    )
    assert "validating" in breakdown["share_by_state"]


def test_repeated_deliveries_and_later_evidence_make_one_case(h: Harness) -> None:
    h.break_node("E2", RepairAction.RMA)
    first = h.report("E2", "xid:79", fingerprint="am-1")
    again = h.report("E2", "xid:79", fingerprint="am-1")
    assert first[0] is not None and again == [None]
    h.run()
    h.clock.advance(timedelta(minutes=1))
    h.report("E2", "xid:74", gpu=1)
    h.run()
    cases = h.cases("E2")
    assert len(cases) == 1
    assert set(cases[0].codes) == {"xid:74", "xid:79"}
    assert [s.kind for s in h.steps(cases[0].id)].count("evidence") == 1


def test_a_ticket_takes_the_newest_fifty_events_of_a_long_case_oldest_first(h: Harness) -> None:
    """A node that logs thousands of events must not make every escalation read all of them."""
    h.break_node("E2", RepairAction.RMA)
    for minute in range(60):
        h.report("E2", "xid:79", at=h.clock.now() + timedelta(seconds=minute), fingerprint=f"am-{minute}")
    h.run()
    case = h.cases("E2")[0]
    with h.db.reader() as session:
        everything = node_events(session, case.id)
        latest = node_events(session, case.id, latest=50)
    assert len(everything) == 60
    assert latest == everything[-50:]


def test_figures_report_the_age_of_cases_not_yet_resolved_beside_mttr(h: Harness) -> None:
    h.break_node("E2", RepairAction.RMA)
    h.report("E2", "xid:79")
    h.run()
    h.clock.advance(timedelta(minutes=90))
    h.run()
    case = h.cases("E2")[0]
    assert case.closed_at is None
    figures = remediation_figures(h.db, ADMIN)
    assert figures["mttr_minutes"]["hardware"]["count"] == 0  # nothing finished: MTTR alone would say nothing
    unresolved = figures["unresolved_minutes"]["hardware"]
    assert unresolved["count"] == 1 and unresolved["age_p50"] == unresolved["age_max"] == pytest.approx(90, abs=1)
    assert figures["unresolved_minutes"]["software"] == {"count": 0, "age_p50": None, "age_max": None}


def test_informational_codes_and_stale_events_are_evidence_only(h: Harness) -> None:
    h.report("E3", "xid:63")
    h.report("E4", "xid:79", at=h.clock.now() - timedelta(days=2))
    report = h.run()
    assert report.intake.evidence_only == 2 and report.intake.stale == 1 and not report.intake.opened
    assert h.cases("E3") == [] and h.cases("E4") == []
    with h.db.reader() as session:
        stale = session.execute(select(HealthEvent).where(HealthEvent.node_id == node_id("E4"))).scalar_one()
        assert stale.processed_at is not None and "stale" in stale.data["remediation"]


def test_xid_48_with_row_remapping_drains_gracefully_then_resets_the_gpu(h: Harness) -> None:
    h.break_node("E5", RepairAction.RESET, remedy="reset_gpu")
    h.report("E5", "xid:48", "xid:63", gpu=4)
    h.settle(hours=3)
    case = h.case("E5")
    assert (case.drain, case.action, case.state, case.gpu_index) == ("graceful", "reset_gpu", "reintegrated", 4)
    h.break_node("E6", RepairAction.RESET, remedy="reset_gpu")
    h.report("E6", "xid:48", gpu=1)
    h.settle(hours=3)
    assert (h.case("E6").drain, h.case("E6").state) == ("immediate", "reintegrated")


def test_diagnostics_that_find_more_than_the_evidence_said_skip_up_the_ladder(h: Harness) -> None:
    h.break_node("E7", RepairAction.REBOOT, kind="software", repair_minutes=6)
    h.report("E7", "xid:13")
    h.settle(hours=4)
    case = h.case("E7")
    assert (case.state, case.action, case.start_action, case.floor_action) == (
        "reintegrated",
        "reboot",
        "restart_app",
        "reboot",
    )
    actions = [s.action for s in h.steps(case.id) if s.kind == "transition" and s.to_state == "repairing"]
    assert actions == ["reboot"]
    assert any(s.kind == "diagnosis" and "recommends reboot" in s.detail for s in h.steps(case.id))
    with h.db.reader() as session:
        reboot = session.execute(select(Reboot).where(Reboot.case_id == case.id)).scalar_one()
        assert reboot.outcome == "returned" and reboot.went_down_at is not None and 300 <= reboot.seconds <= 600


def test_a_reboot_that_does_not_return_escalates_to_the_supplier(h: Harness) -> None:
    h.break_node("E8", RepairAction.RESET, unreachable=True)
    h.report("E8", "node:unreachable")
    h.settle(hours=5)
    case = h.case("E8")
    assert (case.state, case.action, case.owner) == ("escalated", "rma", "supplier")
    assert h.node_state("E8") == "awaiting_supplier"
    with h.db.reader() as session:
        reboot = session.execute(select(Reboot).where(Reboot.case_id == case.id)).scalar_one()
        ticket = session.get(Ticket, case.ticket_id)
        assert reboot.outcome == "not_returned" and reboot.came_back_at is None
        assert ticket is not None and ticket.unit == "node:E8" and ticket.status == "open"
        assert any("did not return" in str(item.get("note")) for item in ticket.evidence)
    figures = remediation_figures(h.db, ADMIN)
    assert figures["reboots"]["not_returned"] == 1 and figures["reboots"]["returned_share"] == 0.0


def test_an_rma_is_ticketed_once_per_unit_and_the_returned_node_takes_the_slow_path(h: Harness) -> None:
    h.break_node("E9", RepairAction.RMA)
    h.report("E9", "xid:79", gpu=3)
    h.settle(hours=2)
    case = h.case("E9")
    assert case.state == "escalated"
    with h.db.reader() as session:
        ticket = session.get(Ticket, case.ticket_id)
        assert ticket is not None and ticket.unit == "gpu:GPU-E9-3" and ticket.gpu_serial == "GPU-E9-3"
        assert [e["code"] for e in ticket.evidence if "code" in e] == ["xid:79"]
        assert session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() == 1
    h.world.replace_hardware(h.world.node("east-frontier", "host-e9"), defect=False)
    with h.db.transaction() as session:
        supplier_returned(session, node_id("E9"), PEOPLE, h.clock.now(), "supplier swapped GPU 3")
    h.settle(hours=14)
    case = h.case("E9")
    assert case.state == "reintegrated" and case.plan["path"] == "slow_path"
    with h.db.reader() as session:
        ticket = session.get(Ticket, case.ticket_id)
        assert ticket is not None and ticket.status == "resolved" and ticket.open_unit is None


def test_a_part_that_resets_cannot_fix_goes_to_a_person_and_comes_back_on_the_slow_path(h: Harness) -> None:
    h.break_node("E10", RepairAction.RESET)
    h.report("E10", "xid:119", gpu=0)
    h.settle(hours=3)
    case = h.case("E10")
    assert (case.state, case.action, case.kind) == ("needs_human", "inspect", "hardware")
    with h.db.reader() as session:
        human = session.execute(select(OutboxMessage).where(OutboxMessage.topic == "case.needs_human")).scalars().all()
        assert len(human) == 1
    h.world.fix(h.world.node("east-frontier", "host-e10"))
    with h.db.transaction() as session:
        act(session, case.id, "repaired", "reseated GPU 0", PEOPLE, h.clock.now())
    h.settle(hours=14)
    case = h.case("E10")
    assert case.state == "reintegrated" and case.human and case.plan["path"] == "slow_path"
    resets = [s for s in h.steps(case.id) if s.to_state == "repairing" and s.action == "reset_gpu"]
    assert len(resets) == 2  # retried once with backoff before asking for hands
    assert any(s.kind == "backoff" for s in h.steps(case.id))
    figures = remediation_figures(h.db, ADMIN)
    assert figures["automation"]["cases"] == 1 and figures["automation"]["automated"] == 0


def test_a_step_past_its_time_limit_escalates_instead_of_waiting(db: Database, clock: ManualClock) -> None:
    h = harness(db, clock)

    class SilentChecks(SimulatedDriver):
        """A cluster whose checks start but never report back on one node."""

        def validation_result(self, node: str, run_id: str) -> ValidationResult:
            result = super().validation_result(node, run_id)
            if node == "host-e11":
                return ValidationResult(run_id, node, result.suite, ValidationState.RUNNING)
            return result

    h.registry.register("simulated", lambda target, _clock: SilentChecks(h.world, target.name))
    h.break_node("E11", RepairAction.REBOOT, kind="software", remedy="restart_app")
    h.report("E11", "xid:13")
    h.settle(hours=48)
    case = h.case("E11")
    assert case.state in ("escalated", "needs_human")
    stuck = [s.detail for s in h.steps(case.id) if "stuck" in s.detail]
    assert stuck and any("diagnosing limit" in d for d in stuck) and any("validating limit" in d for d in stuck)
    climbed = [s.action for s in h.steps(case.id) if s.to_state == "repairing"]
    assert climbed[0] == "restart_app" and "reboot" in climbed


def test_a_reboot_nobody_asked_for_is_tracked_as_observed(h: Harness) -> None:
    down = h.clock.now() - timedelta(minutes=12)
    h.report("E12", "node:rebooted", data={"went_down_at": down.isoformat(), "reason": "kernel panic"})
    report = h.run()
    assert report.intake.evidence_only == 1 and h.cases("E12") == []
    with h.db.reader() as session:
        reboot = session.execute(select(Reboot).where(Reboot.node_id == node_id("E12"))).scalar_one()
        assert (reboot.source, reboot.outcome, reboot.reason) == ("observed", "returned", "kernel panic")
        assert reboot.seconds == 12 * 60 and reboot.went_down_at == down
    assert remediation_figures(h.db, ADMIN)["reboots"]["observed"] == 1
