"""The simulator's validation history is the product's: its report carries the product's validation figures."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from gpufleet.adapters.db.models import NodeBan, NodeEvent, ValidationAttempt
from gpufleet.platform.database import Database
from gpufleet.sim.engine import Simulation
from gpufleet.validation.analytics import reban_report, validation_figures
from tests.factories import VIEWER
from tests.integration.sim_helpers import small


@pytest.mark.slow
def test_a_simulation_records_bans_and_reports_reban_rate_and_validation_gpu_hours(db: Database) -> None:
    results = Simulation(small(), db=db).run()
    assert set(results["reban_rate_by_supplier"]) <= {"good-vendor", "shaky-cloud"}
    assert results["validation_gpu_hours"] > 0
    with db.reader() as session:
        bans = session.execute(select(func.count()).select_from(NodeBan)).scalar_one()
        hardware_quarantines = session.execute(
            select(func.count()).select_from(NodeEvent).where(NodeEvent.event == "quarantine")
        ).scalar_one()
        passed = session.execute(
            select(func.count()).select_from(ValidationAttempt).where(ValidationAttempt.status == "passed")
        ).scalar_one()
    assert 0 < bans <= hardware_quarantines
    assert passed > 0
    # The report's figures are the ones the product computes from the same history.
    assert results["validation_gpu_hours"] == pytest.approx(validation_figures(db, 7)["validation_gpu_hours"])
    rates = {r.group: r.rate for r in reban_report(db, VIEWER, "supplier", 7).rates}
    assert results["reban_rate_by_supplier"] == pytest.approx(rates)
