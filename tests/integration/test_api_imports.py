"""Inventory import over HTTP: the report, per-row errors as problem+json, partial and dry runs, size limits."""

from __future__ import annotations

import json

import pytest

from gpufleet.platform.database import Database
from tests.integration.api_support import Api, assert_problem, make_api

GOOD = """supplier,serial,hostname,sku,cluster,rack,gpu_serials
acme-cloud,NEW1,new-1,H100-SXM-80GB,east-frontier,r9,N1-0;N1-1;N1-2;N1-3;N1-4;N1-5;N1-6;N1-7
acme-cloud,NEW2,new-2,H100-SXM-80GB,east-frontier,r9,
"""
BAD = """supplier,serial,hostname,sku,cluster
acme-cloud,NEW3,new-3,H100-SXM-80GB,east-frontier
acme-cloud,NEW4,new-4,NO-SUCH-SKU,east-frontier
acme-cloud,NEW5,new-5,H100-SXM-80GB,nowhere
"""


@pytest.fixture
def api(db: Database) -> Api:
    return make_api(db)


def count(api: Api) -> int:
    return len(api.get("/api/v1/nodes?limit=1000").json()["items"])


def test_import_applies_and_is_idempotent(api: Api) -> None:
    first = api.post("/api/v1/imports/nodes?format=csv&source=supplier.csv", content=GOOD)
    assert first.status_code == 200, first.text
    report = first.json()
    assert (report["created"], report["applied"], report["gpus_written"], report["source"]) == (
        2,
        True,
        16,
        "supplier.csv",
    )
    assert count(api) == 14
    again = api.post("/api/v1/imports/nodes", content=GOOD, headers={"Content-Type": "text/csv"}).json()
    assert (again["unchanged"], again["created"], again["applied"]) == (2, 0, False)
    assert "no changes" in again["summary"]


def test_bad_rows_are_422_with_per_row_errors_and_nothing_applied(api: Api) -> None:
    response = api.post("/api/v1/imports/nodes?format=csv", content=BAD)
    problem = assert_problem(response, 422)
    assert [(e["line"], e["field"]) for e in problem["errors"]] == [(3, "sku"), (4, "cluster")]
    assert "NO-SUCH-SKU" in problem["errors"][0]["message"]
    assert problem["report"]["applied"] is False and "nothing applied" in problem["detail"]
    assert count(api) == 12


def test_partial_applies_the_good_rows_and_still_reports_the_bad(api: Api) -> None:
    problem = assert_problem(api.post("/api/v1/imports/nodes?format=csv&partial=true", content=BAD), 422)
    assert problem["report"]["applied"] is True and problem["report"]["created"] == 1
    assert len(problem["errors"]) == 2
    assert count(api) == 13


def test_dry_run_writes_nothing(api: Api) -> None:
    report = api.post("/api/v1/imports/nodes?format=csv&dry_run=true", content=GOOD).json()
    assert (report["created"], report["dry_run"], report["applied"]) == (2, True, False)
    assert count(api) == 12


def test_json_and_jsonl_bodies(api: Api) -> None:
    rows = [
        {"supplier": "bolt-hw", "serial": "J1", "hostname": "j-1", "sku": "GB300-NVL72", "cluster": "west-fleet"},
        {"supplier": "bolt-hw", "serial": "J2", "hostname": "j-2", "sku": "GB300-NVL72", "cluster": "west-fleet"},
    ]
    as_json = api.post("/api/v1/imports/nodes", json=rows)
    assert as_json.status_code == 200 and as_json.json()["created"] == 2
    jsonl = "\n".join(json.dumps({**r, "serial": r["serial"] + "L", "hostname": r["hostname"] + "l"}) for r in rows)
    as_jsonl = api.post("/api/v1/imports/nodes?source=rows.jsonl", content=jsonl)
    assert as_jsonl.status_code == 200 and as_jsonl.json()["created"] == 2


def test_unreadable_uploads_name_the_problem(api: Api) -> None:
    unknown = assert_problem(api.post("/api/v1/imports/nodes", content=GOOD), 422)
    assert unknown["field"] == "format"
    binary = assert_problem(api.post("/api/v1/imports/nodes?format=csv", content=b"\xff\xfe\x00bad"), 422)
    assert binary["field"] == "body"
    header = assert_problem(api.post("/api/v1/imports/nodes?format=csv", content="serial,hostname\nX,y\n"), 422)
    assert "supplier" in header["detail"]
    assert assert_problem(api.post("/api/v1/imports/nodes?format=xml", content=GOOD), 422)["field"] == "format"


def test_upload_over_64_mib_is_413(api: Api) -> None:
    limit = 64 * 1024 * 1024
    response = api.post("/api/v1/imports/nodes?format=csv", content=b"x" * (limit + 1))
    problem = assert_problem(response, 413)
    assert "64 MiB" in problem["detail"]
    # Between the JSON limit and the upload limit an import is accepted (and judged on its rows).
    padded = GOOD + "\n" * (2 * 1024 * 1024)
    assert api.post("/api/v1/imports/nodes?format=csv", content=padded).status_code == 200
