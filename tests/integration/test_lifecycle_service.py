"""Transitions through the service: one transaction with its event, optimistic concurrency, roles."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import pytest
from sqlalchemy import select, text

from gpufleet.adapters.db.models import Node, NodeEvent
from gpufleet.domain.lifecycle import InvalidTransition
from gpufleet.fleet.inventory import chassis_id, import_nodes
from gpufleet.fleet.lifecycle import apply_transition, transition
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound, VersionConflict
from tests.factories import OPERATOR, VIEWER, seed_reference

ROWS = """supplier,serial,hostname,sku,cluster,tenant
acme-cloud,SN1,gpu-1,H100-SXM-80GB,east-frontier,
acme-cloud,SN2,gpu-2,H100-SXM-80GB,east-frontier,tenant-a
"""


@pytest.fixture
def fleet(db: Database) -> Database:
    seed_reference(db)
    assert import_nodes(db, ROWS, "rows.csv", OPERATOR).applied
    return db


def test_transition_writes_state_and_event_together(fleet: Database, clock: ManualClock) -> None:
    clock.advance(timedelta(minutes=5))
    actor = Actor(name="alice", role=Role.OPERATOR, correlation_id="corr-1")
    result = transition(fleet, "gpu-1", "provision", "rack and stack done", actor)
    assert (result.from_state, result.to_state, result.version) == ("received", "provisioning", 2)
    with fleet.reader() as s:
        node = s.get(Node, chassis_id("acme-cloud", "SN1"))
        assert node is not None and node.state == "provisioning" and node.state_since == clock.now()
        event = s.execute(select(NodeEvent).where(NodeEvent.id == result.event_id)).scalar_one()
        assert (event.actor, event.reason, event.correlation_id) == ("alice", "rack and stack done", "corr-1")
        assert (event.from_state, event.to_state, event.event) == ("received", "provisioning", "provision")


def test_node_is_found_by_serial_hostname_or_chassis_id(fleet: Database) -> None:
    transition(fleet, "SN1", "provision", "by serial", OPERATOR)
    transition(fleet, chassis_id("acme-cloud", "SN1"), "provisioned", "by id", OPERATOR)
    result = transition(fleet, "gpu-1", "quarantine", "by hostname", OPERATOR)
    assert result.to_state == "quarantined"
    with pytest.raises(NotFound):
        transition(fleet, "nope", "provision", "x", OPERATOR)


def test_invalid_event_changes_nothing_and_names_allowed_events(fleet: Database) -> None:
    with pytest.raises(InvalidTransition) as info:
        transition(fleet, "gpu-1", "admit", "skip ahead", OPERATOR)
    assert info.value.allowed == ["decommission", "provision"]
    with fleet.reader() as s:
        assert s.execute(select(NodeEvent).where(NodeEvent.kind == "transition")).first() is None


def test_stale_version_is_refused(fleet: Database) -> None:
    transition(fleet, "gpu-1", "provision", "first", OPERATOR, expected_version=1)
    with pytest.raises(VersionConflict) as info:
        transition(fleet, "gpu-1", "provisioned", "stale", OPERATOR, expected_version=1)
    assert info.value.actual == 2


def test_reason_and_role_are_required(fleet: Database) -> None:
    with pytest.raises(InvalidInput, match="reason"):
        transition(fleet, "gpu-1", "provision", "  ", OPERATOR)
    with pytest.raises(Forbidden):
        transition(fleet, "gpu-1", "provision", "viewer tries", VIEWER)


def test_decommissioning_an_allocated_node_needs_force(fleet: Database) -> None:
    for event in ("provision", "provisioned", "quarantine", "drain", "drained"):
        transition(fleet, "gpu-2", event, "walk", OPERATOR)
    with pytest.raises(InvalidTransition, match="allocated"):
        transition(fleet, "gpu-2", "decommission", "retire", OPERATOR)
    assert (
        transition(fleet, "gpu-2", "decommission", "retire anyway", OPERATOR, force=True).to_state == "decommissioning"
    )


def test_one_statement_and_checked_transitions_each_move_the_node_exactly_once(fleet: Database) -> None:
    # Unguarded events take the one-statement path (on SQLite the event row applies the change through a trigger);
    # a forced, guarded decommission takes the checked path, which writes the node itself before its event.
    walk = ("provision", "provisioned", "quarantine", "drain", "drained")
    for event in walk:
        transition(fleet, "gpu-2", event, "walk", OPERATOR)
    transition(fleet, "gpu-2", "decommission", "retire", OPERATOR, force=True)
    node_id = chassis_id("acme-cloud", "SN2")
    with fleet.reader() as s:
        node = s.get(Node, node_id)
        events = list(
            s.scalars(
                select(NodeEvent)
                .where(NodeEvent.node_id == node_id, NodeEvent.kind == "transition")
                .order_by(NodeEvent.id)
            )
        )
        assert node is not None
        assert [e.event for e in events] == [*walk, "decommission"]
        assert [e.version for e in events] == list(range(2, 2 + len(events)))
        assert (node.version, node.state, node.previous_state) == (1 + len(events), "decommissioning", "drained")
        assert all(later.from_state == earlier.to_state for earlier, later in pairwise(events))


def test_sqlite_transitions_rely_on_the_trigger_that_moves_the_node(fleet: Database) -> None:
    # fleet.store writes a SQLite transition as one event INSERT and leaves moving the node row to this trigger.
    if fleet.dialect != "sqlite":
        pytest.skip("PostgreSQL moves the node and writes the event in one data-modifying CTE, without a trigger")
    node_id = chassis_id("acme-cloud", "SN1")
    with fleet.reader() as s:
        trigger = s.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'node_events_apply_transition'")
        ).scalar_one()
    with fleet.transaction() as s:
        s.execute(text("DROP TRIGGER node_events_apply_transition"))
    try:
        transition(fleet, "gpu-1", "provision", "without the trigger", OPERATOR)
        with fleet.reader() as s:
            node = s.get(Node, node_id)
            assert node is not None and node.state == "received"  # the event alone does not move the node
    finally:
        with fleet.transaction() as s:
            s.execute(text("DELETE FROM node_events WHERE reason = 'without the trigger'"))
            s.execute(text(trigger))


def test_a_stale_one_statement_transition_writes_no_event(fleet: Database) -> None:
    transition(fleet, "gpu-1", "provision", "first", OPERATOR, expected_version=1)
    with pytest.raises(VersionConflict):
        transition(fleet, "gpu-1", "provisioned", "stale", OPERATOR, expected_version=1)
    with pytest.raises(InvalidTransition):
        transition(fleet, "gpu-1", "release", "not from provisioning", OPERATOR)
    with fleet.reader() as s:
        kinds = s.execute(
            select(NodeEvent.event, NodeEvent.version).where(
                NodeEvent.node_id == chassis_id("acme-cloud", "SN1"), NodeEvent.kind == "transition"
            )
        ).all()
        node = s.get(Node, chassis_id("acme-cloud", "SN1"))
        assert [tuple(k) for k in kinds] == [("provision", 2)]
        assert node is not None and (node.state, node.version) == ("provisioning", 2)


def test_event_data_is_stored_when_given_and_empty_otherwise(fleet: Database, clock: ManualClock) -> None:
    node_id = chassis_id("acme-cloud", "SN1")
    with fleet.transaction() as session:
        with_data = apply_transition(session, node_id, "provision", "racked", OPERATOR, clock.now(), data={"ticket": 7})
        without = apply_transition(session, node_id, "provisioned", "imaged", OPERATOR, clock.now())
    with fleet.reader() as s:
        stored = dict(s.execute(select(NodeEvent.id, NodeEvent.data).where(NodeEvent.node_id == node_id)).all())
    assert stored[with_data.event_id] == {"ticket": 7}
    assert stored[without.event_id] == {}
