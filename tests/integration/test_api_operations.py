"""Operational endpoints: health, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import gpufleet.api.app as app_module
from gpufleet.api.app import create_app
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.database import Database, open_database
from tests.integration.api_support import Api, make_api


@pytest.fixture
def api(db: Database) -> Api:
    return make_api(db)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_healthz_needs_no_token_and_reports_schema(api: Api) -> None:
    response = api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "reachable" and response.json()["schema"] == "current"
    assert api.client.get("/api/v1/healthz").status_code == 200


def test_healthz_is_503_on_an_unmigrated_database(tmp_path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        response = TestClient(create_app(db)).get("/healthz")
        assert response.status_code == 503 and response.json()["schema"] == "outdated"
    finally:
        db.dispose()


def test_metrics_count_nodes_gpus_and_time_in_state(api: Api, clock: ManualClock) -> None:
    clock.advance(timedelta(hours=2))
    assert api.post("/api/v1/nodes/gpu-05/transitions", json={"event": "provision", "reason": "r"}).status_code == 200
    clock.advance(timedelta(minutes=30))
    response = api.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("gpufleet_nodes", (("cluster", "east-frontier"), ("state", "in_service")))] == 4
    assert found[("gpufleet_nodes", (("cluster", "west-fleet"), ("state", "received")))] == 2
    assert found[("gpufleet_nodes", (("cluster", "west-fleet"), ("state", "maintenance")))] == 0
    assert found[("gpufleet_gpus", (("state", "in_service"),))] == 4 * 8 + 2 * 4
    assert found[("gpufleet_gpus", (("state", "provisioning"),))] == 8
    assert found[("gpufleet_time_in_state_seconds_max", (("state", "provisioning"),))] == 30 * 60
    assert found[("gpufleet_time_in_state_seconds_sum", (("state", "provisioning"),))] == 30 * 60
    # Five received nodes (SN06-08, SN11-12), each 2.5 hours since import.
    assert found[("gpufleet_time_in_state_seconds_sum", (("state", "received"),))] == 5 * 150 * 60
    assert found[("gpufleet_time_in_state_seconds_max", (("state", "received"),))] == 150 * 60


def test_openapi_and_docs(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert spec["info"]["title"] == "gpufleet"
    paths = spec["paths"]
    for path in ("/api/v1/nodes", "/api/v1/nodes/{node}/transitions", "/api/v1/imports/nodes", "/api/v1/tokens"):
        assert path in paths
    assert "bearer" in str(spec["components"]["securitySchemes"]).lower()
    assert api.client.get("/docs").status_code == 200


def test_create_app_opens_the_database_named_by_the_environment(
    db: Database, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUFLEET_DATABASE_URL", db_url)
    settled: list[bool] = []  # the server process settles its heap; this test process keeps its own
    monkeypatch.setattr(app_module, "settle_process", lambda: settled.append(True))
    app = create_app()
    with TestClient(app) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        assert app.state.db.dialect == db.dialect
    assert settled == [True]
    with TestClient(create_app(db)) as client:  # an app embedded by its caller leaves the caller's heap alone
        assert client.get("/healthz").status_code == 200
    assert settled == [True]
