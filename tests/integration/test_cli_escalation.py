"""Stuck nodes and their escalation: once per stay in a state, even with several runners at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from gpufleet.adapters.db.engine import make_engine
from gpufleet.adapters.db.models import NodeEvent
from gpufleet.fleet.escalation import escalate_overdue, find_stuck
from gpufleet.fleet.inventory import chassis_id, import_nodes
from gpufleet.fleet.lifecycle import transition
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden
from tests.factories import OPERATOR, VIEWER, seed_reference
from tests.integration.cli_support import Cli

HEADER = "supplier,serial,hostname,sku,cluster,state\n"


def seed(db: Database, states: dict[str, str]) -> None:
    seed_reference(db)
    rows = "".join(
        f"acme-cloud,{serial},host-{serial.lower()},H100-SXM-80GB,east-frontier,{state}\n"
        for serial, state in states.items()
    )
    report = import_nodes(db, HEADER + rows, "nodes.csv", OPERATOR)
    assert report.ok and report.applied


def escalations(db: Database, serial: str | None = None) -> int:
    query = select(func.count()).select_from(NodeEvent).where(NodeEvent.kind == "escalated")
    if serial is not None:
        query = query.where(NodeEvent.node_id == chassis_id("acme-cloud", serial))
    with db.reader() as session:
        return int(session.execute(query).scalar_one())


def test_nodes_past_their_limit_are_stuck_and_others_are_not(db: Database, clock: ManualClock) -> None:
    seed(db, {"Q1": "quarantined", "P1": "provisioning", "S1": "in_service", "R1": "received"})
    assert find_stuck(db, VIEWER) == []
    clock.advance(timedelta(hours=2))  # quarantined limit is 1 h, provisioning 4 h, received 3 days
    stuck = find_stuck(db, VIEWER)
    assert [s.serial for s in stuck] == ["Q1"]
    assert stuck[0].overdue_by == timedelta(hours=1)
    assert stuck[0].owner == "automation" and stuck[0].escalated_at is None
    clock.advance(timedelta(hours=3))
    assert [s.serial for s in find_stuck(db, VIEWER)] == ["Q1", "P1"]  # longest overdue first


def test_escalation_is_written_once_per_stay(db: Database, clock: ManualClock) -> None:
    seed(db, {"Q1": "quarantined", "Q2": "quarantined", "S1": "in_service"})
    clock.advance(timedelta(hours=1, minutes=1))
    first = escalate_overdue(db, OPERATOR)
    assert sorted(n.serial for n in first.escalated) == ["Q1", "Q2"]
    assert escalations(db) == 2
    clock.advance(timedelta(hours=5))
    again = escalate_overdue(db, OPERATOR)
    assert again.escalated == [] and again.already_escalated == 2
    assert escalations(db) == 2
    assert all(s.escalated_at is not None for s in find_stuck(db, VIEWER))


def test_a_new_stay_in_the_same_state_escalates_again(db: Database, clock: ManualClock) -> None:
    seed(db, {"Q1": "quarantined"})
    clock.advance(timedelta(hours=2))
    escalate_overdue(db, OPERATOR)
    # Leave and come back at the same instant: the old escalation belongs to the old stay.
    transition(db, "Q1", "release", "false alarm", OPERATOR)
    transition(db, "Q1", "quarantine", "xid 79 again", OPERATOR)
    assert escalate_overdue(db, OPERATOR).escalated == []  # the new stay is not overdue yet
    clock.advance(timedelta(hours=1))
    assert [n.serial for n in escalate_overdue(db, OPERATOR).escalated] == ["Q1"]
    assert escalations(db, "Q1") == 2


def test_dry_run_writes_nothing(db: Database, clock: ManualClock) -> None:
    seed(db, {"Q1": "quarantined"})
    clock.advance(timedelta(hours=2))
    report = escalate_overdue(db, OPERATOR, dry_run=True)
    assert [n.serial for n in report.escalated] == ["Q1"] and report.dry_run
    assert escalations(db) == 0


def test_concurrent_runners_escalate_each_node_once(db: Database, clock: ManualClock) -> None:
    seed(db, {f"Q{i:03d}": "quarantined" for i in range(60)})
    clock.advance(timedelta(hours=2))
    url = db.engine.url.render_as_string(hide_password=False)
    runners = [Database(make_engine(url), clock) for _ in range(3)]
    barrier = threading.Barrier(len(runners))
    counts: list[int] = []
    failures: list[BaseException] = []

    def run(runner: Database) -> None:
        try:
            barrier.wait()
            counts.append(len(escalate_overdue(runner, OPERATOR, batch_size=7).escalated))
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for runner in runners:
        runner.dispose()
    assert failures == []
    assert sum(counts) == 60
    assert escalations(db) == 60
    with db.reader() as session:
        per_node = session.execute(
            select(NodeEvent.node_id, func.count())
            .where(NodeEvent.kind == "escalated")
            .group_by(NodeEvent.node_id)
            .having(func.count() > 1)
        ).all()
    assert per_node == []


def test_escalating_needs_an_operator(db: Database) -> None:
    with pytest.raises(Forbidden):
        escalate_overdue(db, VIEWER)


def test_cli_stuck_and_escalate(db: Database, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI reads the system clock; nodes that entered their state years ago are overdue whenever this runs.
    clock.set(datetime(2020, 1, 1, tzinfo=UTC))
    seed(db, {"Q1": "quarantined", "D1": "draining", "S1": "in_service"})
    cli = Cli.on(db, monkeypatch)
    stuck = cli.json("nodes", "stuck")
    assert sorted(n["serial"] for n in stuck) == ["D1", "Q1"]
    assert all(n["escalated_at"] is None and n["overdue_seconds"] > 0 for n in stuck)
    assert cli.json("nodes", "escalate", "--dry-run")["escalated"] == 2
    assert escalations(db) == 0
    report = cli.json("nodes", "escalate")
    assert report["escalated"] == 2 and {n["serial"] for n in report["nodes"]} == {"Q1", "D1"}
    again = cli("nodes", "escalate")
    assert again.exit_code == 0 and "escalated 0 node(s); 2 already escalated" in again.stdout
    assert escalations(db) == 2
    assert all(n["escalated_at"] for n in cli.json("nodes", "stuck"))
    table = cli("nodes", "stuck", "--cluster", "east-frontier")
    assert table.exit_code == 0 and "host-q1" in table.stdout and "2 node(s) past" in table.stdout


def test_the_controllers_command_runs_every_declared_loop_and_each_alone(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db, {"Q1": "quarantined", "S1": "in_service"})  # stamped at the test clock's start: long overdue by now
    cli = Cli.on(db, monkeypatch)
    listed = cli.json("controllers", "list")
    assert [c["name"] for c in listed] == ["remediation", "outbox", "cluster-sync", "stuck-nodes"]
    assert all(c["interval_seconds"] > 0 and c["retry_max_seconds"] >= c["retry_first_seconds"] for c in listed)
    ran = cli.json("controllers", "run", "--passes", "1")
    assert {r["name"]: (r["passes"], r["failures"]) for r in ran} == {
        "remediation": (1, 0),
        "outbox": (1, 0),
        "cluster-sync": (1, 0),
        "stuck-nodes": (1, 0),
    }
    assert escalations(db, "Q1") == 1 and escalations(db, "S1") == 0
    alone = cli.json("controllers", "run", "--only", "stuck-nodes", "--passes", "1")
    assert alone == [{"name": "stuck-nodes", "passes": 1, "failures": 0}]
    assert escalations(db, "Q1") == 1  # once per stay, however often the loop runs
    unknown = cli("controllers", "run", "--only", "nope", "--passes", "1")
    assert unknown.exit_code == 2 and "unknown controller nope" in unknown.output
