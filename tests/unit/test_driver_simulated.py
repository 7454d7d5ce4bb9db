"""The simulated driver behaves like a cluster: drains wait for work, reboots take time, checks find faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gpufleet.adapters.drivers.base import (
    MAINTENANCE_TAINT,
    ClusterDriver,
    PowerState,
    RepairAction,
    UnknownNode,
    ValidationState,
    ValidationSuite,
)
from gpufleet.adapters.drivers.simulated import Fault, SimulatedDriver, SimulatedWorld, Workload
from gpufleet.platform.clock import ManualClock

START = datetime(2026, 1, 1, tzinfo=UTC)
BUSY = Workload(utilization=1.0, job_hours=10.0, job_nodes=4, teardown_minutes=10.0)
SUITE = ValidationSuite(
    "full", ("dcgm_r3", "ib_bw_gbps", "gpu_burn"), passes=3, pass_minutes=30, floors={"ib_bw_gbps": 380}
)


def cluster(workload: Workload = BUSY, **world: object) -> tuple[ManualClock, SimulatedWorld, SimulatedDriver]:
    clock = ManualClock(START)
    w = SimulatedWorld(clock, seed=1, auto_register=False, **world)  # type: ignore[arg-type]
    w.add_node("c1", "n1", 8, workload)
    return clock, w, SimulatedDriver(w, "c1")


def test_it_is_a_cluster_driver() -> None:
    _, _, driver = cluster()
    assert isinstance(driver, ClusterDriver)
    assert driver.cluster == "c1"


def test_unknown_nodes_are_refused_by_name() -> None:
    _, _, driver = cluster()
    with pytest.raises(UnknownNode, match="no node named 'nope'"):
        driver.node_status("nope")


def test_a_busy_node_drains_when_its_job_ends() -> None:
    clock, _, driver = cluster()
    deadline = START + timedelta(days=30)
    status = driver.drain("n1", "maintenance", deadline)
    assert not status.complete
    (job,) = status.remaining
    assert job.nodes == 4 and job.expected_end is not None and job.expected_end > START
    assert driver.node_status("n1").native_state == "ALLOCATED+DRAIN"
    clock.set(job.expected_end + timedelta(seconds=1))
    assert driver.drain("n1", "maintenance", deadline).complete
    assert driver.node_status("n1").native_state == "IDLE+DRAIN"


def test_work_left_at_the_deadline_is_ended_and_reported_as_forced() -> None:
    clock, _, driver = cluster(Workload(utilization=1.0, job_hours=10_000.0))
    deadline = START + timedelta(hours=1)
    assert not driver.drain("n1", "fault", deadline).complete
    clock.set(deadline)
    status = driver.drain("n1", "fault", deadline)
    assert status.forced and not status.complete  # the job is being torn down
    clock.advance(timedelta(minutes=11))
    assert driver.drain("n1", "fault", deadline).complete


def test_an_idle_node_drains_at_once() -> None:
    _, _, driver = cluster(Workload(utilization=0.0))
    assert driver.drain("n1", "planned", START).complete


def test_cordon_stops_new_work_and_uncordon_lets_it_land() -> None:
    clock, _, driver = cluster()
    job = driver.node_status("n1").running[0]
    driver.cordon("n1", "suspect")
    assert not driver.node_status("n1").schedulable
    assert job.expected_end is not None
    clock.set(job.expected_end + timedelta(minutes=1))
    assert driver.node_status("n1").running == ()
    driver.uncordon("n1", "fine")
    assert driver.node_status("n1").running != ()


def test_a_fault_interrupts_the_running_job() -> None:
    _, world, driver = cluster()
    node = world.nodes[("c1", "n1")]
    fault = Fault("Faulty GPU", "hardware", RepairAction.RMA, START, "FAULTY_GPU")
    job = world.inject_fault(node, fault)
    assert job is not None and job.interrupted
    assert driver.node_status("n1").native_state.startswith("COMPLETING")


def test_the_maintenance_taint_is_set_and_cleared() -> None:
    _, _, driver = cluster()
    driver.set_maintenance_taint("n1", "firmware update")
    status = driver.node_status("n1")
    assert [t.key for t in status.taints] == [MAINTENANCE_TAINT]
    assert "MAINTENANCE" in status.native_state
    driver.clear_maintenance_taint("n1")
    assert driver.node_status("n1").taints == ()


def test_a_reboot_takes_the_node_away_then_brings_it_back_without_a_software_fault() -> None:
    clock, world, driver = cluster(boot_minutes=(10.0, 10.0))
    world.inject_fault(world.nodes[("c1", "n1")], Fault("Software Bug", "software", RepairAction.REBOOT, START, "SW"))
    driver.reboot("n1", "clear the bug")
    status = driver.power_status("n1")
    assert not status.reachable and status.reboot_pending
    assert "REBOOT_ISSUED" in driver.node_status("n1").native_state
    clock.advance(timedelta(minutes=11))
    status = driver.power_status("n1")
    assert status.reachable and status.power is PowerState.ON and status.booted_at is not None
    assert world.nodes[("c1", "n1")].fault is None


def test_a_reboot_can_leave_the_node_gone() -> None:
    clock, world, driver = cluster(reboot_no_return=1.0)
    driver.reboot("n1", "try")
    clock.advance(timedelta(days=1))
    status = driver.power_status("n1")
    assert not status.reachable and status.power is PowerState.UNKNOWN
    assert world.nodes[("c1", "n1")].fault is not None


def test_a_healthy_node_passes_every_pass_with_measurements() -> None:
    clock, _, driver = cluster()
    run = driver.start_validation("n1", SUITE)
    assert run.expected_end == START + timedelta(minutes=90)
    clock.advance(timedelta(minutes=45))
    running = driver.validation_result("n1", run.run_id)
    assert running.state is ValidationState.RUNNING and running.passes_completed == 1
    clock.advance(timedelta(minutes=45))
    result = driver.validation_result("n1", run.run_id)
    assert result.state is ValidationState.PASSED and len(result.passes) == 3
    for p in result.passes:
        assert p.passed and p.checks["dcgm_r3"] == "pass"
        assert isinstance(p.checks["ib_bw_gbps"], float) and p.checks["ib_bw_gbps"] >= 380


def test_a_network_fault_fails_the_fabric_check_on_the_first_pass() -> None:
    clock, world, driver = cluster()
    fault = Fault("Network Switch/Cable", "hardware", RepairAction.RESET, START, "NET")
    world.inject_fault(world.nodes[("c1", "n1")], fault)
    run = driver.start_validation("n1", SUITE)
    clock.advance(timedelta(hours=2))
    result = driver.validation_result("n1", run.run_id)
    assert result.state is ValidationState.FAILED and result.passes_completed == 1
    assert result.failures[0].check == "ib_bw_gbps" and result.recommended_action is RepairAction.RESET
    assert result.passes[0].checks["ib_bw_gbps"] < 380


def test_a_latent_defect_is_found_by_some_pass_and_then_stays_found() -> None:
    clock, world, driver = cluster(detect_per_pass=1.0)
    world.set_defect(world.nodes[("c1", "n1")], True)
    run = driver.start_validation("n1", SUITE)
    clock.advance(timedelta(hours=2))
    result = driver.validation_result("n1", run.run_id)
    assert result.state is ValidationState.FAILED and result.recommended_action is RepairAction.RMA
    diagnostics = driver.start_validation("n1", ValidationSuite("diagnostics", ("dcgm_r3",)))
    clock.advance(timedelta(hours=1))
    assert driver.validation_result("n1", diagnostics.run_id).state is ValidationState.FAILED


def test_an_unreachable_node_fails_validation_at_once() -> None:
    _, world, driver = cluster()
    world.inject_fault(
        world.nodes[("c1", "n1")], Fault("Power Supply", "hardware", RepairAction.RMA, START, "PSU", unreachable=True)
    )
    run = driver.start_validation("n1", SUITE)
    result = driver.validation_result("n1", run.run_id)
    assert result.state is ValidationState.FAILED and result.failures[0].code == "UNREACHABLE"
    assert driver.node_status("n1").native_state.startswith("DOWN")


def test_the_same_seed_gives_the_same_cluster() -> None:
    _, _, a = cluster()
    _, _, b = cluster()
    assert a.node_status("n1").running == b.node_status("n1").running
