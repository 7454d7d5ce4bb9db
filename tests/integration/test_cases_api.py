"""The remediation API: cases, the policy and its overrides, breakers, figures, tickets, channels, outbox, reboots;
who may do what, and tenant isolation. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from gpufleet.platform.database import Database
from gpufleet.remediation.intake import record_health_event
from tests.integration.api_support import Api, assert_problem, make_api, node_id

V1 = "/api/v1"


@pytest.fixture
def api(db: Database) -> Api:
    api = make_api(db)
    now = db.clock.now()
    with db.transaction() as session:
        record_health_event(session, node_id("SN01"), "xid:79", now, now, gpu_index=0, source="test")
        record_health_event(session, node_id("SN03"), "xid:13", now, now, source="test")
    return api


def test_a_pass_opens_cases_that_viewers_list_and_tenants_see_only_their_own(api: Api) -> None:
    assert_problem(api.post(f"{V1}/remediation/run", who="viewer"), 403)
    ran = api.post(f"{V1}/remediation/run")
    assert ran.status_code == 200 and ran.json()["opened"] == 2
    cases = api.get(f"{V1}/cases").json()
    assert sorted(c["node"]["serial"] for c in cases) == ["SN01", "SN03"]
    assert all({"id", "node", "state", "action", "kind", "owner"} <= set(c) for c in cases)
    mine = api.get(f"{V1}/cases", who="tenant-a").json()
    assert [c["node"]["serial"] for c in mine] == ["SN01"]
    other = next(c for c in cases if c["node"]["serial"] == "SN03")
    assert_problem(api.get(f"{V1}/cases/{other['id']}", who="tenant-a"), 404)
    detail = api.get(f"{V1}/cases/{other['id']}").json()
    assert detail["evidence"][0]["code"] == "xid:13" and detail["steps"]
    assert api.get(f"{V1}/cases", params={"state": "closed"}).json() == []
    assert_problem(api.get(f"{V1}/cases", params={"state": "sleeping"}), 422)
    assert api.client.get(f"{V1}/cases").status_code == 401


def test_a_person_acts_on_a_case_with_the_operator_role_and_a_reason(api: Api) -> None:
    api.post(f"{V1}/remediation/run")
    case = next(c for c in api.get(f"{V1}/cases").json() if c["node"]["serial"] == "SN03")
    path = f"{V1}/cases/{case['id']}/actions"
    assert_problem(api.post(path, who="viewer", json={"action": "close", "reason": "x"}), 403)
    assert_problem(api.post(path, json={"action": "close"}), 422)
    assert_problem(api.post(path, json={"action": "pray", "reason": "x"}), 422)
    closed = api.post(path, json={"action": "close", "reason": "the tenant's job was wrong"})
    assert closed.status_code == 200 and closed.json()["state"] == "closed" and closed.json()["human"]
    assert_problem(api.post(path, json={"action": "close", "reason": "again"}), 409)


def test_the_policy_and_its_overrides(api: Api) -> None:
    policy = api.get(f"{V1}/remediation/policy").json()
    assert policy["version"] == "2026.1" and policy["codes"]["xid:79"]["action"] == "reboot"
    body = {
        "key": "code:xid:79",
        "value": {"action": "rma"},
        "reason": "vendor swaps overnight",
        "cluster": "east-frontier",
    }
    assert_problem(api.post(f"{V1}/remediation/policy/overrides", who="viewer", json=body), 403)
    assert_problem(api.post(f"{V1}/remediation/policy/overrides", who="tenant-a-admin", json=body), 403)
    made = api.post(f"{V1}/remediation/policy/overrides", json=body)
    assert made.status_code == 201
    here = api.get(f"{V1}/remediation/policy", params={"cluster": "east-frontier"}).json()
    assert here["codes"]["xid:79"]["action"] == "rma" and here["overrides"][0]["reason"] == "vendor swaps overnight"
    assert_problem(
        api.post(f"{V1}/remediation/policy/overrides", json={**body, "key": "setting:nope", "value": 1}), 422
    )
    assert_problem(api.get(f"{V1}/remediation/policy", params={"cluster": "nowhere"}), 404)
    revoked = api.post(f"{V1}/remediation/policy/overrides/{made.json()['id']}/revoke", json={"reason": "done"})
    assert revoked.status_code == 200 and revoked.json()["revoked_by"].startswith("token:operator")
    assert api.get(f"{V1}/remediation/policy/overrides").json() == []
    assert_problem(api.get(f"{V1}/remediation/policy", who="tenant-a"), 403)


def test_breakers_figures_tickets_channels_outbox_and_reboots(api: Api) -> None:
    tripped = api.post(f"{V1}/remediation/breakers/east-frontier/trip", json={"reason": "change window"})
    assert tripped.status_code == 200 and tripped.json()["state"] == "open"
    api.post(f"{V1}/remediation/run")
    east = next(b for b in api.get(f"{V1}/remediation/breakers").json() if b["cluster"] == "east-frontier")
    assert east["state"] == "open" and east["held_cases"] == 2
    assert_problem(api.post(f"{V1}/remediation/breakers/east-frontier/reset", json={"reason": ""}), 422)
    reset = api.post(f"{V1}/remediation/breakers/east-frontier/reset", json={"reason": "window over"})
    assert reset.json()["state"] == "closed" and reset.json()["reset_reason"] == "window over"
    figures = api.get(f"{V1}/remediation/figures").json()
    assert figures["cases_total"] == 2 and "by_supplier" in figures["automation"]
    assert api.get(f"{V1}/remediation/tickets").json() == []
    put = api.client.put(
        f"{V1}/remediation/channels/default", headers=api.auth("operator"), json={"url": "http://127.0.0.1:9/x"}
    )
    assert put.status_code == 200
    assert api.get(f"{V1}/remediation/channels").json()[0]["url"] == "http://127.0.0.1:9/x"
    assert api.get(f"{V1}/remediation/outbox").json()["by_status"]["pending"] == 0
    assert api.post(f"{V1}/remediation/outbox/deliver").json()["sent"] == 0
    assert api.get(f"{V1}/remediation/reboots").json()["figures"]["total"] == 0
    assert_problem(api.get(f"{V1}/remediation/reboots", params={"outcome": "maybe"}), 422)


def test_metrics_carry_the_remediation_figures(api: Api) -> None:
    api.post(f"{V1}/remediation/run")
    text = api.client.get("/metrics").text
    # SN01 and SN03 share NVLink domain nvl-0 (6 nodes): its budget lets one out at a time.
    assert 'gpufleet_remediation_open_cases{cluster="east-frontier",state="diagnosing"} 1.0' in text
    assert 'gpufleet_remediation_open_cases{cluster="east-frontier",state="detected"} 1.0' in text
    assert "# HELP gpufleet_remediation_mttr_minutes" in text
    assert "# HELP gpufleet_remediation_automation_ratio" in text
    assert "gpufleet_outbox_messages" in text
    assert 'gpufleet_nodes{cluster="east-frontier",state="in_service"}' in text  # the fleet's own gauges still there


def test_the_case_lifecycle_is_read_from_the_case_table(api: Api) -> None:
    from gpufleet.domain.remediation import CASE_TRANSITIONS, PERSON_ACTIONS, CaseState

    lifecycle = api.get(f"{V1}/cases/lifecycle", who="tenant-a").json()
    states = {s["name"]: s for s in lifecycle["states"]}
    assert list(states) == [s.value for s in CaseState]
    assert states["needs_human"]["person_actions"] == list(PERSON_ACTIONS) and states["closed"]["final"]
    assert states["closed"]["person_actions"] == [] and "escalate" in states["diagnosing"]["automation_events"]
    assert [(t["from"], t["event"], t["to"]) for t in lifecycle["transitions"]] == [
        (t.source.value, t.event, t.target.value) for t in CASE_TRANSITIONS
    ]
    by_person = {t["person_action"] for t in lifecycle["transitions"]} - {None}
    assert by_person == set(PERSON_ACTIONS)
    assert api.client.get(f"{V1}/cases/lifecycle").status_code == 401
