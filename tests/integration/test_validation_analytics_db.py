"""Re-ban rates and the threshold table computed from a stored history whose numbers are worked out by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound
from gpufleet.validation.analytics import Scope, reban_report, threshold_report, validation_figures
from gpufleet.validation.bans import ban_node
from gpufleet.validation.ingest import ingest_records
from tests.factories import OPERATOR, VIEWER
from tests.integration.validation_support import HISTORY_START, attempt_records, record, seed_fleet

TENANT = Actor(name="tenant", role=Role.VIEWER, tenant_id=1)


def build_history(db: Database) -> None:
    """East (H100, 8 GPUs, acme-cloud), N = 4, one hour per pass:
    E1, E2, E3 pass (admitted at +4 h); E1 is banned 10 days later. E4..E7 fail first at passes 1, 2, 3, 4.
    E8 is still in progress (2 passes) and must be left out.
    West (GB300, 4 GPUs, bolt-hw), N = 4: W1, W2 pass; W1 is banned 40 days after its admission. W3 fails at pass 2.
    A fast-track attempt of W2 later on never enters the threshold table."""
    seed_fleet(db)
    records = []
    for serial in ("E1", "E2", "E3", "W1", "W2"):
        records += attempt_records(serial, 1, 4)
    for serial, j in (("E4", 1), ("E5", 2), ("E6", 3), ("E7", 4), ("W3", 2)):
        records += attempt_records(serial, 1, 4, first_fail=j)
    records += attempt_records("E8", 1, 4)[:2]
    later = HISTORY_START + timedelta(days=90)
    records.append(record("W2", 2, 1, start=later, suite="quick", path="fast_track", passes_required=1))
    report = ingest_records(db, records, OPERATOR)
    assert report.ok and report.applied, report.as_dict()
    admitted = HISTORY_START + timedelta(hours=4)
    ban_node(db, "E1", "xid 48", OPERATOR, source="health", at=admitted + timedelta(days=10))
    ban_node(db, "W1", "nvlink errors", OPERATOR, source="health", at=admitted + timedelta(days=40))


@pytest.fixture
def history(db: Database) -> Database:
    build_history(db)
    return db


def test_threshold_table_for_the_east_cluster_matches_the_hand_computation(history: Database) -> None:
    report = threshold_report(history, VIEWER, Scope(cluster="east-frontier"))
    assert (report.attempts, report.passes_required) == (7, 4)
    # Passes run: 7 attempts ran pass 1, 6 pass 2, 5 pass 3, 4 pass 4; each one hour on 8 GPUs.
    assert report.validation_gpu_hours == pytest.approx((7 + 6 + 5 + 4) * 8)
    got = [
        (r.k, r.admitted, r.extra_admitted, r.value_of_pass, r.expected_bad_admitted, r.gpu_hours_saved)
        for r in report.rows
    ]
    assert got == [
        (1, 6, 3, 1, 4, pytest.approx(120.0)),
        (2, 5, 2, 1, 3, pytest.approx(72.0)),
        (3, 4, 1, 1, 2, pytest.approx(32.0)),
        (4, 3, 0, 1, 1, pytest.approx(0.0)),
    ]
    assert report.rows[0].reban_rate_at_n == pytest.approx(1 / 3)
    assert report.rows[0].extra_share == pytest.approx(0.5)


def test_threshold_scopes_by_supplier_and_sku(history: Database) -> None:
    west = threshold_report(history, VIEWER, Scope(supplier="bolt-hw"))
    assert [(r.k, r.admitted, r.extra_admitted, r.value_of_pass) for r in west.rows] == [
        (1, 3, 1, 0),
        (2, 2, 0, 1),
        (3, 2, 0, 0),
        (4, 2, 0, 0),
    ]
    # W1's ban came 40 days after admission: not a re-ban within 30 days, one within 45.
    assert west.rows[0].rebanned_at_n == 0
    assert threshold_report(history, VIEWER, Scope(supplier="bolt-hw"), days=45).rows[0].rebanned_at_n == 1
    sku = threshold_report(history, VIEWER, Scope(sku="H100-SXM-80GB"))
    assert sku.attempts == 7
    with pytest.raises(NotFound):
        threshold_report(history, VIEWER, Scope(cluster="nowhere"))


def test_reban_rates_by_supplier_cluster_sku_and_month(history: Database) -> None:
    by_supplier = reban_report(history, VIEWER, "supplier")
    assert [(g.group, g.admissions, g.rebanned) for g in by_supplier.rates] == [
        ("acme-cloud", 3, 1),
        ("bolt-hw", 3, 0),  # W1, W2 and W2's later fast-track admission
    ]
    assert by_supplier.as_dict()["rate"] == pytest.approx(1 / 6)
    wider = reban_report(history, VIEWER, "cluster", days=45)
    assert {g.group: g.rebanned for g in wider.rates} == {"east-frontier": 1, "west-fleet": 1}
    assert {g.group for g in reban_report(history, VIEWER, "sku").rates} == {"H100-SXM-80GB", "GB300-NVL72"}
    months = reban_report(history, VIEWER, "month")
    assert [g.group for g in months.rates] == sorted(g.group for g in months.rates)
    assert sum(g.admissions for g in months.rates) == 6
    east_only = reban_report(history, VIEWER, "supplier", scope=Scope(cluster="east-frontier"))
    assert [(g.group, g.admissions) for g in east_only.rates] == [("acme-cloud", 3)]


def test_figures_for_reports(history: Database) -> None:
    figures = validation_figures(history)
    assert figures["reban_rate_by_supplier"] == {"acme-cloud": pytest.approx(1 / 3), "bolt-hw": 0.0}
    # Every recorded pass on every path: east 22 h + E8's 2 h on 8 GPUs; west (4 + 4 + 2) h + 1 fast pass on 4 GPUs.
    assert figures["validation_gpu_hours"] == pytest.approx((22 + 2) * 8 + (4 + 4 + 2 + 1) * 4)


def test_bad_parameters_and_tenant_tokens_are_refused(history: Database) -> None:
    with pytest.raises(InvalidInput):
        reban_report(history, VIEWER, "colour")
    with pytest.raises(InvalidInput):
        threshold_report(history, VIEWER, days=0)
    with pytest.raises(Forbidden):
        reban_report(history, TENANT)
