"""`gpufleet validation`: JSON shapes for scripts, exit codes, and the chart file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpufleet.platform.database import Database
from tests.integration.cli_support import Cli, one_line_error
from tests.integration.test_validation_analytics_db import build_history
from tests.integration.validation_support import attempt_records, jsonl, record, seed_fleet


@pytest.fixture
def cli(db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli.on(db, monkeypatch)


def test_policy_show_and_set(db: Database, cli: Cli) -> None:
    seed_fleet(db)
    shown = cli.json("validation", "policy", "show", "east-frontier")
    assert shown["is_default"] and shown["slow_path_passes"] == 12 and shown["fast_track_days"] == 30
    changed = cli.json("validation", "policy", "set", "east-frontier", "--slow-path-passes", "10")
    assert (changed["slow_path_passes"], changed["version"], changed["changed"]) == (10, 1, True)
    again = cli.json("validation", "policy", "set", "east-frontier", "--slow-path-passes", "10")
    assert (again["version"], again["changed"]) == (1, False)
    bad = cli("validation", "policy", "set", "east-frontier", "--slow-path-suite", "nope")
    assert "slow_path_suite" in one_line_error(bad) and bad.exit_code == 2
    missing = cli("validation", "policy", "show", "nowhere")
    assert "no cluster named 'nowhere'" in one_line_error(missing)


def test_ingest_reports_bad_lines_and_exits_non_zero(db: Database, cli: Cli, tmp_path: Path) -> None:
    seed_fleet(db)
    good = tmp_path / "good.jsonl"
    good.write_text(jsonl(attempt_records("E1", 1, 3)))
    first = cli.json("validation", "ingest", str(good))
    assert (first["added"], first["attempts_passed"], first["ok"]) == (3, 1, True)
    again = cli.json("validation", "ingest", str(good))
    assert (again["added"], again["duplicates"]) == (0, 3)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl([record("E2", 1, 1), record("ZZZ", 1, 1), record("E3", 1, 3)]))
    result = cli("validation", "ingest", str(bad), "--output", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [(e["line"], e["field"]) for e in report["errors"]] == [(2, "node"), (3, "pass_number")]
    assert report["applied"] is False
    table = cli("validation", "ingest", str(bad))
    assert table.exit_code == 1 and "nothing recorded" in table.stdout and "ZZZ" in table.stdout


def test_threshold_and_reban_rates_json_shapes_and_chart(db: Database, cli: Cli, tmp_path: Path) -> None:
    build_history(db)
    rows = cli.json("validation", "threshold", "--cluster", "east-frontier")
    assert isinstance(rows, list) and [r["k"] for r in rows] == [1, 2, 3, 4]
    assert {"k", "admitted", "extra_admitted", "value_of_pass"} <= set(rows[0])
    assert (rows[0]["admitted"], rows[0]["extra_admitted"], rows[0]["value_of_pass"]) == (6, 3, 1)
    rates = cli.json("validation", "reban-rates", "--by", "supplier")
    assert [(g["group"], g["admissions"], g["rebanned"]) for g in rates["groups"]] == [
        ("acme-cloud", 3, 1),
        ("bolt-hw", 3, 0),
    ]
    assert cli.json("validation", "reban-rates", "--by", "cluster", "--days", "45")["rebanned"] == 2
    chart = tmp_path / "threshold.html"
    table = cli("validation", "threshold", "--supplier", "acme-cloud", "--html", str(chart))
    assert table.exit_code == 0 and "value of pass k" in table.stdout
    html = chart.read_text()
    assert "value of pass k" in html and "extra admitted" in html
    assert 'src="https://cdn' not in html and "plotly.js" in html.lower()


def test_ban_plan_and_suites(db: Database, cli: Cli) -> None:
    seed_fleet(db, state="in_service")
    banned = cli.json("validation", "ban", "E1", "--reason", "xid 79", "--source", "health")
    assert banned["created"] and banned["quarantined"] and banned["cluster"] == "east-frontier"
    assert cli.json("validation", "bans", "--node", "E1")[0]["reason"] == "xid 79"
    plan = cli.json("validation", "plan", "E1")
    assert (plan["path"], plan["suite"], plan["passes"]) == ("slow_path", "full", 12)
    assert "nccl_allreduce_busbw_gbps" in plan["checks"]
    suites = cli.json("validation", "suites")
    assert suites["criteria"]["H100"]["nccl_allreduce_busbw_gbps"] == 460
    bad_time = cli("validation", "ban", "E2", "--reason", "x", "--at", "soon")
    assert "field 'at'" in one_line_error(bad_time) and "ISO 8601" in bad_time.stderr and bad_time.exit_code == 2
