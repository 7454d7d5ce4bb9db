"""Diagnostics asked of node agents: one open request per node, leases, give-up, closing through DCGM ingest."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gpufleet.fleet.inventory import import_nodes
from gpufleet.health.ingest import ingest
from gpufleet.health.requests import (
    MAX_ATTEMPTS,
    claim_requests,
    get_request,
    list_requests,
    request_diagnostic,
)
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound
from tests.factories import OPERATOR, VIEWER, seed_reference
from tests.integration.api_support import NODES_CSV, Api, assert_problem, make_api, node_id
from tests.integration.cli_support import Cli

FIXTURES = Path(__file__).parents[1] / "fixtures" / "health"


@pytest.fixture
def fleet(db: Database) -> Iterator[Database]:
    seed_reference(db)
    assert import_nodes(db, NODES_CSV, "fleet.csv", OPERATOR).applied
    yield db


def test_one_open_request_per_node(fleet: Database) -> None:
    first = request_diagnostic(fleet, "gpu-01", 2, OPERATOR, "after a GPU reset")
    again = request_diagnostic(fleet, "SN01", 3, OPERATOR, "asked twice")
    assert first.created and not again.created and again.id == first.id and again.level == 2
    other = request_diagnostic(fleet, "gpu-02", 1, OPERATOR, "another node")
    assert other.created and other.node == node_id("SN02")
    assert [r.id for r in list_requests(fleet, VIEWER, status="pending")] == [other.id, first.id]


def test_claim_runs_once_then_again_after_the_lease(fleet: Database, clock: ManualClock) -> None:
    asked = request_diagnostic(fleet, "gpu-01", 1, OPERATOR, "check")
    taken = claim_requests(fleet, "gpu-01", OPERATOR)
    assert [(r.id, r.status, r.attempts) for r in taken] == [(asked.id, "running", 1)]
    assert claim_requests(fleet, "gpu-01", OPERATOR) == []  # held by the agent that took it
    clock.advance(timedelta(minutes=11))  # past the level-1 lease: the agent died
    assert [r.attempts for r in claim_requests(fleet, "gpu-01", OPERATOR)] == [2]
    for _ in range(MAX_ATTEMPTS - 2):
        clock.advance(timedelta(minutes=11))
        claim_requests(fleet, "gpu-01", OPERATOR)
    clock.advance(timedelta(minutes=11))
    assert claim_requests(fleet, "gpu-01", OPERATOR) == []
    failed = get_request(fleet, asked.id, VIEWER)
    assert failed.status == "failed" and "never reported back" in failed.result["error"]
    assert request_diagnostic(fleet, "gpu-01", 1, OPERATOR, "try again").created  # a closed request allows a new one


def test_a_dcgm_report_closes_its_request_in_the_same_transaction(fleet: Database, clock: ManualClock) -> None:
    asked = request_diagnostic(fleet, "gpu-02", 3, OPERATOR, "memory suspect")
    claim_requests(fleet, "gpu-02", OPERATOR)
    text = (FIXTURES / "dcgm4-fail.json").read_text()
    report = ingest(fleet, text, "dcgm", OPERATOR, "gpu-02", delivery="run-1", request_id=asked.id)
    assert report.accepted == 2
    done = get_request(fleet, asked.id, VIEWER)
    assert done.status == "done" and done.result == {"codes": ["dcgm:error-3", "dcgm:error-50"], "passed": False}
    clock.advance(timedelta(seconds=30))  # the agent's retry after a lost response: same delivery, later
    retry = ingest(fleet, text, "dcgm", OPERATOR, "gpu-02", delivery="run-1", request_id=asked.id)
    assert retry.duplicates == 2 and get_request(fleet, asked.id, VIEWER).finished_at == done.finished_at


def test_a_report_for_an_unknown_or_foreign_request_stores_nothing(fleet: Database) -> None:
    asked = request_diagnostic(fleet, "gpu-02", 1, OPERATOR, "check")
    body = (FIXTURES / "dcgm4-pass.json").read_text()
    with pytest.raises(InvalidInput, match="no agent request"):
        ingest(fleet, body, "dcgm", OPERATOR, "gpu-01", request_id=asked.id)
    with pytest.raises(InvalidInput, match="no agent request 999"):
        ingest(fleet, body, "dcgm", OPERATOR, "gpu-02", request_id=999)
    from gpufleet.health.events import list_events

    assert list_events(fleet, VIEWER).items == []


def test_roles_and_bad_input(fleet: Database) -> None:
    tenant = Actor(name="t", role=Role.ADMIN, tenant_id=1)
    with pytest.raises(Forbidden):
        request_diagnostic(fleet, "gpu-01", 1, VIEWER, "x")
    with pytest.raises(Forbidden):
        claim_requests(fleet, "gpu-01", VIEWER)
    with pytest.raises(Forbidden):
        list_requests(fleet, tenant)
    with pytest.raises(InvalidInput, match="level"):
        request_diagnostic(fleet, "gpu-01", 5, OPERATOR, "x")
    with pytest.raises(InvalidInput, match="why"):
        request_diagnostic(fleet, "gpu-01", 1, OPERATOR, "  ")
    with pytest.raises(NotFound):
        request_diagnostic(fleet, "gpu-99", 1, OPERATOR, "x")
    with pytest.raises(NotFound):
        get_request(fleet, 12345, VIEWER)


@pytest.fixture
def api(db: Database) -> Api:
    return make_api(db)


def test_agent_request_endpoints(api: Api) -> None:
    body = {"node": "gpu-03", "level": 2, "reason": "after Xid 79"}
    assert_problem(api.post("/api/v1/agent/requests", who="viewer", json=body), 403)
    created = api.post("/api/v1/agent/requests", json=body)
    assert created.status_code == 201 and created.json()["status"] == "pending"
    assert api.post("/api/v1/agent/requests", json=body).status_code == 200
    assert api.post("/api/v1/agent/requests", json={**body, "level": 9}).status_code == 422
    claimed = api.post("/api/v1/agent/requests/claim", json={"node": "gpu-03"}).json()["requests"]
    assert [r["id"] for r in claimed] == [created.json()["id"]]
    listed = api.get("/api/v1/agent/requests", params={"status": "running"}).json()["items"]
    assert [r["node"] for r in listed] == [node_id("SN03")]
    assert api.get(f"/api/v1/agent/requests/{created.json()['id']}").json()["attempts"] == 1
    assert_problem(api.get("/api/v1/agent/requests/999"), 404)
    assert_problem(api.get("/api/v1/agent/requests", who="tenant-a"), 403)


def test_cli_asks_and_lists(fleet: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = Cli.on(fleet, monkeypatch)
    result = cli("events", "diag", "gpu-04", "--level", "1", "--reason", "after reboot")
    assert result.exit_code == 0 and "asked" in result.stdout
    assert "no changes" in cli("events", "diag", "gpu-04", "--reason", "again").stdout
    listed = cli.json("events", "requests", "--node", "gpu-04")
    assert [(r["level"], r["status"], r["reason"]) for r in listed] == [(1, "pending", "after reboot")]
