"""Validation over HTTP: results upload, policies with ETags, bans, analytics, and who may call what."""

from __future__ import annotations

import json

import pytest

from gpufleet.platform.database import Database
from tests.integration.api_support import Api, assert_problem, make_api
from tests.integration.validation_support import attempt_records, jsonl, record

NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
def api(db: Database) -> Api:
    return make_api(db)


def upload(api: Api, body: str, who: str = "operator", **params: str) -> object:
    return api.post("/api/v1/validation/results", who, content=body, headers=NDJSON, params=params)


def test_results_upload_is_idempotent_and_bad_lines_come_back_with_their_line(api: Api) -> None:
    body = jsonl(attempt_records("SN05", 1, 3, cluster="east-frontier"))
    first = upload(api, body)
    assert first.status_code == 200, first.text
    assert (first.json()["added"], first.json()["attempts_passed"]) == (3, 1)
    again = upload(api, body)
    assert again.status_code == 200 and (again.json()["added"], again.json()["duplicates"]) == (0, 3)

    bad = jsonl([record("SN06", 1, 1, cluster="east-frontier"), record("nope", 1, 1, cluster="east-frontier")])
    problem = assert_problem(upload(api, bad), 422)
    assert [(e["line"], e["field"]) for e in problem["errors"]] == [(2, "node")]
    assert problem["report"]["applied"] is False
    partial = upload(api, bad, partial="true")
    assert partial.status_code == 422 and partial.json()["report"]["added"] == 1

    array = json.dumps([record("SN07", 1, 1, cluster="east-frontier", started_at=None)], indent=2)
    problem = assert_problem(
        api.post("/api/v1/validation/results", content=array, headers={"Content-Type": "application/json"}), 422
    )
    assert problem["errors"][0]["line"] == 2 and problem["errors"][0]["field"] == "started_at"


def test_only_operators_upload_and_tenant_tokens_see_no_validation_data(api: Api) -> None:
    body = jsonl([record("SN05", 1, 1, cluster="east-frontier")])
    assert_problem(upload(api, body, who="viewer"), 403)
    assert_problem(upload(api, body, who="tenant-a-admin"), 403)
    for path in ("/api/v1/validation/reban-rates", "/api/v1/validation/threshold", "/api/v1/validation/bans"):
        assert_problem(api.get(path, "tenant-a"), 403)
    assert_problem(api.client.get("/api/v1/validation/threshold"), 401)


def test_policy_read_and_change_with_etags(api: Api) -> None:
    got = api.get("/api/v1/validation/policies/east-frontier")
    assert got.status_code == 200 and got.headers["etag"] == '"0"' and got.json()["is_default"]
    changed = api.patch(
        "/api/v1/validation/policies/east-frontier", json={"slow_path_passes": 10}, headers={"If-Match": '"0"'}
    )
    assert changed.status_code == 200 and changed.json()["slow_path_passes"] == 10
    assert changed.headers["etag"] == '"1"'
    stale = api.patch(
        "/api/v1/validation/policies/east-frontier", json={"config_version": "v2"}, headers={"If-Match": '"0"'}
    )
    assert_problem(stale, 412)
    assert_problem(api.patch("/api/v1/validation/policies/east-frontier", json={"slow_path_suite": "x"}), 422)
    assert_problem(api.patch("/api/v1/validation/policies/east-frontier", "viewer", json={"fast_track_days": 3}), 403)
    cleared = api.patch("/api/v1/validation/policies/east-frontier", json={"config_version": None})
    assert cleared.status_code == 200 and cleared.json()["config_version"] is None
    plan = api.get("/api/v1/validation/plan/SN05").json()
    assert (plan["path"], plan["passes"]) == ("slow_path", 10)


def test_bans_and_analytics(api: Api) -> None:
    records = attempt_records("SN05", 1, 3, cluster="east-frontier") + attempt_records(
        "SN06", 1, 3, first_fail=2, cluster="east-frontier"
    )
    assert upload(api, jsonl(records)).status_code == 200
    created = api.post("/api/v1/validation/bans", json={"node": "SN01", "reason": "xid 79", "source": "health"})
    assert created.status_code == 201 and created.json()["quarantined"] is True
    again = api.post("/api/v1/validation/bans", json={"node": "SN01", "reason": "xid 79", "source": "health"})
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    assert api.get("/api/v1/validation/bans").json()["items"][0]["node"] == created.json()["node"]
    rates = api.get("/api/v1/validation/reban-rates", params={"by": "cluster", "days": 30}).json()
    assert rates["groups"] == [{"group": "east-frontier", "admissions": 1, "rebanned": 0, "rate": 0.0}]
    assert_problem(api.get("/api/v1/validation/reban-rates", params={"by": "colour"}), 422)
    threshold = api.get("/api/v1/validation/threshold", params={"cluster": "east-frontier"}).json()
    assert [(r["k"], r["admitted"], r["extra_admitted"], r["value_of_pass"]) for r in threshold["rows"]] == [
        (1, 2, 1, 0),
        (2, 1, 0, 1),
        (3, 1, 0, 0),
    ]
    chart = api.get("/api/v1/validation/threshold.html")
    assert chart.status_code == 200 and chart.headers["content-type"].startswith("text/html")
    assert "value of pass k" in chart.text
    assert_problem(api.get("/api/v1/validation/threshold", params={"cluster": "nowhere"}), 404)
