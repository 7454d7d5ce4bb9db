"""Validation rules in the domain: path selection, policy changes, pass criteria and result records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gpufleet.domain.lifecycle import InvalidTransition, NodeState, TransitionContext, next_state
from gpufleet.domain.validation import (
    SUITES,
    Criteria,
    HistoryEvent,
    NodeFacts,
    PolicyError,
    ValidationPath,
    ValidationPolicy,
    change_policy,
    criteria_failures,
    hardware_changed_since,
    last_healthy_in_cluster,
    read_record,
    select_path,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = ValidationPolicy()


def facts(**kw: object) -> NodeFacts:
    base: dict[str, object] = {
        "last_healthy": NOW - timedelta(days=3),
        "hardware_changed": False,
        "banned_since_healthy": False,
        "canary_needed": False,
    }
    base.update(kw)
    return NodeFacts(**base)  # type: ignore[arg-type]


def test_recently_healthy_unchanged_node_is_fast_tracked_with_the_short_suite() -> None:
    decision = select_path(POLICY, facts(), NOW)
    assert decision.path is ValidationPath.FAST_TRACK
    assert (decision.suite, decision.passes) == ("quick", 1)
    assert SUITES[decision.suite].checks == ("dcgm_r2",)


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"last_healthy": None}, "new to this cluster"),
        ({"hardware_changed": True}, "hardware changed"),
        ({"banned_since_healthy": True}, "banned"),
        ({"last_healthy": NOW - timedelta(days=31)}, "more than 30 days"),
    ],
)
def test_new_changed_banned_or_stale_hardware_takes_the_slow_path(kw: dict[str, object], why: str) -> None:
    decision = select_path(POLICY, facts(**kw), NOW)
    assert decision.path is ValidationPath.SLOW_PATH
    assert (decision.suite, decision.passes) == ("full", 12)
    assert why in decision.reason
    assert set(SUITES["full"].checks) == {"dcgm_r3", "nccl_allreduce_busbw_gbps", "ib_bw_gbps", "gpu_burn"}


def test_fast_track_window_is_the_policys() -> None:
    policy = change_policy(POLICY, {"fast_track_days": 7})
    assert select_path(policy, facts(last_healthy=NOW - timedelta(days=8)), NOW).path is ValidationPath.SLOW_PATH
    assert select_path(policy, facts(last_healthy=NOW - timedelta(days=6)), NOW).path is ValidationPath.FAST_TRACK


def test_configuration_change_sends_one_canary_first_and_the_others_wait_for_it() -> None:
    policy = change_policy(POLICY, {"config_version": "v2"})
    canary = select_path(policy, facts(canary_needed=True), NOW)
    assert canary.path is ValidationPath.CANARY and canary.passes == 12 and canary.wait_for is None
    other = select_path(policy, facts(canary_needed=True, canary_elsewhere="ch-1"), NOW)
    assert other.path is ValidationPath.FAST_TRACK and other.wait_for == "ch-1"
    assert "canary ch-1" in other.reason


def test_policy_changes_are_checked_by_field() -> None:
    assert change_policy(POLICY, {"slow_path_passes": "10"}).slow_path_passes == 10
    for changes, name in (
        ({"slow_path_passes": 0}, "slow_path_passes"),
        ({"fast_track_suite": "nope"}, "fast_track_suite"),
        ({"colour": "red"}, "colour"),
        ({"fast_track_days": True}, "fast_track_days"),
    ):
        with pytest.raises(PolicyError) as info:
            change_policy(POLICY, changes)
        assert info.value.field == name


def _event(days_ago: float, event: str, source: str, target: str, cluster: int = 1, **kw: object) -> HistoryEvent:
    return HistoryEvent(NOW - timedelta(days=days_ago), "transition", event, source, target, cluster, **kw)  # type: ignore[arg-type]


def test_last_healthy_is_a_planned_exit_in_this_cluster_only() -> None:
    drained = [_event(10, "admit", "validating", "in_service"), _event(5, "drain", "in_service", "draining")]
    assert last_healthy_in_cluster(drained, 1, NOW) == NOW - timedelta(days=5)
    assert last_healthy_in_cluster(drained, 2, NOW) is None
    faulted = [*drained, _event(4, "release", "quarantined", "in_service"), _event(2, "quarantine", "in_service", "x")]
    assert last_healthy_in_cluster(faulted, 1, NOW) is None
    serving = [*drained, _event(1, "admit", "validating", "in_service")]
    assert last_healthy_in_cluster(serving, 1, NOW) == NOW


def test_repair_or_gpu_swap_after_health_counts_as_a_hardware_change() -> None:
    since = NOW - timedelta(days=5)
    assert hardware_changed_since([_event(3, "repaired", "repairing", "validating")], since)
    assert not hardware_changed_since([_event(6, "repaired", "repairing", "validating")], since)
    swap = HistoryEvent(NOW - timedelta(days=1), "updated", None, "drained", "drained", 1, gpus_changed=True)
    assert hardware_changed_since([swap], since)


def test_criteria_fail_low_bandwidth_and_failed_verdicts() -> None:
    h100 = Criteria("H100", {"nccl_allreduce_busbw_gbps": 460, "ib_bw_gbps": 380})
    assert criteria_failures({"nccl_allreduce_busbw_gbps": 460, "ib_bw_gbps": 390, "dcgm_r3": "pass"}, h100) == []
    failures = criteria_failures({"nccl_allreduce_busbw_gbps": 410.5, "gpu_burn": False}, h100)
    assert any("nccl_allreduce_busbw_gbps 410.5 GB/s is under the H100 floor of 460" in f for f in failures)
    assert "gpu_burn failed" in failures
    assert criteria_failures({"nccl_allreduce_busbw_gbps": 10}, None) == []


GOOD = {
    "node": "n1",
    "cluster": "c1",
    "attempt": 1,
    "pass_number": 1,
    "suite": "full",
    "started_at": "2026-03-01T10:00:00Z",
    "finished_at": "2026-03-01T11:00:00+00:00",
    "result": "pass",
    "checks": {"dcgm_r3": "pass", "nccl_allreduce_busbw_gbps": 470.0},
}


def test_a_good_record_reads_with_utc_times_and_its_duration() -> None:
    record, errors = read_record(4, GOOD)
    assert errors == [] and record is not None
    assert record.started_at == datetime(2026, 3, 1, 10, tzinfo=UTC) and record.seconds == 3600


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"started_at": None}, "started_at"),
        ({"finished_at": ""}, "finished_at"),
        ({"finished_at": "yesterday"}, "finished_at"),
        ({"finished_at": "2026-03-01T09:00:00Z"}, "finished_at"),
        ({"result": "ok"}, "result"),
        ({"pass_number": 0}, "pass_number"),
        ({"attempt": "1"}, "attempt"),
        ({"suite": "quickest"}, "suite"),
        ({"checks": {"nccl_allreduce_busbw_gbps": "fast"}}, "checks.nccl_allreduce_busbw_gbps"),
        ({"checks": {"dcgm_r3": 3}}, "checks.dcgm_r3"),
        ({"color": "red"}, "color"),
        ({"passes_required": 2, "pass_number": 3}, "pass_number"),
    ],
)
def test_bad_records_name_the_line_and_field(change: dict[str, object], field: str) -> None:
    record, errors = read_record(7, {**GOOD, **change})
    assert record is None
    assert [(e.line, e.field) for e in errors][:1] == [(7, field)]


def test_admission_needs_a_passing_validation_unless_forced() -> None:
    with pytest.raises(InvalidTransition) as info:
        next_state(NodeState.VALIDATING, "admit", TransitionContext())
    assert "validation" in str(info.value)
    assert next_state(NodeState.VALIDATING, "admit", TransitionContext(validation_passed=True)) is NodeState.IN_SERVICE
    assert next_state(NodeState.VALIDATING, "admit", TransitionContext(forced=True)) is NodeState.IN_SERVICE
