"""The lifecycle admits a node to service only after a passing validation attempt; and which path a node takes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gpufleet.fleet.lifecycle import transition
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.database import Database
from gpufleet.platform.errors import InvalidTransition
from gpufleet.validation.bans import ban_node
from gpufleet.validation.ingest import ingest_records
from gpufleet.validation.policy import plan_validation, set_policy
from tests.factories import OPERATOR, VIEWER
from tests.integration.validation_support import attempt_records, seed_fleet


@pytest.fixture
def fleet(db: Database) -> Database:
    seed_fleet(db)
    return db


def admit(db: Database, serial: str) -> str:
    return transition(db, serial, "admit", "validation passed", OPERATOR).to_state


def test_a_node_without_a_passing_attempt_is_not_admitted(fleet: Database, clock: ManualClock) -> None:
    with pytest.raises(InvalidTransition) as info:
        admit(fleet, "E1")
    assert "no passing validation attempt" in str(info.value)
    ingest_records(fleet, attempt_records("E1", 1, 3, first_fail=2, start=clock.now()), OPERATOR)
    with pytest.raises(InvalidTransition):
        admit(fleet, "E1")
    ingest_records(fleet, attempt_records("E1", 2, 3, start=clock.now() + timedelta(hours=3)), OPERATOR)
    assert admit(fleet, "E1") == "in_service"


def test_a_pass_from_before_the_node_came_back_to_validation_does_not_count(
    fleet: Database, clock: ManualClock
) -> None:
    ingest_records(fleet, attempt_records("E1", 1, 3, start=clock.now()), OPERATOR)
    clock.advance(timedelta(hours=4))
    assert admit(fleet, "E1") == "in_service"
    for event in ("quarantine", "drain", "drained", "diagnose", "diagnosed_healthy"):
        clock.advance(timedelta(minutes=5))
        transition(fleet, "E1", event, "fault", OPERATOR)
    with pytest.raises(InvalidTransition):
        admit(fleet, "E1")
    assert transition(fleet, "E1", "admit", "accepted risk", OPERATOR, force=True).to_state == "in_service"


def test_an_unfinished_attempt_or_one_in_another_cluster_does_not_admit(fleet: Database, clock: ManualClock) -> None:
    ingest_records(fleet, attempt_records("E1", 1, 3, start=clock.now())[:2], OPERATOR)
    with pytest.raises(InvalidTransition):
        admit(fleet, "E1")
    ingest_records(fleet, attempt_records("E2", 1, 3, start=clock.now(), cluster="west-fleet"), OPERATOR)
    with pytest.raises(InvalidTransition):
        admit(fleet, "E2")


def test_fast_track_slow_path_and_canary(fleet: Database, clock: ManualClock) -> None:
    new = plan_validation(fleet, "E1", VIEWER)
    assert (new.decision.path.value, new.decision.passes, new.attempt) == ("slow_path", 12, 1)
    assert new.criteria is not None and new.criteria.minimums["nccl_allreduce_busbw_gbps"] == 460
    set_policy(fleet, "east-frontier", {"slow_path_passes": 3}, OPERATOR)
    ingest_records(fleet, attempt_records("E1", 1, 3, start=clock.now()), OPERATOR)
    clock.advance(timedelta(hours=4))
    admit(fleet, "E1")
    for event in ("drain", "drained", "start_maintenance", "maintenance_done"):
        clock.advance(timedelta(hours=1))
        transition(fleet, "E1", event, "planned maintenance", OPERATOR)
    back = plan_validation(fleet, "E1", VIEWER)
    assert (back.decision.path.value, back.decision.suite, back.decision.passes, back.attempt) == (
        "fast_track",
        "quick",
        1,
        2,
    )
    clock.advance(timedelta(days=31))
    assert plan_validation(fleet, "E1", VIEWER).decision.path.value == "slow_path"

    set_policy(fleet, "east-frontier", {"config_version": "v2"}, OPERATOR)
    canary = plan_validation(fleet, "E2", VIEWER)
    assert canary.decision.path.value == "canary" and canary.config_version == "v2"
    ingest_records(
        fleet, attempt_records("E2", 1, 3, start=clock.now(), path="canary", config_version="v2")[:1], OPERATOR
    )
    waiting = plan_validation(fleet, "E3", VIEWER)
    assert waiting.decision.wait_for is not None and waiting.decision.path.value == "slow_path"
    ingest_records(fleet, attempt_records("E2", 1, 3, start=clock.now(), path="canary", config_version="v2"), OPERATOR)
    after = plan_validation(fleet, "E3", VIEWER)
    assert after.decision.wait_for is None and after.decision.path.value == "slow_path"


def test_a_ban_quarantines_a_serving_node_once_and_rules_out_the_fast_track(
    fleet: Database, clock: ManualClock
) -> None:
    for serial in ("E1", "E2"):
        ingest_records(fleet, attempt_records(serial, 1, 12, start=clock.now()), OPERATOR)
    clock.advance(timedelta(hours=13))
    admit(fleet, "E1")
    admit(fleet, "E2")
    clock.advance(timedelta(hours=1))
    ban = ban_node(fleet, "E1", "xid 79 in service", OPERATOR, source="health")
    assert ban.created and ban.quarantined
    again = ban_node(fleet, "E1", "xid 79 in service", OPERATOR, source="health")
    assert (again.created, again.id) == (False, ban.id)
    # E2 leaves service for planned work (a healthy exit), and a ban is then backfilled for an earlier fault report.
    transition(fleet, "E2", "drain", "planned", OPERATOR)
    clock.advance(timedelta(hours=1))
    late = ban_node(fleet, "E2", "fault reported late", OPERATOR, source="tenant", at=clock.now())
    assert late.created and not late.quarantined
    plan = plan_validation(fleet, "E2", VIEWER)
    assert plan.decision.path.value == "slow_path" and "banned" in plan.decision.reason
