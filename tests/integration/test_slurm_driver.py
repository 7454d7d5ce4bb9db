"""The Slurm driver against a real Slurm 22.05 (slurmctld and eight slurmd on loopback, see tests/fixtures/slurm)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gpufleet.adapters.drivers.base import MAINTENANCE_TAINT, ClusterDriver, DriverError, UnknownNode
from gpufleet.adapters.drivers.ownership import HeldByOthers
from gpufleet.adapters.drivers.slurm import SlurmDriver, SlurmSettings, node_reservation
from gpufleet.platform.clock import SystemClock
from tests.fixtures.slurm import fixtures
from tests.fixtures.slurm.cluster import SlurmTestCluster

slurm_cluster = fixtures.slurm_cluster
slurm = fixtures.slurm

FAR = datetime(2100, 1, 1, tzinfo=UTC)


def driver_for(cluster: SlurmTestCluster) -> SlurmDriver:
    return SlurmDriver("test-slurm", SlurmSettings(conf=cluster.conf, timeout_seconds=20), SystemClock())


def test_the_slurm_driver_is_a_cluster_driver(slurm: SlurmTestCluster) -> None:
    assert isinstance(driver_for(slurm), ClusterDriver)


def test_drain_with_a_running_job_is_draining_until_the_job_ends_then_drained(slurm: SlurmTestCluster) -> None:
    driver = driver_for(slurm)
    job = slurm.submit("gpu-001", 3)
    status = driver.drain("gpu-001", "gpufleet[case:42] xid 79 on GPU 3", FAR)
    assert [w.id for w in status.remaining] == [job] and not status.complete and not status.forced
    seen = driver.node_status("gpu-001")
    assert seen.draining and not seen.schedulable
    assert seen.native_state == "ALLOCATED+DRAIN" and slurm.state("gpu-001") == "draining"
    assert seen.reason == "gpufleet[case:42] xid 79 on GPU 3" and seen.extra["owner"] == "gpufleet"
    slurm.wait("the job to end", lambda: driver.drain("gpu-001", "gpufleet[case:42] xid 79 on GPU 3", FAR).complete)
    after = driver.node_status("gpu-001")
    assert not after.draining and not after.schedulable and after.running == ()
    assert after.native_state == "IDLE+DRAIN" and slurm.state("gpu-001") == "drained"


def test_a_drain_past_its_deadline_cancels_the_remaining_jobs(slurm: SlurmTestCluster) -> None:
    driver = driver_for(slurm)
    job = slurm.submit("gpu-002", 300)
    status = driver.drain("gpu-002", "gpufleet[maint:7] firmware", datetime.now(UTC) - timedelta(seconds=1))
    assert [w.id for w in status.forced] == [job]
    slurm.wait("the cancelled job to leave", lambda: driver.drain("gpu-002", "x", FAR).complete)
    assert slurm.state("gpu-002") == "drained"


def test_resume_returns_a_node_gpufleet_drained_and_is_idempotent(slurm: SlurmTestCluster) -> None:
    driver = driver_for(slurm)
    driver.cordon("gpu-003", "gpufleet[case:1] suspect")
    driver.cordon("gpu-003", "gpufleet[case:1] suspect")
    assert slurm.state("gpu-003") == "drained"
    driver.uncordon("gpu-003", "false alarm")
    slurm.wait("gpu-003 to be idle", lambda: slurm.state("gpu-003") == "idle")
    driver.uncordon("gpu-003", "false alarm")
    assert driver.node_status("gpu-003").schedulable


def test_a_hand_drain_is_kept_and_only_lifted_with_an_override(slurm: SlurmTestCluster) -> None:
    driver = driver_for(slurm)
    slurm.cmd("scontrol", "update", "nodename=gpu-004", "state=drain", "reason=fan noise, ticket OPS-12")
    driver.cordon("gpu-004", "gpufleet[case:2] quarantine")  # already out of service: the operator's reason stays
    seen = driver.node_status("gpu-004")
    assert seen.reason == "fan noise, ticket OPS-12" and seen.extra["owner"] == "other"
    assert seen.extra["reason_user"] == "root"
    with pytest.raises(HeldByOthers, match=r"outside gpufleet.*fan noise"):
        driver.uncordon("gpu-004", "looks fine")
    assert slurm.state("gpu-004") == "drained"
    driver.uncordon("gpu-004", "ops agreed in OPS-12", override=True)
    slurm.wait("gpu-004 to be idle", lambda: slurm.state("gpu-004") == "idle")


def test_a_reboot_that_returns_comes_back_with_a_new_boot_time(slurm: SlurmTestCluster) -> None:
    driver = driver_for(slurm)
    before = driver.power_status("gpu-005")
    driver.reboot("gpu-005", "gpufleet[case:3] reboot after xid 79")
    driver.reboot("gpu-005", "gpufleet[case:3] reboot after xid 79")  # asking twice is asking once
    assert driver.power_status("gpu-005").reboot_pending
    slurm.wait("gpu-005 to come back", lambda: not driver.power_status("gpu-005").reboot_pending, timeout=30)
    after = driver.power_status("gpu-005")
    assert after.reachable and after.booted_at is not None and before.booted_at is not None
    assert after.booted_at > before.booted_at
    slurm.wait("gpu-005 to be idle", lambda: slurm.state("gpu-005") == "idle")


def test_a_reboot_that_does_not_return_stays_pending_and_unreachable(slurm: SlurmTestCluster) -> None:
    driver = driver_for(slurm)
    slurm.no_return("gpu-006")
    driver.reboot("gpu-006", "gpufleet[case:4] reboot", hold=True)
    slurm.wait("the reboot to be issued", lambda: "REBOOT_ISSUED" in driver.node_status("gpu-006").native_state)
    power = driver.power_status("gpu-006")
    assert power.reboot_pending and not power.reachable
    with pytest.raises(DriverError, match="already issued"):
        driver.cancel_reboot("gpu-006")
    with pytest.raises(DriverError, match="reboot pending"):
        driver.uncordon("gpu-006", "x")


def test_a_reboot_asked_while_a_job_runs_can_be_cancelled(slurm: SlurmTestCluster) -> None:
    driver = driver_for(slurm)
    slurm.submit("gpu-007", 300)
    driver.reboot("gpu-007", "gpufleet[maint:9] kernel update")
    seen = driver.node_status("gpu-007")
    assert "REBOOT_REQUESTED" in seen.native_state and seen.draining
    driver.cancel_reboot("gpu-007")
    driver.cancel_reboot("gpu-007")
    assert "REBOOT_REQUESTED" not in driver.node_status("gpu-007").native_state


def test_a_maintenance_reservation_holds_the_node_until_cleared(slurm: SlurmTestCluster) -> None:
    driver = driver_for(slurm)
    driver.set_maintenance_taint("gpu-008", "gpufleet[maint:11] BIOS update")
    driver.set_maintenance_taint("gpu-008", "gpufleet[maint:11] BIOS update")
    [reservation] = [r for r in driver.reservations() if r.name == node_reservation("gpu-008")]
    assert {"MAINT", "IGNORE_JOBS"} <= reservation.flags and reservation.nodes == ("gpu-008",)
    slurm.wait("gpu-008 to show maintenance", lambda: "MAINTENANCE" in driver.node_status("gpu-008").native_state)
    assert MAINTENANCE_TAINT in {t.key for t in driver.node_status("gpu-008").taints}
    assert slurm.state("gpu-008") == "maint"
    driver.clear_maintenance_taint("gpu-008")
    driver.clear_maintenance_taint("gpu-008")
    assert not driver.reservations()
    slurm.wait("gpu-008 to leave maintenance", lambda: slurm.state("gpu-008") == "idle")


def test_a_maintenance_window_reservation_covers_several_nodes(slurm: SlurmTestCluster) -> None:
    driver = driver_for(slurm)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    end = start + timedelta(hours=2)
    made = driver.create_reservation("gpufleet-maint-21", ["gpu-001", "gpu-002"], "window", start, end)
    assert made.nodes == ("gpu-001", "gpu-002") and made.starts_at == start and made.state == "INACTIVE"
    driver.delete_reservation("gpu-maint-21-never-made")
    driver.delete_reservation("gpufleet-maint-21")
    assert not driver.reservations()


def test_every_node_listed_at_once_matches_each_node_read_alone(slurm: SlurmTestCluster) -> None:
    driver = driver_for(slurm)
    slurm.submit("gpu-003", 300)
    driver.cordon("gpu-003", "gpufleet[case:5] x")
    listed = {s.node: s for s in driver.list_nodes()}
    assert sorted(listed) == list(slurm.nodes)
    for name in slurm.nodes:
        alone = driver.node_status(name)
        assert (listed[name].native_state, listed[name].reason) == (alone.native_state, alone.reason)
        assert [w.id for w in listed[name].running] == [w.id for w in alone.running]
    assert listed["gpu-003"].draining and listed["gpu-001"].schedulable


def test_check_reports_the_controller_and_the_nodes(slurm: SlurmTestCluster) -> None:
    seen = driver_for(slurm).check()
    assert seen["reachable"] and seen["nodes"] == 8 and seen["version"].startswith("slurm")
    assert seen["states"] == {"IDLE": 8}


def test_an_unknown_node_is_named(slurm: SlurmTestCluster) -> None:
    with pytest.raises(UnknownNode, match="no node named 'gpu-999'"):
        driver_for(slurm).cordon("gpu-999", "x")
