"""The simulated cluster's repair skills: what an application restart, a GPU reset and a reboot each clear."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpufleet.adapters.drivers.base import RepairAction, ValidationState, ValidationSuite
from gpufleet.adapters.drivers.simulated import Fault, SimulatedDriver, SimulatedWorld
from gpufleet.platform.clock import ManualClock
from gpufleet.remediation.runtime import Reimages, ResetsGpus, RestartsWorkload

START = datetime(2026, 1, 1, tzinfo=UTC)
DIAG = ValidationSuite("diag", ("dcgm_r1",), 1, 1.0)


def broken(remedy: str | None, action: RepairAction = RepairAction.REBOOT) -> tuple[ManualClock, SimulatedDriver]:
    clock = ManualClock(START)
    world = SimulatedWorld(clock, seed=1, boot_minutes=(5.0, 6.0))
    driver = SimulatedDriver(world, "c1")
    world.inject_fault(world.node("c1", "n1"), Fault("x", "software", action, START, "X", 300.0, remedy=remedy))
    return clock, driver


def test_the_simulated_driver_has_the_optional_skills_but_not_reimage() -> None:
    _, driver = broken(None)
    assert isinstance(driver, ResetsGpus) and isinstance(driver, RestartsWorkload)
    assert not isinstance(driver, Reimages)


def test_an_application_failure_passes_diagnostics_and_clears_on_restart() -> None:
    clock, driver = broken("restart_app")
    run = driver.start_validation("n1", DIAG)
    clock.advance(timedelta(minutes=2))
    assert driver.validation_result("n1", run.run_id).state is ValidationState.PASSED
    driver.restart_workload("n1", "restart")
    assert driver.world.node("c1", "n1").fault is None


def test_a_gpu_reset_clears_reset_and_restart_faults_but_not_others() -> None:
    _, driver = broken("reset_gpu", RepairAction.RESET)
    driver.restart_workload("n1", "restart")
    assert driver.world.node("c1", "n1").fault is not None
    driver.reset_gpu("n1", 0, "reset")
    assert driver.world.node("c1", "n1").fault is None
    _, stubborn = broken(None, RepairAction.RESET)
    stubborn.reset_gpu("n1", 0, "reset")
    assert stubborn.world.node("c1", "n1").fault is not None


def test_a_reboot_clears_what_a_reset_would() -> None:
    clock, driver = broken("reset_gpu", RepairAction.RESET)
    driver.reboot("n1", "reboot")
    clock.advance(timedelta(minutes=30))
    status = driver.power_status("n1")
    assert status.reachable and driver.world.node("c1", "n1").fault is None
