"""`gpufleet nodes list/show/transition`: JSON shapes for scripts, and refusals that say what is allowed."""

from __future__ import annotations

import json

import pytest

from gpufleet.fleet.inventory import chassis_id, import_nodes
from gpufleet.fleet.queries import MAX_PAGE
from gpufleet.platform.database import Database
from tests.factories import OPERATOR, seed_reference
from tests.integration.cli_support import Cli, one_line_error

CSV = """\
supplier,serial,hostname,sku,cluster,rack,nvlink_domain,labels,gpu_serials,state,tenant
acme-cloud,SN001,gpu-001,H100-SXM-80GB,east-frontier,r1,,pool=a,G1;G2;G3;G4;G5;G6;G7;G8,,
acme-cloud,SN002,gpu-002,H100-SXM-80GB,east-frontier,r1,,pool=b,,in_service,tenant-a
bolt-hw,SN003,gpu-003,GB300-NVL72,west-fleet,r9,nvl-1,pool=a,,quarantined,
"""


@pytest.fixture
def cli(db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
    seed_reference(db)
    assert import_nodes(db, CSV, "nodes.csv", OPERATOR).applied
    return Cli.on(db, monkeypatch)


def test_list_json_has_the_fields_scripts_rely_on(cli: Cli) -> None:
    nodes = cli.json("nodes", "list")
    assert len(nodes) == 3
    for node in nodes:
        assert {"id", "serial", "hostname", "state", "cluster"} <= node.keys()
    by_serial = {n["serial"]: n for n in nodes}
    assert by_serial["SN001"]["id"] == chassis_id("acme-cloud", "SN001")
    assert by_serial["SN003"]["state"] == "quarantined"
    assert by_serial["SN003"]["cluster"] == "west-fleet"


def test_list_filters_combine(cli: Cli) -> None:
    assert [n["serial"] for n in cli.json("nodes", "list", "--cluster", "east-frontier", "--state", "in_service")] == [
        "SN002"
    ]
    assert sorted(n["serial"] for n in cli.json("nodes", "list", "--selector", "pool=a")) == ["SN001", "SN003"]
    assert [n["serial"] for n in cli.json("nodes", "list", "--nvlink-domain", "nvl-1")] == ["SN003"]
    assert [n["serial"] for n in cli.json("nodes", "list", "--supplier", "bolt-hw", "--sku", "GB300-NVL72")] == [
        "SN003"
    ]
    assert cli.json("nodes", "list", "--rack", "nope") == []
    assert {frozenset(n) for n in cli.json("nodes", "list", "--fields", "hostname")} == {frozenset({"id", "hostname"})}


def test_list_rejects_an_unknown_state_naming_the_valid_ones(cli: Cli) -> None:
    result = cli("nodes", "list", "--state", "broken")
    message = one_line_error(result)
    assert result.exit_code == 2 and "in_service" in message


def test_list_json_prints_every_node_beyond_one_page(cli: Cli, db: Database) -> None:
    count = MAX_PAGE + 150
    rows = "".join(f"acme-cloud,B{i:05d},bulk-{i:05d},H100-SXM-80GB,east-frontier\n" for i in range(count))
    assert import_nodes(db, "supplier,serial,hostname,sku,cluster\n" + rows, "bulk.csv", OPERATOR).applied
    nodes = cli.json("nodes", "list", "--cluster", "east-frontier", "--state", "received")
    assert len(nodes) == count + 1  # SN001 is received too
    assert len({n["id"] for n in nodes}) == len(nodes)


def test_list_table_caps_rows_with_a_note(cli: Cli) -> None:
    result = cli("nodes", "list", "--limit", "2")
    assert result.exit_code == 0
    assert "showing 2" in result.stdout and "--output json" in result.stdout
    assert result.stdout.count("gpu-00") == 2


def test_show_json_includes_gpus_lifecycle_and_events(cli: Cli) -> None:
    node = cli.json("nodes", "show", "gpu-001")
    assert node["id"] == chassis_id("acme-cloud", "SN001")
    assert [g["serial"] for g in node["gpu_devices"]] == [f"G{i}" for i in range(1, 9)]
    assert node["lifecycle"]["allowed_events"] == ["decommission", "provision"]
    assert [e["kind"] for e in node["events"]] == ["created"]
    assert cli.json("nodes", "show", "SN001")["id"] == node["id"]  # by serial
    assert cli.json("nodes", "show", node["id"])["hostname"] == "gpu-001"  # by chassis id


def test_show_table_names_the_node_and_its_timeline(cli: Cli) -> None:
    result = cli("nodes", "show", "gpu-002")
    assert result.exit_code == 0
    assert "Events (newest first)" in result.stdout and "tenant-a" in result.stdout


def test_show_an_unknown_node_fails_in_one_line(cli: Cli) -> None:
    result = cli("nodes", "show", "nope-999")
    assert result.exit_code == 1
    assert "no node" in one_line_error(result)


def test_transition_moves_the_node_and_records_who_and_why(cli: Cli) -> None:
    result = cli("nodes", "transition", "gpu-001", "provision", "--reason", "rack r1 cabled")
    assert result.exit_code == 0, result.output
    assert "received -> provisioning" in result.stdout
    moved = cli.json("nodes", "transition", "SN001", "provisioned", "--reason", "imaged")
    assert moved["from_state"] == "provisioning" and moved["to_state"] == "validating" and moved["version"] == 3
    events = cli.json("nodes", "show", "gpu-001")["events"]
    latest = [(e["event"], e["reason"]) for e in events[:2]]
    assert latest == [("provisioned", "imaged"), ("provision", "rack r1 cabled")]
    assert events[0]["actor"].startswith("cli:")


def test_invalid_event_exits_non_zero_naming_allowed_events(cli: Cli) -> None:
    result = cli("nodes", "transition", "gpu-003", "admit", "--reason", "looks fine")
    message = one_line_error(result)
    assert result.exit_code == 1
    assert "admit" in message and "quarantined" in message and "drain, release" in message
    assert cli.json("nodes", "show", "gpu-003")["state"] == "quarantined"


def test_transition_with_a_stale_version_is_refused(cli: Cli) -> None:
    result = cli("nodes", "transition", "gpu-003", "drain", "--reason", "xid 79", "--expect-version", "7")
    assert result.exit_code == 1
    assert "version" in one_line_error(result)
    ok = cli.json("nodes", "transition", "gpu-003", "drain", "--reason", "xid 79", "--expect-version", "1")
    assert ok["to_state"] == "draining"


def test_transition_needs_a_reason(cli: Cli) -> None:
    missing = cli("nodes", "transition", "gpu-001", "provision")
    assert missing.exit_code == 2 and "--reason" in missing.output
    blank = cli("nodes", "transition", "gpu-001", "provision", "--reason", "  ")
    assert blank.exit_code == 2 and "reason" in one_line_error(blank)


def test_output_json_is_valid_json_and_nothing_else(cli: Cli) -> None:
    result = cli("nodes", "list", "--output", "json")
    assert isinstance(json.loads(result.stdout), list)
    assert result.stderr == ""
