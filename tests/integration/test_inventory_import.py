"""Importing supplier inventories: idempotent, keyed by supplier + serial, per-row errors, all-or-nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from gpufleet.adapters.db.models import Allocation, Gpu, Node, NodeEvent, NodeLabel
from gpufleet.fleet.inventory import chassis_id, import_nodes
from gpufleet.platform.database import Database
from tests.factories import OPERATOR, seed_reference

CSV = """supplier,serial,hostname,sku,cluster,rack,nvlink_domain,labels,gpu_serials,state,tenant
acme-cloud,SN001,gpu-001,H100-SXM-80GB,east-frontier,r1,nvl-1,pool=a;tier=gold,G1;G2;G3;G4;G5;G6;G7;G8,,
acme-cloud,SN002,gpu-002,H100-SXM-80GB,east-frontier,r1,nvl-1,pool=a,,in_service,tenant-a
bolt-hw,SN003,gpu-003,GB300-NVL72,west-fleet,r9,,,,,
"""


def count(db: Database, model: type) -> int:
    with db.reader() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def test_import_creates_nodes_gpus_labels_events_and_allocations(db: Database) -> None:
    seed_reference(db)
    report = import_nodes(db, CSV, "fleet.csv", OPERATOR)
    assert report.ok and report.applied
    assert (report.created, report.updated, report.unchanged) == (3, 0, 0)
    assert count(db, Node) == 3
    assert count(db, Gpu) == 8 + 8 + 4  # listed serials, else the SKU's GPU count
    assert count(db, NodeLabel) == 3
    assert count(db, NodeEvent) == 3
    with db.reader() as s:
        node = s.get(Node, chassis_id("acme-cloud", "SN002"))
        assert node is not None and node.state == "in_service"
        assert s.execute(select(func.count()).select_from(Allocation)).scalar_one() == 1


def test_reimport_is_idempotent_and_says_so(db: Database) -> None:
    seed_reference(db)
    import_nodes(db, CSV, "fleet.csv", OPERATOR)
    again = import_nodes(db, CSV, "fleet.csv", OPERATOR)
    assert again.ok and not again.applied
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert "no changes" in again.summary_line()
    assert count(db, NodeEvent) == 3


def test_move_between_clusters_keeps_id_and_history(db: Database) -> None:
    seed_reference(db)
    import_nodes(db, CSV, "fleet.csv", OPERATOR)
    moved = CSV.replace(
        "acme-cloud,SN001,gpu-001,H100-SXM-80GB,east-frontier", "acme-cloud,SN001,gpu-001,H100-SXM-80GB,west-fleet"
    )
    report = import_nodes(db, moved, "fleet.csv", OPERATOR)
    assert report.moved == 1 and report.unchanged == 2
    with db.reader() as s:
        events = (
            s.execute(
                select(NodeEvent.kind)
                .where(NodeEvent.node_id == chassis_id("acme-cloud", "SN001"))
                .order_by(NodeEvent.id)
            )
            .scalars()
            .all()
        )
    assert events == ["created", "moved"]


def test_bad_rows_are_reported_with_line_and_field_and_nothing_applies(db: Database) -> None:
    seed_reference(db)
    bad = (
        "supplier,serial,hostname,sku,cluster,gpu_serials\n"
        "acme-cloud,SN010,gpu-010,H100-SXM-80GB,east-frontier,GX1\n"
        "acme-cloud,SN011,gpu-011,NOPE,east-frontier,\n"
        "acme-cloud,SN010,gpu-012,H100-SXM-80GB,east-frontier,\n"
        "acme-cloud,SN013,gpu-013,H100-SXM-80GB,mars,\n"
        "acme-cloud,SN014,gpu-014,H100-SXM-80GB,east-frontier,GX1\n"
    )
    report = import_nodes(db, bad, "bad.csv", OPERATOR)
    assert not report.ok and not report.applied
    found = {(e.line, e.field) for e in report.errors}
    assert found == {(3, "sku"), (4, "serial"), (5, "cluster"), (6, "gpu_serials")}
    assert count(db, Node) == 0


def test_partial_applies_good_rows_and_lists_the_rest(db: Database) -> None:
    seed_reference(db)
    bad = (
        "supplier,serial,hostname,sku,cluster,state\n"
        "acme-cloud,SN020,gpu-020,H100-SXM-80GB,east-frontier,\n"
        "acme-cloud,SN021,gpu-021,H100-SXM-80GB,east-frontier,flying\n"
    )
    report = import_nodes(db, bad, "bad.csv", OPERATOR, partial=True)
    assert report.applied and not report.ok
    assert [(e.line, e.field) for e in report.errors] == [(3, "state")]
    assert count(db, Node) == 1


def test_dry_run_changes_nothing(db: Database) -> None:
    seed_reference(db)
    report = import_nodes(db, CSV, "fleet.csv", OPERATOR, dry_run=True)
    assert report.created == 3 and not report.applied
    assert count(db, Node) == 0


def test_gpu_serial_claimed_by_another_node_is_refused(db: Database) -> None:
    seed_reference(db)
    import_nodes(db, CSV, "fleet.csv", OPERATOR)
    clash = "supplier,serial,hostname,sku,cluster,gpu_serials\nbolt-hw,SN099,gpu-099,H100-SXM-80GB,west-fleet,G3\n"
    report = import_nodes(db, clash, "clash.csv", OPERATOR)
    assert [(e.line, e.field) for e in report.errors] == [(2, "gpu_serials")]
    assert "already claimed" in report.errors[0].message


def test_json_and_jsonl_inventories(db: Database) -> None:
    seed_reference(db)
    jsonl = (
        '{"supplier": "acme-cloud", "serial": "J1", "hostname": "j-1", "sku": "H100-SXM-80GB",'
        ' "cluster": "east-frontier", "labels": {"pool": "b"}, "gpu_serials": ["JG1", "JG2"]}\n'
        "not json\n"
    )
    report = import_nodes(db, jsonl, "inv.jsonl", OPERATOR, partial=True)
    assert report.created == 1 and [e.line for e in report.errors] == [2]
    array = (
        '[\n {"supplier": "acme-cloud", "serial": "J2", "hostname": "j-2", "sku": "H100-SXM-80GB",\n'
        '  "cluster": "east-frontier"},\n {"serial": "J3"}\n]'
    )
    report = import_nodes(db, array, "inv.json", OPERATOR)
    assert not report.applied
    assert {(e.line, e.field) for e in report.errors} == {(4, "supplier"), (4, "hostname"), (4, "sku"), (4, "cluster")}
