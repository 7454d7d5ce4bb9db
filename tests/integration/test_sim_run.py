"""A simulation runs the real services on a real database: every change is a recorded, valid transition.

Runs on SQLite and on PostgreSQL, once per backend for the module (a run takes a few seconds).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gpufleet.adapters.db.models import Node, NodeEvent, Reboot, RemediationCase, Sku, ValidationAttempt
from gpufleet.domain.lifecycle import TRANSITIONS
from gpufleet.domain.remediation import MTTR_GROUPS
from gpufleet.domain.xid_policy import Kind
from gpufleet.platform.database import Database, open_database
from gpufleet.sim.engine import Simulation, SimulationError
from tests.conftest import drop_pg_database, new_pg_database, pg_available
from tests.integration.sim_helpers import small

ALLOWED = {(t.source.value, t.event, t.target.value) for t in TRANSITIONS}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, Any]]:
    if request.param == "postgresql":
        if not pg_available():
            pytest.skip("PostgreSQL is not reachable")
        url = new_pg_database()
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('sim') / 'sim.db'}"
    db = open_database(url)
    sim = Simulation(small(), db=db)
    results = sim.run()
    try:
        yield db, results
    finally:
        db.dispose()
        if request.param == "postgresql":
            drop_pg_database(url)


def events(db: Database) -> list[Any]:
    with db.reader() as session:
        rows = list(session.execute(select(NodeEvent).order_by(NodeEvent.id)).scalars())
        session.expunge_all()
        return rows


def test_the_results_carry_the_figures_the_issue_names(run: tuple[Database, Any]) -> None:
    _, r = run
    for key in (
        "interruptions",
        "interruptions_total",
        "hardware_share",
        "availability",
        "simulated_days",
        "nodes",
        "gpus",
        "events_processed",
        "wall_seconds",
    ):
        assert key in r
    assert r["interruptions_total"] == sum(r["interruptions"].values()) > 20
    assert r["nodes"] == 24 + 18 + 6 and r["gpus"] == 24 * 8 + 24 * 4
    assert r["simulated_days"] == 6
    assert 0.5 < r["availability"] < 1.0
    assert 0.0 < r["hardware_share"] < 1.0


def test_the_remediation_figures_agree_with_the_cases_and_reboots_recorded(run: tuple[Database, Any]) -> None:
    """The five figures `gpufleet simulate` adds to its JSON, read back from the rows the product wrote."""
    db, r = run
    with db.reader() as session:
        cases = session.execute(
            select(
                RemediationCase.kind,
                RemediationCase.resolution,
                RemediationCase.human,
                RemediationCase.detected_at,
                RemediationCase.closed_at,
            ).where(RemediationCase.dry_run.is_(False))
        ).all()
        reboots = Counter(session.execute(select(Reboot.outcome)).scalars())
    assert r["cases_total"] == len(cases) > 10
    minutes: dict[str, list[float]] = {"software": [], "hardware": []}
    for c in cases:
        if c.resolution == "reintegrated":
            group = MTTR_GROUPS[Kind(c.kind)]
            minutes[group].append((c.closed_at - c.detected_at).total_seconds() / 60)
    for group in ("software", "hardware"):
        done = sorted(minutes[group])
        assert done, group
        p50, p90 = r[f"mttr_{group}_min_p50"], r[f"mttr_{group}_min_p90"]
        assert round(done[0], 1) <= p50 <= p90 <= round(done[-1], 1)
        assert sum(m <= p50 + 0.05 for m in done) >= len(done) / 2  # at least half repaired within the p50
    automated = sum(1 for c in cases if c.resolution == "reintegrated" and not c.human)
    assert 0 < r["automation_rate"] <= 1 and automated >= 1
    assert r["automation_rate"] == r["remediation"]["automation"]["rate"]
    decided = reboots["returned"] + reboots["not_returned"]
    assert decided > 0 and r["reboots_returned_share"] == round(reboots["returned"] / decided, 4)


def test_every_transition_is_a_valid_recorded_event(run: tuple[Database, Any]) -> None:
    db, r = run
    moves = [e for e in events(db) if e.kind == "transition"]
    assert len(moves) == r["transitions"]
    for e in moves:
        assert (e.from_state, e.event, e.to_state) in ALLOWED
        assert e.actor in ("sim:operations", "controller:remediation") and e.reason
        assert e.correlation_id.startswith("sim-")
    assert Counter(e.event for e in moves) == Counter(r["transitions_by_event"])


def test_the_database_holds_the_state_the_simulator_reports(run: tuple[Database, Any]) -> None:
    db, r = run
    with db.reader() as session:
        stored = dict(session.execute(select(Node.state, func.count()).group_by(Node.state)).all())
    assert stored == r["nodes_by_state"]


def test_each_fault_is_quarantined_with_its_component(run: tuple[Database, Any]) -> None:
    db, r = run
    quarantined = Counter(e.data["component"] for e in events(db) if e.event == "quarantine")
    for component, count in quarantined.items():
        assert count <= r["interruptions"][component]
    # Only faults in the last minutes of the run can still be waiting for the health checks to see them.
    assert 0 <= r["interruptions_total"] - sum(quarantined.values()) <= 3


def test_failed_nodes_walk_the_remediation_pipeline_in_order(run: tuple[Database, Any]) -> None:
    db, r = run
    by_node: dict[str, list[Any]] = {}
    for e in events(db):
        if e.kind == "transition":
            by_node.setdefault(e.node_id, []).append(e)
    trips = 0
    for history in by_node.values():
        for before, after in itertools.pairwise(history):
            assert after.from_state == before.to_state
            assert after.at >= before.at
        names = [e.event for e in history]
        if "quarantine" in names and "admit" in names[names.index("quarantine") :]:
            start = names.index("quarantine")
            assert names[start : start + 4] == ["quarantine", "drain", "drained", "diagnose"]
            trips += 1
    assert trips > 10
    for event in ("repair", "repaired", "escalate_supplier", "supplier_returned", "fail_validation", "provision"):
        assert r["transitions_by_event"].get(event, 0) > 0, event


def test_no_node_is_admitted_without_a_passing_validation_attempt(run: tuple[Database, Any]) -> None:
    db, r = run
    with db.reader() as session:
        passed = session.execute(
            select(func.count()).select_from(ValidationAttempt).where(ValidationAttempt.status == "passed")
        ).scalar_one()
        failed = session.execute(
            select(func.count()).select_from(ValidationAttempt).where(ValidationAttempt.status == "failed")
        ).scalar_one()
    assert passed == r["transitions_by_event"]["admit"]
    assert failed >= 1


def test_delivered_nodes_are_imported_then_brought_up(run: tuple[Database, Any]) -> None:
    db, r = run
    created = [e for e in events(db) if e.kind == "created" and e.to_state == "received"]
    assert len(created) == 6 == r["bring_up"]["delivered_nodes"]
    assert created[0].at == small().start + timedelta(days=1)
    assert r["bring_up"]["gpus_admitted"] > 0


def test_availability_is_what_the_event_log_says(run: tuple[Database, Any]) -> None:
    db, r = run
    scenario = small()
    start, end = scenario.start, scenario.start + timedelta(days=scenario.duration_days)
    with db.reader() as session:
        rows = session.execute(select(Node.id, Sku.gpus_per_node, Node.created_at).join(Sku, Sku.id == Node.sku_id))
        gpus = {node_id: (count, created) for node_id, count, created in rows}
    served = held = 0.0
    since: dict[str, Any] = {}
    for e in events(db):
        if e.to_state == "in_service" and e.from_state != "in_service":
            since[e.node_id] = e.at
        elif e.from_state == "in_service" and e.to_state != "in_service":
            served += (e.at - since.pop(e.node_id)).total_seconds() * gpus[e.node_id][0]
    for node_id, at in since.items():
        served += (end - at).total_seconds() * gpus[node_id][0]
    for count, created in gpus.values():
        held += (end - max(created, start)).total_seconds() * count
    assert r["availability"] == pytest.approx(served / held, abs=1e-4)


def test_a_simulation_refuses_a_database_that_holds_nodes(run: tuple[Database, Any]) -> None:
    db, _ = run
    with pytest.raises(SimulationError, match="already holds"):
        Simulation(small(), db=db).prepare()


def test_the_same_seed_gives_the_same_figures_and_another_seed_others(tmp_path: Path) -> None:
    from tests.integration.sim_helpers import figures

    first = figures(Simulation(small(), seed=3).run())
    second = figures(Simulation(small(), seed=3).run())
    other = figures(Simulation(small(), seed=4).run())
    assert first == second
    assert first["interruptions"] != other["interruptions"]
