"""Reading nodes through the API: filters, selectors, cursor pages, sorting, fields, detail and query counts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import event

from gpufleet.fleet.inventory import import_nodes
from gpufleet.platform.database import Database
from tests.factories import OPERATOR
from tests.integration.api_support import Api, assert_problem, make_api, node_id


@pytest.fixture
def api(db: Database) -> Api:
    return make_api(db)


def serials(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(n["serial"] for n in response.json()["items"])


def test_filters_by_state_cluster_supplier_sku_rack_and_domain(api: Api) -> None:
    assert serials(api.get("/api/v1/nodes?state=in_service")) == ["SN01", "SN02", "SN03", "SN04", "SN09", "SN10"]
    assert serials(api.get("/api/v1/nodes?state=in_service,received&cluster=west-fleet")) == [
        "SN09",
        "SN10",
        "SN11",
        "SN12",
    ]
    assert serials(api.get("/api/v1/nodes?supplier=bolt-hw&state=received")) == ["SN11", "SN12"]
    assert serials(api.get("/api/v1/nodes?sku=GB300-NVL72")) == ["SN09", "SN10", "SN11", "SN12"]
    assert serials(api.get("/api/v1/nodes?rack=r1")) == ["SN05", "SN06", "SN07", "SN08"]
    assert serials(api.get("/api/v1/nodes?nvlink_domain=nvl-1&cluster=east-frontier")) == ["SN07", "SN08"]
    assert serials(api.get("/api/v1/nodes?cluster=nowhere")) == []
    problem = assert_problem(api.get("/api/v1/nodes?state=on_fire"), 422)
    assert problem["field"] == "state" and "in_service" in problem["detail"]


def test_label_selector(api: Api) -> None:
    assert serials(api.get("/api/v1/nodes", params={"selector": "tier=gold"})) == ["SN01", "SN02", "SN03", "SN04"]
    assert serials(api.get("/api/v1/nodes", params={"selector": "tier=gold,pool=a"})) == ["SN01", "SN03"]
    assert serials(api.get("/api/v1/nodes", params={"selector": "pool!=a,!tier"})) == [
        "SN06",
        "SN08",
        "SN10",
        "SN12",
    ]
    assert serials(api.get("/api/v1/nodes", params={"selector": "tier", "cluster": "west-fleet"})) == []
    problem = assert_problem(api.get("/api/v1/nodes", params={"selector": "bad key=x"}), 422)
    assert problem["field"] == "selector"


def test_fields_trim_each_item(api: Api) -> None:
    items = api.get("/api/v1/nodes?fields=hostname,state&limit=3").json()["items"]
    assert len(items) == 3
    assert all(set(item) == {"id", "hostname", "state"} for item in items)
    full = api.get("/api/v1/nodes?limit=1").json()["items"][0]
    assert {"cluster", "supplier", "sku", "labels", "version", "gpus"} <= set(full)
    problem = assert_problem(api.get("/api/v1/nodes?fields=hostname,secret_sauce"), 422)
    assert problem["field"] == "fields" and "secret_sauce" in problem["detail"]


def walk(api: Api, query: str, limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        params: dict[str, Any] = dict(parse_qsl(query), limit=limit)
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/v1/nodes", params=params).json()
        assert len(page["items"]) <= limit
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize("sort", ["id", "-id", "hostname", "-state_since", "state"])
def test_cursor_pagination_visits_every_node_exactly_once(api: Api, sort: str) -> None:
    seen = walk(api, f"sort={sort}&fields=hostname,state,state_since", limit=5)
    ids = [n["id"] for n in seen]
    assert len(ids) == 12 and len(set(ids)) == 12
    key = sort.lstrip("-")
    values = [(n[key], n["id"]) for n in seen]
    assert values == sorted(values, reverse=sort.startswith("-"))
    # Filters hold across pages too.
    east = walk(api, "cluster=east-frontier", limit=3)
    assert len({n["id"] for n in east}) == 8 and all(n["cluster"] == "east-frontier" for n in east)


def test_bad_page_parameters_name_the_field(api: Api) -> None:
    assert assert_problem(api.get("/api/v1/nodes?limit=1001"), 422)["field"] == "limit"
    assert assert_problem(api.get("/api/v1/nodes?limit=0"), 422)["field"] == "limit"
    assert assert_problem(api.get("/api/v1/nodes?sort=colour"), 422)["field"] == "sort"
    assert assert_problem(api.get("/api/v1/nodes?cursor=not-ours"), 422)["field"] == "cursor"


@contextmanager
def counting(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_queries_behind_the_list_do_not_grow_with_page_size(api: Api) -> None:
    rows = ["supplier,serial,hostname,sku,cluster,labels,gpu_serials"]
    rows += [
        f"acme-cloud,BULK{i:04d},bulk-{i:04d},H100-SXM-80GB,east-frontier,pool=p{i % 3},"
        + ";".join(f"B{i:04d}-{g}" for g in range(8))
        for i in range(600)
    ]
    assert import_nodes(api.db, "\n".join(rows) + "\n", "bulk.csv", OPERATOR).applied
    counts = {}
    for limit in (10, 500):
        api.get("/api/v1/nodes?limit=1")  # warm the pool so connection setup is not counted
        with counting(api.db) as statements:
            response = api.get(f"/api/v1/nodes?cluster=east-frontier&selector=pool&limit={limit}")
        assert len(response.json()["items"]) == limit
        counts[limit] = len(statements)
    assert counts[10] == counts[500], counts
    assert counts[500] <= 6, counts


def test_node_detail_by_any_name_with_etag(api: Api) -> None:
    by_host = api.get("/api/v1/nodes/gpu-03")
    assert by_host.status_code == 200
    node = by_host.json()
    assert node["id"] == node_id("SN03")
    assert by_host.headers["etag"] == f'"{node["version"]}"'
    assert [g["serial"] for g in node["gpu_devices"]] == [f"G03-{g}" for g in range(8)]
    assert node["events"][0]["kind"] == "created"
    assert node["lifecycle"]["allowed_events"] == ["drain", "quarantine"]
    assert api.get(f"/api/v1/nodes/{node_id('SN03')}").json()["serial"] == "SN03"
    assert api.get("/api/v1/nodes/SN03").json()["hostname"] == "gpu-03"
    tenant_node = api.get("/api/v1/nodes/gpu-01").json()
    assert tenant_node["allocations"][0]["tenant"] == "tenant-a"
    problem = assert_problem(api.get("/api/v1/nodes/no-such-node"), 404)
    assert "no-such-node" in problem["detail"]
