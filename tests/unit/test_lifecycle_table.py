"""The declared lifecycle table: complete, consistent, and enforcing its own rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gpufleet.domain import diagram
from gpufleet.domain.lifecycle import (
    FINAL_STATES,
    STABLE_STATES,
    STATE_POLICIES,
    TRANSITIONS,
    InvalidTransition,
    NodeState,
    TransitionContext,
    allowed_events,
    is_overdue,
    next_state,
    parse_state,
)

REQUIRED_STATES = {
    "received",
    "provisioning",
    "validating",
    "in_service",
    "quarantined",
    "draining",
    "drained",
    "diagnosing",
    "repairing",
    "awaiting_supplier",
    "maintenance",
    "decommissioning",
    "decommissioned",
}


def test_the_issue_named_states_all_exist() -> None:
    assert {s.value for s in NodeState} >= REQUIRED_STATES


def test_every_non_final_state_declares_an_action_owner_and_timer_unless_stable() -> None:
    for state in NodeState:
        policy = STATE_POLICIES[state]
        assert policy.action and policy.owner
        if state in FINAL_STATES or state in STABLE_STATES:
            assert policy.time_limit is None
        else:
            assert policy.time_limit is not None and policy.time_limit > timedelta(0), state


def test_every_non_final_state_has_a_way_out_and_final_states_have_none() -> None:
    for state in NodeState:
        if state in FINAL_STATES:
            assert allowed_events(state) == []
        else:
            assert allowed_events(state), f"{state} is a dead end"


def test_every_state_is_reachable_from_received() -> None:
    reached = {NodeState.RECEIVED}
    frontier = [NodeState.RECEIVED]
    while frontier:
        state = frontier.pop()
        for t in TRANSITIONS:
            if t.source == state and t.target not in reached:
                reached.add(t.target)
                frontier.append(t.target)
    assert reached == set(NodeState)


def test_no_event_is_ambiguous_from_one_state() -> None:
    pairs = [(t.source, t.event) for t in TRANSITIONS]
    assert len(pairs) == len(set(pairs))


def test_a_valid_event_moves_the_node() -> None:
    assert next_state(NodeState.RECEIVED, "provision") == NodeState.PROVISIONING
    assert next_state(NodeState.QUARANTINED, "drain") == NodeState.DRAINING


def test_an_invalid_event_names_the_allowed_ones() -> None:
    with pytest.raises(InvalidTransition) as info:
        next_state(NodeState.IN_SERVICE, "admit")
    assert info.value.allowed == ["drain", "quarantine"]
    assert "allowed: drain, quarantine" in str(info.value)


def test_a_guard_refuses_decommissioning_an_allocated_node_unless_forced() -> None:
    busy = TransitionContext(has_active_allocation=True)
    with pytest.raises(InvalidTransition, match="allocated to a tenant"):
        next_state(NodeState.DRAINED, "decommission", busy)
    forced = TransitionContext(has_active_allocation=True, forced=True)
    assert next_state(NodeState.DRAINED, "decommission", forced) == NodeState.DECOMMISSIONING


def test_overdue_uses_the_state_time_limit() -> None:
    entered = datetime(2026, 1, 1, tzinfo=UTC)
    assert not is_overdue(NodeState.DRAINING, entered, entered + timedelta(hours=3, minutes=59))
    assert is_overdue(NodeState.DRAINING, entered, entered + timedelta(hours=4))
    assert not is_overdue(NodeState.IN_SERVICE, entered, entered + timedelta(days=400))


def test_parse_state_lists_valid_names_on_error() -> None:
    assert parse_state(" In_Service ") == NodeState.IN_SERVICE
    with pytest.raises(ValueError, match="expected one of: received"):
        parse_state("flying")


def test_diagram_is_generated_from_every_transition() -> None:
    text = diagram.mermaid()
    for t in TRANSITIONS:
        assert f"{t.source.value} --> {t.target.value}: {t.event}" in text
    assert "validating --> in_service: admit [validation_passed]" in text
    assert diagram.dot().count("->") == len(TRANSITIONS)
