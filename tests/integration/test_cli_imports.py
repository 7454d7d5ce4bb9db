"""`gpufleet import fleet` and `gpufleet import nodes`: exit codes, row errors with lines, partial and dry runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpufleet.fleet.reference import list_reference
from gpufleet.platform.database import Database
from tests.factories import seed_reference
from tests.integration.cli_support import Cli, one_line_error

FLEET_YAML = """\
suppliers:
  - {name: acme-cloud, kind: cloud}
clusters:
  - {name: east-frontier, supplier: acme-cloud, kind: slurm, role: frontier}
skus:
  - {name: H100-SXM-80GB, gpu_vendor: nvidia, gpu_model: H100, gpus_per_node: 8, gpu_memory_gb: 80}
"""

GOOD_CSV = """\
supplier,serial,hostname,sku,cluster,rack,labels,gpu_serials,state,tenant
acme-cloud,SN001,gpu-001,H100-SXM-80GB,east-frontier,r1,pool=a,G1;G2;G3;G4;G5;G6;G7;G8,,
acme-cloud,SN002,gpu-002,H100-SXM-80GB,east-frontier,r1,pool=a,,in_service,tenant-a
bolt-hw,SN003,gpu-003,GB300-NVL72,west-fleet,r9,,,,
"""

BAD_CSV = """\
supplier,serial,hostname,sku,cluster
acme-cloud,SN010,gpu-010,H100-SXM-80GB,east-frontier
acme-cloud,SN011,gpu-011,NOPE,east-frontier
acme-cloud,SN012,gpu-012,H100-SXM-80GB,east-frontier
acme-cloud,SN010,gpu-013,H100-SXM-80GB,east-frontier
"""


@pytest.fixture
def cli(db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli.on(db, monkeypatch)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def node_serials(cli: Cli) -> list[str]:
    return sorted(n["serial"] for n in cli.json("nodes", "list"))


def test_import_fleet_creates_then_reports_no_changes(cli: Cli, db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "fleet.yaml", FLEET_YAML)
    first = cli.json("import", "fleet", path)
    assert first["created"] == {"suppliers": 1, "clusters": 1, "skus": 1} and first["changed"]
    second = cli.json("import", "fleet", path)
    assert not second["changed"] and second["unchanged"]["clusters"] == 1
    assert [c["kind"] for c in list_reference(db, "clusters")] == ["slurm"]


def test_import_fleet_accepts_json(cli: Cli, db: Database, tmp_path: Path) -> None:
    document = {"suppliers": [{"name": "acme-cloud", "kind": "cloud"}]}
    path = write(tmp_path, "fleet.json", json.dumps(document))
    result = cli("import", "fleet", path)
    assert result.exit_code == 0, result.output
    assert [s["name"] for s in list_reference(db, "suppliers")] == ["acme-cloud"]


def test_import_fleet_dry_run_writes_nothing(cli: Cli, db: Database, tmp_path: Path) -> None:
    report = cli.json("import", "fleet", write(tmp_path, "fleet.yaml", FLEET_YAML), "--dry-run")
    assert report["dry_run"] and report["created"]["suppliers"] == 1
    assert list_reference(db, "suppliers") == []


def test_import_fleet_names_the_line_and_field_of_a_bad_value(cli: Cli, db: Database, tmp_path: Path) -> None:
    bad = FLEET_YAML.replace("kind: slurm", "kind: mainframe")
    result = cli("import", "fleet", write(tmp_path, "fleet.yaml", bad))
    message = one_line_error(result)
    assert result.exit_code == 2
    assert "line 4" in message and "clusters[0].kind" in message
    assert list_reference(db, "suppliers") == []  # nothing half-applied


def test_import_fleet_reports_malformed_yaml_with_its_line(cli: Cli, tmp_path: Path) -> None:
    result = cli("import", "fleet", write(tmp_path, "fleet.yaml", "suppliers:\n  - {name: a, kind: cloud\n"))
    message = one_line_error(result)
    assert result.exit_code == 2 and "not valid YAML" in message and "line" in message


def test_import_nodes_applies_a_good_file_and_is_idempotent(cli: Cli, db: Database, tmp_path: Path) -> None:
    seed_reference(db)
    path = write(tmp_path, "nodes.csv", GOOD_CSV)
    report = cli.json("import", "nodes", path)
    assert report["ok"] and report["applied"] and report["created"] == 3 and report["gpus_written"] == 20
    assert node_serials(cli) == ["SN001", "SN002", "SN003"]
    again = cli("import", "nodes", path)
    assert again.exit_code == 0
    assert "no changes" in again.stdout


def test_import_nodes_with_bad_rows_applies_nothing_and_names_lines(cli: Cli, db: Database, tmp_path: Path) -> None:
    seed_reference(db)
    path = write(tmp_path, "bad.csv", BAD_CSV)
    result = cli("import", "nodes", path, "--output", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert not report["applied"]
    assert [(e["line"], e["field"]) for e in report["errors"]] == [(3, "sku"), (5, "serial")]
    assert node_serials(cli) == []
    table = cli("import", "nodes", path)
    assert table.exit_code == 1
    assert "nothing applied" in table.stdout and "unknown SKU 'NOPE'" in table.stdout
    assert "duplicate row" in table.stdout


def test_import_nodes_partial_applies_good_rows_but_still_fails(cli: Cli, db: Database, tmp_path: Path) -> None:
    seed_reference(db)
    result = cli("import", "nodes", write(tmp_path, "bad.csv", BAD_CSV), "--partial", "--output", "json")
    assert result.exit_code == 1  # not everything asked for was applied
    report = json.loads(result.stdout)
    assert report["applied"] and report["created"] == 2 and len(report["errors"]) == 2
    assert node_serials(cli) == ["SN010", "SN012"]


def test_import_nodes_dry_run_lists_planned_changes(cli: Cli, db: Database, tmp_path: Path) -> None:
    seed_reference(db)
    path = write(tmp_path, "nodes.csv", GOOD_CSV)
    report = cli.json("import", "nodes", path, "--dry-run")
    assert report["dry_run"] and not report["applied"]
    assert sorted(c["serial"] for c in report["changes"]) == ["SN001", "SN002", "SN003"]
    assert node_serials(cli) == []
    table = cli("import", "nodes", path, "--dry-run")
    assert table.exit_code == 0
    assert "Planned changes" in table.stdout and "SN002" in table.stdout


def test_import_nodes_format_option_overrides_the_extension(cli: Cli, db: Database, tmp_path: Path) -> None:
    seed_reference(db)
    row = {"supplier": "acme-cloud", "serial": "J1", "hostname": "j-1", "sku": "H100-SXM-80GB"}
    rows = [row | {"cluster": "east-frontier"}]
    path = write(tmp_path, "inventory.txt", "\n".join(json.dumps(r) for r in rows) + "\n")
    unknown = cli("import", "nodes", path)
    assert unknown.exit_code == 2 and "extension" in one_line_error(unknown)
    report = cli.json("import", "nodes", path, "--format", "jsonl")
    assert report["created"] == 1


def test_import_nodes_of_a_missing_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("import", "nodes", str(tmp_path / "nope.csv"))
    assert result.exit_code == 2
    assert "does not exist" in result.output
