"""Every error is application/problem+json: unknown routes, bad bodies, oversized bodies, bad parameters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gpufleet.platform.database import Database
from tests.integration.api_support import Api, assert_problem, make_api


@pytest.fixture
def api(db: Database) -> Api:
    return make_api(db, with_nodes=False)


def test_unknown_route_and_method(api: Api) -> None:
    problem = assert_problem(api.get("/api/v1/no-such-thing"), 404)
    assert problem["instance"] == "/api/v1/no-such-thing"
    assert problem["type"].startswith("urn:gpufleet:problem:")
    assert_problem(api.client.put("/api/v1/summary"), 405)


def test_malformed_json_and_wrong_types_name_the_field(api: Api) -> None:
    broken = api.post(
        "/api/v1/nodes/x/transitions", content=b'{"event": ', headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(broken, 422)
    assert problem["field"] == "body" and "JSON" in problem["detail"]
    problem = assert_problem(api.post("/api/v1/tokens", who="admin", json={"name": "x", "role": "root"}), 422)
    assert problem["field"] == "role"
    assert problem["errors"][0]["in"] == "body"
    assert "role" in problem["detail"]


def test_json_body_over_1_mib_is_413_by_content_length(api: Api) -> None:
    huge = {"tenants": [{"name": f"t{i:07d}"} for i in range(80_000)]}
    problem = assert_problem(api.post("/api/v1/fleet", json=huge), 413)
    assert "1 MiB" in problem["detail"]


def test_json_body_over_1_mib_is_413_when_streamed_without_length(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"tenants": ['
        for i in range(40):
            yield (b'{"name": "t' + str(i).encode() + b'"},') * 2000
        yield b'{"name": "last"}]}'

    response = api.post("/api/v1/fleet", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


def test_service_errors_keep_their_status_and_field(api: Api) -> None:
    problem = assert_problem(
        api.post("/api/v1/tokens", who="admin", json={"name": "x", "role": "viewer", "tenant": "zz"}), 422
    )
    assert problem["field"] == "tenant" and "zz" in problem["detail"]
    missing = assert_problem(api.delete("/api/v1/tokens/424242", who="admin"), 404)
    assert "424242" in missing["detail"]
