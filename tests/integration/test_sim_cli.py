"""`gpufleet simulate`: figures as a table, JSON and a self-contained HTML report; bad scenarios say where."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gpufleet.cli.main import app
from tests.integration.cli_support import RUNNER, one_line_error
from tests.integration.sim_helpers import SMALL, figures


@pytest.fixture(autouse=True)
def in_memory_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a database named, a simulation runs in memory; make sure the environment names none."""
    monkeypatch.delenv("GPUFLEET_DATABASE_URL", raising=False)


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL, encoding="utf-8")
    return path


def simulate(*args: str) -> tuple[int, str]:
    result = RUNNER.invoke(app, ["simulate", *args], catch_exceptions=False, env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_simulate_prints_figures_and_writes_json_and_html(scenario: Path, tmp_path: Path) -> None:
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    code, output = simulate(str(scenario), "--days", "3", "--seed", "8", "--json", str(out), "--html", str(page))
    assert code == 0, output
    assert "unexpected interruptions" in output and "availability" in output
    data = json.loads(out.read_text())
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
        assert key in data
    assert data["simulated_days"] == 3 and data["seed"] == 8 and data["nodes"] == 48
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "small" in text
    assert not re.search(r"<script[^>]+src=", text), "the report must not load scripts from anywhere"
    assert text.count('class="plotly-graph-div"') == 7
    assert len(text) > 1_000_000  # plotly.js itself is embedded


def test_the_same_seed_gives_the_same_json(scenario: Path, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        target = tmp_path / f"{name}.json"
        code, output = simulate(str(scenario), "--days", "2", "--seed", "11", "--json", str(target), "--quiet")
        assert code == 0, output
        runs.append(figures(json.loads(target.read_text())))
    assert runs[0] == runs[1]


def test_json_can_go_to_stdout_for_scripts(scenario: Path) -> None:
    result = RUNNER.invoke(app, ["simulate", str(scenario), "--days", "1", "--json", "-"], catch_exceptions=False)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["nodes"] == 42


def test_a_shipped_scenario_runs_by_name() -> None:
    code, output = simulate("llama3", "--days", "0.5")
    assert code == 0, output
    assert "2,048 nodes, 16,384 GPUs" in output


def test_a_bad_scenario_file_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.replace("count: 24", "count: -3"), encoding="utf-8")
    result = RUNNER.invoke(app, ["simulate", str(bad)])
    assert result.exit_code == 2
    message = one_line_error(result)
    assert "bad.yaml, line 17, field 'fleet.clusters[0].nodes[0].count'" in message


def test_an_unknown_scenario_lists_the_shipped_ones() -> None:
    result = RUNNER.invoke(app, ["simulate", "atlantis"])
    assert result.exit_code == 2 and "demo, demo-6-passes, fleet-100k, llama3" in one_line_error(result)


def test_a_database_with_nodes_is_refused(tmp_path: Path, scenario: Path) -> None:
    url = f"sqlite:///{tmp_path / 'used.db'}"
    assert simulate(str(scenario), "--days", "0.2", "--database-url", url, "--quiet")[0] == 0
    result = RUNNER.invoke(app, ["simulate", str(scenario), "--database-url", url])
    assert result.exit_code == 1 and "already holds" in one_line_error(result)
