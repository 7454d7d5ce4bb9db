"""The live demo fleet: a scenario running beside the API, recorded in the API's time, resumable, polite."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from gpufleet.adapters.db.models import Node, NodeEvent
from gpufleet.fleet.lifecycle import transition
from gpufleet.platform.database import Database
from gpufleet.sim.live import LiveSimulation
from tests.factories import OPERATOR
from tests.integration.sim_helpers import small

SPEED = 4 * 86400.0  # four simulated days per second


def url_of(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=False)


def run_live(db: Database, seconds: float, until: Callable[[], bool] | None = None) -> LiveSimulation:
    """Run the live fleet for ``seconds``, and then until ``until()`` holds (within 60 s: a loaded machine runs the
    fleet slower, and whether a few simulated days bring a failure is chance)."""
    live = LiveSimulation(small(), url_of(db), speed=SPEED, tick_seconds=0.05)
    live.start()
    assert live.ready.wait(60)
    time.sleep(seconds)
    deadline = time.monotonic() + 60
    while until is not None and not until() and time.monotonic() < deadline:
        time.sleep(0.1)
    live.stop()
    assert not live.running
    return live


def counts(db: Database) -> tuple[int, int]:
    with db.reader() as session:
        nodes = session.execute(select(func.count()).select_from(Node)).scalar_one()
        moves = session.execute(
            select(func.count()).select_from(NodeEvent).where(NodeEvent.actor == "sim:operations")
        ).scalar_one()
    return nodes, moves


def test_the_live_fleet_moves_and_is_recorded_in_wall_time(db: Database) -> None:
    began = datetime.now(UTC)
    live = run_live(db, 1.5)
    assert live.errors == 0 and live.simulated_days > 2
    nodes, moves = counts(db)
    assert nodes == 48  # the delivery on day 1 arrived
    assert moves > 10
    with db.reader() as session:
        times = session.execute(select(NodeEvent.at).where(NodeEvent.actor == "sim:operations")).scalars().all()
    # Days of simulated time fit in the seconds the test ran: nothing is written in the API's future.
    assert all(began - timedelta(seconds=1) <= at <= datetime.now(UTC) + timedelta(seconds=1) for at in times)


def test_a_restarted_live_fleet_carries_on_and_leaves_others_work_alone(db: Database) -> None:
    run_live(db, 0.5, until=lambda: counts(db)[1] > 0)
    before, moves = counts(db)
    with db.reader() as session:
        node_id = session.execute(select(Node.id).where(Node.state == "in_service").limit(1)).scalar_one()
    for event in ("drain", "drained", "start_maintenance"):
        transition(db, node_id, event, "planned firmware work", OPERATOR)
    live = run_live(db, 0.5, until=lambda: counts(db)[1] > moves)
    after, more_moves = counts(db)
    assert after == before  # nothing imported twice
    assert live.sim is not None and len({n.id for n in live.sim.nodes}) == len(live.sim.nodes) == before
    assert more_moves > moves
    with db.reader() as session:
        assert session.execute(select(Node.state).where(Node.id == node_id)).scalar_one() == "maintenance"


def test_stopping_before_the_api_listens_leaves_the_database_untouched(db: Database) -> None:
    live = LiveSimulation(small(), url_of(db), speed=SPEED, start_when=lambda: False)
    live.start()
    time.sleep(0.3)
    live.stop()
    assert not live.running
    assert counts(db) == (0, 0)
