"""`gpufleet summary`, `gpufleet tokens` and `gpufleet lifecycle`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpufleet.cli.main import app
from gpufleet.domain.lifecycle import NodeState
from gpufleet.fleet.inventory import import_nodes
from gpufleet.fleet.tokens import authenticate
from gpufleet.platform.context import Role
from gpufleet.platform.database import Database
from tests.factories import OPERATOR, seed_reference
from tests.integration.cli_support import RUNNER, Cli, one_line_error

CSV = """\
supplier,serial,hostname,sku,cluster,state
acme-cloud,SN001,gpu-001,H100-SXM-80GB,east-frontier,in_service
acme-cloud,SN002,gpu-002,H100-SXM-80GB,east-frontier,quarantined
bolt-hw,SN003,gpu-003,GB300-NVL72,west-fleet,in_service
"""


@pytest.fixture
def cli(db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
    seed_reference(db)
    return Cli.on(db, monkeypatch)


def test_summary_json_has_totals_and_breakdowns(cli: Cli, db: Database) -> None:
    assert cli.json("summary")["nodes"] == 0
    assert import_nodes(db, CSV, "nodes.csv", OPERATOR).applied
    data = cli.json("summary")
    assert (data["nodes"], data["gpus"], data["gpus_in_service"]) == (3, 20, 12)
    assert data["by_state"]["quarantined"] == {"nodes": 1, "gpus": 8}
    assert data["by_cluster"]["west-fleet"] == {"nodes": 1, "gpus": 4}
    table = cli("summary")
    assert table.exit_code == 0
    assert "3 nodes, 20 GPUs" in table.stdout and "By cluster" in table.stdout


def test_tokens_create_list_revoke(cli: Cli, db: Database) -> None:
    created = cli.json("tokens", "create", "--name", "ci-bot", "--role", "operator")
    secret = created["secret"]
    assert secret.startswith("gf_") and created["role"] == "operator"
    actor = authenticate(db, secret)
    assert actor is not None and actor.role is Role.OPERATOR
    listed = cli.json("tokens", "list")
    assert [(t["id"], t["name"], t["revoked_at"]) for t in listed] == [(created["id"], "ci-bot", None)]
    assert all("secret" not in t and secret not in str(t) for t in listed)
    assert cli("tokens", "revoke", str(created["id"])).exit_code == 0
    assert authenticate(db, secret) is None
    assert cli("tokens", "revoke", str(created["id"])).exit_code == 0  # revoking again changes nothing


def test_token_secret_is_printed_once_in_the_table_view(cli: Cli, db: Database) -> None:
    result = cli("tokens", "create", "--name", "alice", "--role", "viewer", "--tenant", "tenant-a")
    assert result.exit_code == 0
    secret = next(line for line in result.stdout.splitlines() if line.startswith("gf_"))
    actor = authenticate(db, secret)
    assert actor is not None and actor.tenant_id is not None
    assert secret not in cli("tokens", "list").stdout


def test_token_errors(cli: Cli) -> None:
    bad_role = cli("tokens", "create", "--name", "x", "--role", "root")
    assert bad_role.exit_code == 2
    unknown_tenant = cli("tokens", "create", "--name", "x", "--role", "viewer", "--tenant", "nope")
    assert unknown_tenant.exit_code == 2 and "unknown tenant 'nope'" in one_line_error(unknown_tenant)
    missing = cli("tokens", "revoke", "999")
    assert missing.exit_code == 1 and "no token with id 999" in one_line_error(missing)


def test_lifecycle_diagram_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "lifecycle.mmd"
    result = RUNNER.invoke(app, ["lifecycle", "diagram", "-o", str(out)])
    assert result.exit_code == 0, result.output
    diagram = out.read_text()
    assert diagram.startswith("stateDiagram-v2")
    assert "quarantined --> draining: drain" in diagram
    dot = tmp_path / "lifecycle.dot"
    assert RUNNER.invoke(app, ["lifecycle", "diagram", "--format", "dot", "--out", str(dot)]).exit_code == 0
    assert dot.read_text().startswith("digraph lifecycle {")


def test_lifecycle_diagram_to_stdout() -> None:
    result = RUNNER.invoke(app, ["lifecycle", "diagram"])
    assert result.exit_code == 0 and result.stdout.startswith("stateDiagram-v2")


def test_lifecycle_show_lists_every_state_with_its_obligations() -> None:
    result = RUNNER.invoke(app, ["lifecycle", "show", "--output", "json"])
    assert result.exit_code == 0
    states = {s["state"]: s for s in json.loads(result.stdout)}
    assert set(states) == {s.value for s in NodeState}
    assert states["quarantined"]["allowed_events"] == ["drain", "release"]
    assert states["quarantined"]["time_limit_seconds"] == 3600
    assert states["decommissioned"]["final"] and states["decommissioned"]["allowed_events"] == []
    table = RUNNER.invoke(app, ["lifecycle", "show"], env={"COLUMNS": "200"})
    assert "awaiting_supplier" in table.stdout and "supplier_returned" in table.stdout
