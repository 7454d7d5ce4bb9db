"""Who may do what through the API: tokens, roles, tenant scoping and the correlation id."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from gpufleet.adapters.db.models import NodeEvent
from gpufleet.platform.database import Database
from tests.integration.api_support import Api, assert_problem, make_api, node_id


@pytest.fixture
def api(db: Database) -> Api:
    return make_api(db)


def test_no_token_bad_token_and_revoked_token_get_401(api: Api) -> None:
    body = assert_problem(api.client.get("/api/v1/nodes"), 401)
    assert "Bearer" in body["detail"]
    response = api.client.get("/api/v1/nodes", headers={"Authorization": "Bearer gf_not-a-real-token"})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_problem(api.client.get("/api/v1/nodes", headers={"Authorization": "Basic dXNlcjpwdw=="}), 401)

    made = api.post("/api/v1/tokens", who="admin", json={"name": "short-lived", "role": "viewer"})
    assert made.status_code == 201
    secret = made.json()["secret"]
    assert api.client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert api.delete(f"/api/v1/tokens/{made.json()['id']}", who="admin").status_code == 200
    assert_problem(api.client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {secret}"}), 401)


ALLOCATE = {"node": "gpu-05", "tenant": "tenant-b"}
TRANSITION = {"event": "provision", "reason": "racked"}
PATCH = {"labels": {"team": "infra"}, "reason": "ownership"}
# (method, path, body, lowest role that may do it)
ROUTES = [
    ("get", "/api/v1/nodes", None, "viewer"),
    ("get", "/api/v1/nodes/gpu-05", None, "viewer"),
    ("get", "/api/v1/summary", None, "viewer"),
    ("get", "/api/v1/lifecycle", None, "viewer"),
    ("get", "/api/v1/clusters", None, "viewer"),
    ("get", "/api/v1/allocations", None, "viewer"),
    ("post", "/api/v1/nodes/gpu-05/transitions", TRANSITION, "operator"),
    ("patch", "/api/v1/nodes/gpu-06", PATCH, "operator"),
    ("post", "/api/v1/fleet?dry_run=true", {"tenants": [{"name": "tenant-c"}]}, "operator"),
    ("post", "/api/v1/allocations", ALLOCATE, "operator"),
    ("get", "/api/v1/tokens", None, "admin"),
    ("post", "/api/v1/tokens", {"name": "t", "role": "viewer"}, "admin"),
]
RANK = {"viewer": 1, "operator": 2, "admin": 3}


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_each_role_gets_exactly_what_it_is_allowed(
    api: Api, method: str, path: str, body: dict[str, object] | None, needed: str
) -> None:
    admitted = 0
    for who in ("viewer", "operator", "admin"):
        kwargs = {"json": body} if body is not None else {}
        response = getattr(api, method)(path, who=who, **kwargs)
        if RANK[who] >= RANK[needed]:
            # The first admitted caller changes things; a repeat may rightly conflict (409) but never be refused.
            expected = (200, 201) if admitted == 0 else (200, 201, 409)
            assert response.status_code in expected, (who, response.text)
            admitted += 1
        else:
            problem = assert_problem(response, 403)
            assert needed in problem["detail"]


def test_import_needs_operator(api: Api) -> None:
    csv = "supplier,serial,hostname,sku,cluster\nacme-cloud,SN99,gpu-99,H100-SXM-80GB,east-frontier\n"
    url = "/api/v1/imports/nodes?format=csv&dry_run=true"
    assert_problem(api.post(url, who="viewer", content=csv), 403)
    assert api.post(url, who="operator", content=csv).status_code == 200


def test_tenant_token_sees_only_its_allocated_nodes(api: Api) -> None:
    listed = api.get("/api/v1/nodes", who="tenant-a").json()
    assert sorted(n["serial"] for n in listed["items"]) == ["SN01", "SN02"]
    assert api.get("/api/v1/nodes/gpu-01", who="tenant-a").status_code == 200
    for other in ("gpu-09", "gpu-05", node_id("SN09")):
        assert_problem(api.get(f"/api/v1/nodes/{other}", who="tenant-a"), 403)
    summary = api.get("/api/v1/summary", who="tenant-a").json()
    assert (summary["nodes"], summary["gpus"]) == (2, 16)
    # Full-fleet views still see everything.
    assert len(api.get("/api/v1/nodes").json()["items"]) == 12


@pytest.mark.parametrize("who", ["tenant-a", "tenant-a-admin"])
def test_tenant_tokens_are_refused_everything_but_their_nodes(api: Api, who: str) -> None:
    refused = [
        api.get("/api/v1/clusters", who=who),
        api.get("/api/v1/tenants", who=who),
        api.get("/api/v1/lifecycle", who=who),
        api.get("/api/v1/tokens", who=who),
        api.get("/api/v1/allocations", who=who),
        api.post("/api/v1/nodes/gpu-01/transitions", who=who, json={"event": "drain", "reason": "x"}),
        api.patch("/api/v1/nodes/gpu-01", who=who, json={"labels": {"a": "b"}, "reason": "x"}),
        api.post("/api/v1/imports/nodes?format=csv", who=who, content="supplier,serial,hostname,sku,cluster\n"),
        api.post("/api/v1/fleet", who=who, json={}),
        api.post("/api/v1/allocations", who=who, json={"node": "gpu-01", "tenant": "tenant-a"}),
        api.post("/api/v1/tokens", who=who, json={"name": "x", "role": "viewer"}),
    ]
    for response in refused:
        assert_problem(response, 403)


def test_correlation_id_is_echoed_and_recorded_on_the_event(api: Api) -> None:
    response = api.post(
        "/api/v1/nodes/gpu-05/transitions", json=TRANSITION, headers={"X-Correlation-ID": "change-4711"}
    )
    assert response.status_code == 200
    assert response.headers["x-correlation-id"] == "change-4711"
    with api.db.reader() as session:
        event = session.execute(
            select(NodeEvent.correlation_id, NodeEvent.actor).where(NodeEvent.id == response.json()["event_id"])
        ).one()
    assert event.correlation_id == "change-4711"
    assert event.actor.startswith("token:operator")
    generated = api.get("/api/v1/nodes").headers["x-correlation-id"]
    assert len(generated) >= 16
    # A malformed id is replaced, never refused and never echoed verbatim.
    odd = api.get("/api/v1/nodes", headers={"X-Correlation-ID": "bad id with spaces"})
    assert odd.status_code == 200 and odd.headers["x-correlation-id"] != "bad id with spaces"
