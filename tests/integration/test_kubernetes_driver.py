"""The Kubernetes driver with the official client against a loopback API server (tests/fixtures/kubernetes_api.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gpufleet.adapters.drivers.base import MAINTENANCE_TAINT, ClusterDriver, DriverError, UnknownNode
from gpufleet.adapters.drivers.kubernetes import CORDON_ANNOTATION, KubernetesDriver, KubernetesSettings
from gpufleet.adapters.drivers.ownership import HeldByOthers
from gpufleet.platform.clock import ManualClock
from tests.fixtures.kubernetes_api import TOKEN, FakeApiServer

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAR = NOW + timedelta(hours=4)


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    server.fake.add_node(
        "gpu-a", labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}
    )
    server.fake.add_node("gpu-b")
    yield server
    server.stop()


@pytest.fixture
def driver(api: FakeApiServer, tmp_path: Path) -> KubernetesDriver:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    return KubernetesDriver("west", KubernetesSettings(kubeconfig=str(kubeconfig), timeout_seconds=5), ManualClock(NOW))


def test_the_kubernetes_driver_is_a_cluster_driver(driver: KubernetesDriver) -> None:
    assert isinstance(driver, ClusterDriver)


def test_cordon_sets_unschedulable_with_a_merge_patch_and_says_why(
    driver: KubernetesDriver, api: FakeApiServer
) -> None:
    driver.cordon("gpu-a", "gpufleet[case:3] xid 79")
    driver.cordon("gpu-a", "gpufleet[case:3] xid 79")
    patches = [r for r in api.fake.requests if r.method == "PATCH"]
    assert len(patches) == 1
    assert patches[0].path == "/api/v1/nodes/gpu-a" and patches[0].content_type == "application/merge-patch+json"
    assert patches[0].body == {
        "spec": {"unschedulable": True},
        "metadata": {"annotations": {CORDON_ANNOTATION: "gpufleet[case:3] xid 79"}},
    }
    seen = driver.node_status("gpu-a")
    assert (
        not seen.schedulable and seen.native_state == "Ready,SchedulingDisabled" and seen.extra["owner"] == "gpufleet"
    )
    driver.uncordon("gpu-a", "false alarm")
    node = api.fake.nodes["gpu-a"]
    assert node["spec"]["unschedulable"] is False and CORDON_ANNOTATION not in node["metadata"]["annotations"]
    assert driver.node_status("gpu-a").schedulable


def test_a_node_cordoned_by_someone_else_is_uncordoned_only_with_an_override(
    driver: KubernetesDriver, api: FakeApiServer
) -> None:
    node = api.fake.nodes["gpu-b"]
    node["spec"]["unschedulable"] = True
    node["metadata"]["managedFields"] = [{"manager": "kubectl-cordon", "fieldsV1": {"f:spec": {"f:unschedulable": {}}}}]
    driver.cordon("gpu-b", "gpufleet[case:4] quarantine")
    assert CORDON_ANNOTATION not in node["metadata"]["annotations"]
    seen = driver.node_status("gpu-b")
    assert seen.extra["owner"] == "other" and seen.extra["reason_user"] == "kubectl-cordon"
    with pytest.raises(HeldByOthers, match="kubectl-cordon"):
        driver.uncordon("gpu-b", "looks fine")
    driver.uncordon("gpu-b", "agreed with the on-call", override=True)
    assert node["spec"]["unschedulable"] is False


def test_drain_evicts_skips_daemonset_and_mirror_pods_and_waits_on_a_budget(
    driver: KubernetesDriver, api: FakeApiServer
) -> None:
    fake = api.fake
    fake.add_pod("gpu-a", "trainer-0", "team-a")
    fake.add_pod("gpu-a", "db-0", "team-b", owner="StatefulSet")
    fake.add_pod("gpu-a", "dcgm-exporter-x", "gpu-operator", owner="DaemonSet")
    fake.add_pod(
        "gpu-a", "kube-proxy-gpu-a", "kube-system", owner="Node", annotations={"kubernetes.io/config.mirror": "abc"}
    )
    fake.add_pod("gpu-b", "elsewhere", "team-a")
    fake.pdb_blocked.add(("team-b", "db-0"))

    status = driver.drain("gpu-a", "gpufleet[maint:5] firmware", FAR)
    evictions = [r for r in fake.requests if r.method == "POST"]
    assert sorted(r.path for r in evictions) == [
        "/api/v1/namespaces/team-a/pods/trainer-0/eviction",
        "/api/v1/namespaces/team-b/pods/db-0/eviction",
    ]
    body = next(r.body for r in evictions if r.path.endswith("trainer-0/eviction"))
    assert body["apiVersion"] == "policy/v1" and body["kind"] == "Eviction"
    assert body["metadata"] == {"name": "trainer-0", "namespace": "team-a"}
    listing = next(r for r in fake.requests if r.path == "/api/v1/pods")
    assert listing.query == {"fieldSelector": ["spec.nodeName=gpu-a"]}
    assert {(w.id, w.kind) for w in status.remaining} == {
        ("team-a/trainer-0", "pod:terminating"),
        ("team-b/db-0", "pod:pdb-blocked"),
    }
    assert not status.forced

    fake.finish_terminating()
    status = driver.drain("gpu-a", "gpufleet[maint:5] firmware", FAR)
    assert [(w.id, w.kind) for w in status.remaining] == [("team-b/db-0", "pod:pdb-blocked")]

    fake.pdb_blocked.clear()
    status = driver.drain("gpu-a", "gpufleet[maint:5] firmware", FAR)
    fake.finish_terminating()
    assert driver.drain("gpu-a", "gpufleet[maint:5] firmware", FAR).complete
    assert ("gpu-operator", "dcgm-exporter-x") in fake.pods and ("kube-system", "kube-proxy-gpu-a") in fake.pods


def test_past_the_deadline_a_budget_blocked_pod_is_deleted(driver: KubernetesDriver, api: FakeApiServer) -> None:
    api.fake.add_pod("gpu-a", "db-0", "team-b", owner="StatefulSet")
    api.fake.pdb_blocked.add(("team-b", "db-0"))
    status = driver.drain("gpu-a", "gpufleet[case:8] xid 48", NOW - timedelta(seconds=1))
    assert [w.id for w in status.forced] == ["team-b/db-0"]
    deletes = [r for r in api.fake.requests if r.method == "DELETE"]
    assert [r.path for r in deletes] == ["/api/v1/namespaces/team-b/pods/db-0"]
    api.fake.finish_terminating()
    assert driver.drain("gpu-a", "gpufleet[case:8] xid 48", NOW - timedelta(seconds=1)).complete


def test_the_maintenance_taint_is_added_once_and_removed_keeping_other_taints(
    driver: KubernetesDriver, api: FakeApiServer
) -> None:
    node = api.fake.nodes["gpu-a"]
    node["spec"]["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    driver.set_maintenance_taint("gpu-a", "gpufleet[maint:12] BIOS update")
    driver.set_maintenance_taint("gpu-a", "gpufleet[maint:12] BIOS update")
    assert node["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
        {"key": MAINTENANCE_TAINT, "value": "maint-12", "effect": "NoSchedule"},
    ]
    patch = next(r for r in api.fake.requests if r.method == "PATCH")
    assert patch.body["metadata"]["resourceVersion"]  # replaced under a precondition, so a concurrent taint survives
    assert MAINTENANCE_TAINT in {t.key for t in driver.node_status("gpu-a").taints}
    driver.clear_maintenance_taint("gpu-a")
    driver.clear_maintenance_taint("gpu-a")
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]


def test_a_taint_update_racing_another_writer_is_retried_and_keeps_their_taint(
    driver: KubernetesDriver, api: FakeApiServer
) -> None:
    api.fake.patch_races = 1
    driver.set_maintenance_taint("gpu-a", "gpufleet[maint:12] x")
    keys = [t["key"] for t in api.fake.nodes["gpu-a"]["spec"]["taints"]]
    assert keys == ["other.io/hold", MAINTENANCE_TAINT]
    assert len([r for r in api.fake.requests if r.method == "PATCH"]) == 2


def test_conditions_from_node_problem_detector_and_gpu_operator_labels_are_read(
    driver: KubernetesDriver, api: FakeApiServer
) -> None:
    api.fake.nodes["gpu-a"]["status"]["conditions"] += [
        {"type": "KernelDeadlock", "status": "False", "reason": "KernelHasNoDeadlock"},
        {"type": "GPUProblem", "status": "True", "reason": "XidError79", "message": "GPU has fallen off the bus"},
    ]
    seen = driver.node_status("gpu-a")
    assert seen.extra["condition/Ready"] == "True"
    assert seen.extra["condition/GPUProblem"] == "True (XidError79)"
    assert seen.extra["condition/KernelDeadlock"] == "False (KernelHasNoDeadlock)"
    assert seen.extra["label/nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert seen.extra["label/nvidia.com/gpu.count"] == "8"


def test_a_node_that_stopped_reporting_is_unreachable(driver: KubernetesDriver, api: FakeApiServer) -> None:
    api.fake.nodes["gpu-b"]["status"]["conditions"][0].update(status="Unknown", reason="NodeStatusUnknown")
    seen = driver.node_status("gpu-b")
    assert not seen.power.reachable and not seen.schedulable and seen.native_state == "Unknown"


def test_a_reboot_is_asked_through_annotations_and_seen_done_when_the_boot_id_changes(
    driver: KubernetesDriver, api: FakeApiServer
) -> None:
    driver.reboot("gpu-a", "gpufleet[case:9] reboot")
    driver.reboot("gpu-a", "gpufleet[case:9] reboot")
    assert len([r for r in api.fake.requests if r.method == "PATCH"]) == 1
    assert driver.power_status("gpu-a").reboot_pending
    api.fake.nodes["gpu-a"]["status"]["nodeInfo"]["bootID"] = "boot-2"
    assert not driver.power_status("gpu-a").reboot_pending


def test_errors_are_named_and_say_whether_retrying_helps(driver: KubernetesDriver, api: FakeApiServer) -> None:
    with pytest.raises(UnknownNode, match="gpu-zz"):
        driver.node_status("gpu-zz")
    api.fake.fail_next = [503]
    with pytest.raises(DriverError, match="503") as failed:
        driver.cordon("gpu-a", "x")
    assert failed.value.retryable


def test_an_api_server_that_does_not_answer_is_a_retryable_error(tmp_path: Path) -> None:
    server = FakeApiServer()
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    server.stop()
    driver = KubernetesDriver(
        "gone", KubernetesSettings(kubeconfig=str(kubeconfig), timeout_seconds=2), ManualClock(NOW)
    )
    with pytest.raises(DriverError, match="did not answer") as failed:
        driver.node_status("gpu-a")
    assert failed.value.retryable


def test_the_token_never_reaches_errors_or_logs(
    api: FakeApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", token="wrong-" + TOKEN)
    driver = KubernetesDriver("west", KubernetesSettings(kubeconfig=str(kubeconfig)), ManualClock(NOW))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DriverError) as failed:
        driver.cordon("gpu-a", "x")
    assert "401" in str(failed.value)
    assert TOKEN not in str(failed.value) and TOKEN not in caplog.text


def test_check_reports_the_version_and_the_nodes(driver: KubernetesDriver) -> None:
    seen = driver.check()
    assert seen["reachable"] and seen["version"] == "v1.31.4" and seen["nodes"] == 2
    assert seen["states"] == {"Ready": 2}
