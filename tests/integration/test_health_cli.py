"""`gpufleet events`: ingest files and standard input, list, the unmatched list and rematch, on both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpufleet.cli.main import app
from gpufleet.fleet.inventory import import_nodes
from gpufleet.platform.database import Database
from tests.factories import OPERATOR, seed_reference
from tests.integration.api_support import NODES_CSV, node_id
from tests.integration.cli_support import Cli, one_line_error

FIXTURES = Path(__file__).parents[1] / "fixtures" / "health"


@pytest.fixture
def cli(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    seed_reference(db)
    assert import_nodes(db, NODES_CSV, "fleet.csv", OPERATOR).applied
    yield Cli.on(db, monkeypatch)


def test_ingest_a_file_and_list_it(cli: Cli) -> None:
    result = cli("events", "ingest", str(FIXTURES / "kern.log"))
    assert result.exit_code == 2  # one unreadable line: reported, the rest recorded
    assert "8 new event(s)" in result.stdout and "names an Xid" in result.stdout and "unknown-host-7" in result.stdout
    report = cli("events", "ingest", str(FIXTURES / "kern.log"), "--output", "json")
    assert report.exit_code == 2 and json.loads(report.stdout)["duplicates"] == 8
    listed = cli.json("events", "list", "--node", "gpu-01")
    assert [(e["code"], e["node"]["id"]) for e in listed] == [("xid:79", node_id("SN01"))]
    table = cli("events", "list", "--severity", "critical")
    assert table.exit_code == 0 and "xid:154" in table.stdout and "xid:13" not in table.stdout


def test_ingest_with_format_and_node(cli: Cli) -> None:
    result = cli.json(
        "events", "ingest", str(FIXTURES / "nvidia-smi-h100.xml"), "--format", "nvidia-smi", "--node", "gpu-01"
    )
    assert result["accepted"] == 4 and result["gpus_learned"] == 2 and result["ok"]
    assert {e["gpu_index"] for e in cli.json("events", "list", "--source", "nvidia-smi")} == {1}


def test_ingest_standard_input(cli: Cli) -> None:
    runner = CliRunner()
    text = (FIXTURES / "alertmanager-firing.json").read_text()
    result = runner.invoke(app, ["events", "ingest", "-", "--output", "json"], input=text, catch_exceptions=False)
    report = json.loads(result.stdout)
    assert report["source"] == "stdin" and report["format"] == "alertmanager" and report["accepted"] == 3


def test_unmatched_list_and_rematch(cli: Cli) -> None:
    assert "no unmatched events" in cli("events", "unmatched").stdout
    cli("events", "ingest", str(FIXTURES / "alertmanager-firing.json"))
    unmatched = cli.json("events", "unmatched")
    assert [(u["subject"], u["unmatched"]) for u in unmatched] == [
        ("not-in-inventory gpu index 0", "unknown node 'not-in-inventory'")
    ]
    assert "not-in-inventory" in cli("events", "unmatched").stdout
    result = cli.json("events", "rematch")
    assert result["examined"] == 1 and result["still_unmatched"] == 1


def test_bad_usage_is_one_line(cli: Cli, tmp_path: Path) -> None:
    assert "no file at" in one_line_error(cli("events", "ingest", str(tmp_path / "missing.log")))
    plain = tmp_path / "notes.txt"
    plain.write_text("nothing to see\n")
    assert "cannot tell the format" in one_line_error(cli("events", "ingest", str(plain)))
    assert "ISO 8601" in one_line_error(cli("events", "list", "--since", "yesterday"))
    assert cli("events", "ingest", str(plain), "--format", "syslog").exit_code == 2
