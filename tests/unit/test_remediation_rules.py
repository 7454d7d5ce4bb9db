"""The case state machine, its time limits, the escalation ladder and the blast-radius arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gpufleet.domain.blast_radius import breaker_trip_reason, budget_limit, check_budgets
from gpufleet.domain.remediation import (
    CASE_STATE_POLICIES,
    CASE_TRANSITIONS,
    FINAL_CASE_STATES,
    OPEN_CASE_STATES,
    CaseState,
    InvalidCaseTransition,
    case_deadline,
    kind_after,
    next_case_state,
    next_repair,
    percentile,
)
from gpufleet.domain.xid_policy import Action, Kind, Settings
from gpufleet.remediation.policy import base_policy

POLICY = base_policy()
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_the_happy_path_and_both_exits_are_in_the_table() -> None:
    state = CaseState.DETECTED
    for event in ("quarantine", "drain", "drained", "repair", "repaired", "admit"):
        state = next_case_state(state, event)
    assert state is CaseState.REINTEGRATED
    assert next_case_state(CaseState.REPAIRING, "escalate") is CaseState.ESCALATED
    assert next_case_state(CaseState.ESCALATED, "supplier_returned") is CaseState.VALIDATING
    assert next_case_state(CaseState.DIAGNOSING, "need_human") is CaseState.NEEDS_HUMAN
    assert next_case_state(CaseState.VALIDATING, "validation_failed") is CaseState.DIAGNOSING


def test_every_open_state_can_reach_a_person_and_be_closed_and_final_states_take_nothing() -> None:
    events = {(t.source, t.event) for t in CASE_TRANSITIONS}
    for state in OPEN_CASE_STATES:
        assert (state, "close") in events and (state, "need_human") in events, state
        assert state in CASE_STATE_POLICIES
    for state in FINAL_CASE_STATES:
        with pytest.raises(InvalidCaseTransition, match="closed"):
            next_case_state(state, "close")
    with pytest.raises(InvalidCaseTransition, match="allowed: "):
        next_case_state(CaseState.DETECTED, "admit")


def test_every_open_state_has_a_time_limit_so_nothing_waits_forever() -> None:
    settings = Settings()
    for state in OPEN_CASE_STATES:
        due = case_deadline(state, NOW, settings)
        assert due is not None and due > NOW, state
    assert case_deadline(CaseState.ESCALATED, NOW, settings) == NOW + timedelta(days=14)
    assert case_deadline(CaseState.REPAIRING, NOW, settings, timedelta(minutes=15)) == NOW + timedelta(minutes=15)
    assert case_deadline(CaseState.REINTEGRATED, NOW, settings) is None


def test_the_ladder_starts_where_the_evidence_or_diagnostics_point() -> None:
    first = next_repair(POLICY, Action.RESTART_APP)
    assert (first.action, first.attempt, first.wait) == (Action.RESTART_APP, 1, timedelta(0))
    floor = next_repair(POLICY, Action.RESTART_APP, floor=Action.REBOOT)
    assert floor.action is Action.REBOOT


def test_a_failed_rung_is_retried_with_backoff_then_the_next_rung_is_tried() -> None:
    retry = next_repair(POLICY, Action.RESET_GPU, last=Action.RESET_GPU, attempts=1)
    assert (retry.action, retry.attempt, retry.wait) == (Action.RESET_GPU, 2, timedelta(seconds=60))
    climb = next_repair(POLICY, Action.RESET_GPU, last=Action.RESET_GPU, attempts=2)
    assert (climb.action, climb.attempt, climb.wait) == (Action.REBOOT, 1, timedelta(0))
    chain = [Action.RESTART_APP]
    last, attempts = Action.RESTART_APP, 1
    while True:
        choice = next_repair(POLICY, Action.RESTART_APP, last=last, attempts=attempts)
        if choice.action is not last:
            chain.append(choice.action)
        if choice.to_supplier:
            break
        last, attempts = choice.action, choice.attempt
    assert chain == [Action.RESTART_APP, Action.RESET_GPU, Action.REBOOT, Action.REIMAGE, Action.RMA]


def test_stronger_evidence_after_a_failure_skips_ahead() -> None:
    choice = next_repair(POLICY, Action.RESTART_APP, floor=Action.REIMAGE, last=Action.RESTART_APP, attempts=1)
    assert (choice.action, choice.attempt) == (Action.REIMAGE, 1)


def test_a_part_that_resets_do_not_clear_goes_to_a_person() -> None:
    choice = next_repair(POLICY, Action.RESET_GPU, floor=Action.RESET_GPU, last=Action.RESET_GPU, attempts=2)
    assert choice.needs_human and "reseat" in choice.reason
    rebooted = next_repair(POLICY, Action.REBOOT, floor=Action.RESET_GPU, last=Action.REBOOT, attempts=2)
    assert rebooted.needs_human
    again = next_repair(POLICY, Action.RMA, last=Action.RMA, attempts=1)
    assert again.to_supplier and again.attempt == 2  # a unit back from the supplier still broken goes back once
    after_rma = next_repair(POLICY, Action.RMA, last=Action.RMA, attempts=2)
    assert after_rma.needs_human


def test_a_case_at_the_supplier_or_under_hands_was_hardware() -> None:
    assert kind_after(Kind.SOFTWARE, Action.RMA) is Kind.HARDWARE
    assert kind_after(Kind.WORKLOAD, Action.INSPECT) is Kind.HARDWARE
    assert kind_after(Kind.SOFTWARE, Action.REBOOT) is Kind.SOFTWARE


def test_budgets_allow_a_fraction_but_never_fewer_than_the_minimum() -> None:
    assert budget_limit(0.10, 3, 1000) == 100
    assert budget_limit(0.10, 3, 20) == 3
    assert budget_limit(0.10, 3, 2) == 2
    settings = Settings()
    assert check_budgets(settings, "c", 1000, 99).allowed
    refused = check_budgets(settings, "c", 1000, 100)
    assert not refused.allowed and "cluster c" in refused.reason and "100" in refused.reason
    domain = check_budgets(settings, "c", 1000, 5, "nvl-1", 18, 4)
    assert not domain.allowed and "NVLink domain nvl-1" in domain.reason
    assert check_budgets(settings, "c", 1000, 5, "nvl-1", 18, 3).allowed


def test_the_breaker_trips_at_its_threshold_and_says_why() -> None:
    settings = Settings()
    assert breaker_trip_reason(settings, "c", 1000, 199) is None
    reason = breaker_trip_reason(settings, "c", 1000, 200)
    assert reason is not None and "200 case(s)" in reason and "threshold 200" in reason
    assert breaker_trip_reason(settings, "small", 20, 9) is None
    assert breaker_trip_reason(settings, "small", 20, 10) is not None


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.9) == 5.0
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 0.5) == 5.0
    assert percentile(values, 0.9) == 9.0
