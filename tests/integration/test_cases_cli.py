"""`gpufleet cases`, `gpufleet policy` and `gpufleet remediation` end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gpufleet.platform.database import Database
from gpufleet.remediation.intake import record_health_event
from tests.integration.cli_support import Cli, one_line_error
from tests.integration.remediation_support import node_id, seed_remediation_fleet


@pytest.fixture
def cli(db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
    seed_remediation_fleet(db, east=4, west=2)
    now = datetime.now(UTC)
    with db.transaction() as session:
        record_health_event(session, node_id("E1"), "xid:79", now, now, gpu_index=2, source="test")
        record_health_event(session, node_id("E2"), "xid:13", now, now, source="test")
    return Cli.on(db, monkeypatch)


def test_a_pass_opens_cases_and_cases_list_prints_a_json_array(cli: Cli) -> None:
    report = cli.json("remediation", "run", "--once", "--no-deliver")
    assert report["opened"] == 2
    cases = cli.json("cases", "list")
    assert isinstance(cases, list) and len(cases) == 2
    by_serial = {c["node"]["serial"]: c for c in cases}
    e1 = by_serial["E1"]
    assert set(e1) >= {"id", "node", "state", "action", "kind", "owner", "detected_at", "opened_at", "state_since"}
    assert e1["node"] == {"id": node_id("E1"), "serial": "E1", "hostname": "host-e1"}
    assert (e1["kind"], e1["owner"], e1["action"]) == ("hardware", "supplier", "reboot")
    assert by_serial["E2"]["kind"] == "workload" and by_serial["E2"]["owner"] == "customer"
    only = cli.json("cases", "list", "--node", "host-e1", "--cluster", "east-frontier", "--state", e1["state"])
    assert [c["id"] for c in only] == [e1["id"]]
    assert cli.json("cases", "list", "--cluster", "west-fleet") == []
    assert "unknown case state" in one_line_error(cli("cases", "list", "--state", "sleeping"))


def test_cases_show_gives_steps_with_who_and_the_evidence(cli: Cli) -> None:
    cli("remediation", "run", "--once", "--no-deliver")
    case_id = next(c["id"] for c in cli.json("cases", "list") if c["node"]["serial"] == "E1")
    case = cli.json("cases", "show", str(case_id))
    assert case["steps"][0]["to_state"] == "detected"
    assert all(s["actor"] and s["at"] for s in case["steps"])
    assert [e["code"] for e in case["evidence"]] == ["xid:79"] and case["evidence"][0]["gpu_index"] == 2
    text = cli("cases", "show", str(case_id))
    assert (
        text.exit_code == 0
        and "Steps" in text.stdout
        and "Evidence" in text.stdout
        and "controller:remediation" in text.stdout
    )
    assert "no case with id" in one_line_error(cli("cases", "show", "999999"))


def test_a_person_closes_a_case_with_a_reason(cli: Cli) -> None:
    cli("remediation", "run", "--once", "--no-deliver")
    case_id = next(c["id"] for c in cli.json("cases", "list") if c["node"]["serial"] == "E2")
    assert one_line_error(cli("cases", "act", str(case_id), "close", "--reason", " ")).endswith(
        "required for every change"
    )
    closed = cli.json("cases", "act", str(case_id), "close", "--reason", "the tenant fixed their job")
    assert closed["state"] == "closed" and closed["human"] is True
    assert "closed cases take no action" in one_line_error(cli("cases", "act", str(case_id), "close", "--reason", "x"))


def test_policy_show_prints_the_policy_in_force_and_overrides_change_it(cli: Cli) -> None:
    policy = cli.json("policy", "show")
    assert policy["version"] == "2026.1"
    assert policy["codes"]["xid:48"]["action"] == "reset_gpu"
    assert any(r["code"] == "xid:48" and "xid:63" in r["with_any"] for r in policy["related"])
    assert any(r["name"] == "fatal-xids-24h" and r["count"] == 5 for r in policy["repeats"])
    table = cli("policy", "show", "--cluster", "east-frontier", "--code", "xid:7")
    assert table.exit_code == 0 and "Ladder" in table.stdout and "xid:79" in table.stdout
    made = cli.json(
        "policy",
        "override",
        "--cluster",
        "east-frontier",
        "--code",
        "xid:79",
        "--action",
        "rma",
        "--set",
        "cluster_budget_fraction=0.05",
        "--reason",
        "this vendor swaps GPUs overnight",
    )
    assert [o["key"] for o in made] == ["code:xid:79", "setting:cluster_budget_fraction"]
    here = cli.json("policy", "show", "--cluster", "east-frontier")
    assert here["codes"]["xid:79"]["action"] == "rma" and here["settings"]["cluster_budget_fraction"] == 0.05
    assert cli.json("policy", "show")["codes"]["xid:79"]["action"] == "reboot"
    assert cli("policy", "override", "--code", "xid:79", "--action", "rma").exit_code == 2  # no reason
    assert "unknown value" in one_line_error(
        cli("policy", "override", "--code", "xid:79", "--action", "pray", "--reason", "x")
    )
    revoked = cli("policy", "revoke", str(made[0]["id"]), "--reason", "back to normal")
    assert revoked.exit_code == 0
    assert cli.json("policy", "show", "--cluster", "east-frontier")["codes"]["xid:79"]["action"] == "reboot"
    assert len(cli.json("policy", "overrides", "--revoked")) == 2


def test_breakers_dry_run_figures_tickets_channels_outbox_and_reboots(cli: Cli) -> None:
    tripped = cli("remediation", "breaker", "trip", "east-frontier", "--reason", "fabric work tonight")
    assert tripped.exit_code == 0 and "open" in tripped.stdout
    cli("remediation", "run", "--once", "--no-deliver")
    shown = {b["cluster"]: b for b in cli.json("remediation", "breaker", "show")}
    assert shown["east-frontier"]["state"] == "open" and shown["east-frontier"]["held_cases"] == 2
    assert cli("remediation", "breaker", "reset", "east-frontier", "--reason", "done").exit_code == 0
    assert (
        cli("remediation", "dry-run", "on", "--cluster", "west-fleet", "--reason", "trying the policy").exit_code == 0
    )
    assert cli.json("policy", "show", "--cluster", "west-fleet")["settings"]["dry_run"] is True
    figures = cli.json("remediation", "figures")
    assert figures["cases_total"] == 2 and set(figures["mttr_minutes"]) == {"software", "hardware"}
    assert sum(v["count"] for v in figures["unresolved_minutes"].values()) == figures["open_cases"] == 2
    shown_figures = cli("remediation", "figures")
    assert shown_figures.exit_code == 0 and "unresolved" in shown_figures.stdout
    assert cli.json("remediation", "tickets") == []
    assert cli("remediation", "channel", "set", "default", "http://127.0.0.1:9/hook").exit_code == 0
    assert cli.json("remediation", "channel", "list")[0]["name"] == "default"
    assert set(cli.json("remediation", "outbox")["by_status"]) == {"pending", "unrouted", "sent", "dead"}
    assert cli.json("remediation", "reboots")["figures"]["total"] == 0
