"""Validation paths after remediation: a repair that changed no hardware keeps the fast track; hands do not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gpufleet.fleet.lifecycle import apply_transition
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.database import Database
from gpufleet.validation.policy import plan_validation
from tests.factories import OPERATOR, VIEWER
from tests.integration.remediation_support import node_id, seed_remediation_fleet


@pytest.fixture
def fleet(db: Database) -> Database:
    seed_remediation_fleet(db, east=3, west=0)
    return db


def walk(db: Database, clock: ManualClock, serial: str, quarantine: dict[str, Any], repair: dict[str, Any]) -> None:
    steps = [
        ("quarantine", quarantine),
        ("drain", {}),
        ("drained", {}),
        ("diagnose", {}),
        ("repair", repair),
        ("repaired", repair),
    ]
    for event, data in steps:
        clock.advance(timedelta(minutes=2))
        with db.transaction() as session:
            apply_transition(session, node_id(serial), event, "remediation", OPERATOR, clock.now(), data=data)


def path(db: Database, serial: str) -> str:
    return plan_validation(db, serial, VIEWER).decision.path.value


def test_a_software_repair_after_a_fault_keeps_the_fast_track(fleet: Database, clock: ManualClock) -> None:
    walk(fleet, clock, "E1", {"left_healthy": True}, {"action": "reset_gpu", "hardware_change": False})
    plan = plan_validation(fleet, "E1", VIEWER)
    assert plan.decision.path.value == "fast_track" and plan.decision.suite == "quick"


def test_a_repair_by_hands_takes_the_slow_path(fleet: Database, clock: ManualClock) -> None:
    walk(fleet, clock, "E2", {"left_healthy": True}, {"action": "inspect", "hardware_change": True})
    assert path(fleet, "E2") == "slow_path"


def test_a_fault_exit_not_marked_by_remediation_still_takes_the_slow_path(fleet: Database, clock: ManualClock) -> None:
    walk(fleet, clock, "E3", {}, {"action": "reboot"})
    assert path(fleet, "E3") == "slow_path"


def test_the_fast_track_still_expires_after_its_window(fleet: Database, clock: ManualClock) -> None:
    walk(fleet, clock, "E1", {"left_healthy": True}, {"action": "reboot", "hardware_change": False})
    clock.advance(timedelta(days=31))
    assert path(fleet, "E1") == "slow_path"
