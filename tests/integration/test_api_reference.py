"""Reference data, the lifecycle table, the summary and token management through the API."""

from __future__ import annotations

import pytest

from gpufleet.domain.lifecycle import TRANSITIONS, NodeState
from gpufleet.platform.database import Database
from tests.integration.api_support import Api, assert_problem, make_api

DOC = {
    "suppliers": [{"name": "nimbus", "kind": "cloud"}],
    "clusters": [{"name": "north-fleet", "supplier": "nimbus", "kind": "bare-metal", "role": "fleet"}],
    "nvlink_domains": [{"cluster": "north-fleet", "name": "nvl-a", "kind": "GB200-NVL72"}],
}


@pytest.fixture
def api(db: Database) -> Api:
    return make_api(db)


def test_fleet_document_dry_run_apply_and_repeat(api: Api) -> None:
    dry = api.post("/api/v1/fleet?dry_run=true", json=DOC).json()
    assert dry["dry_run"] is True and dry["created"] == {"suppliers": 1, "clusters": 1, "nvlink_domains": 1}
    assert "north-fleet" not in [c["name"] for c in api.get("/api/v1/clusters").json()["items"]]
    applied = api.post("/api/v1/fleet", json=DOC).json()
    assert applied["changed"] is True
    clusters = {c["name"]: c for c in api.get("/api/v1/clusters").json()["items"]}
    assert clusters["north-fleet"]["supplier"] == "nimbus" and clusters["north-fleet"]["kind"] == "bare-metal"
    domains = api.get("/api/v1/nvlink-domains").json()["items"]
    assert {"cluster": "north-fleet", "name": "nvl-a"}.items() <= next(
        d for d in domains if d["name"] == "nvl-a"
    ).items()
    assert api.post("/api/v1/fleet", json=DOC).json()["changed"] is False


def test_fleet_document_errors_name_the_field(api: Api) -> None:
    bad_kind = {"clusters": [{"name": "x", "supplier": "nimbus", "kind": "mainframe", "role": "fleet"}]}
    assert assert_problem(api.post("/api/v1/fleet", json=bad_kind), 422)["field"] == "clusters.0.kind"
    unknown = {"clusters": [{"name": "x", "supplier": "nobody", "kind": "slurm", "role": "fleet"}]}
    problem = assert_problem(api.post("/api/v1/fleet", json=unknown), 422)
    assert problem["field"] == "clusters[0].supplier" and "nobody" in problem["detail"]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("suppliers", {"acme-cloud", "bolt-hw"}),
        ("regions", {"us-east"}),
        ("sites", {"use1-a"}),
        ("clusters", {"east-frontier", "west-fleet"}),
        ("skus", {"H100-SXM-80GB", "GB300-NVL72"}),
        ("racks", {"r0", "r1", "r2"}),
        ("nvlink-domains", {"nvl-0", "nvl-1"}),
        ("switches", set()),
        ("partitions", set()),
        ("pools", set()),
        ("tenants", {"tenant-a", "tenant-b"}),
    ],
)
def test_reference_sections_list_by_name(api: Api, section: str, expected: set[str]) -> None:
    response = api.get(f"/api/v1/{section}")
    assert response.status_code == 200
    assert {item["name"] for item in response.json()["items"]} == expected


def test_lifecycle_is_the_domain_table(api: Api) -> None:
    body = api.get("/api/v1/lifecycle").json()
    assert [s["name"] for s in body["states"]] == [s.value for s in NodeState]
    received = next(s for s in body["states"] if s["name"] == "received")
    assert received["time_limit_seconds"] == 3 * 86400 and received["owner"] and received["action"]
    assert next(s for s in body["states"] if s["name"] == "decommissioned")["final"] is True
    assert len(body["transitions"]) == len(TRANSITIONS)
    assert {"from": "received", "event": "provision", "to": "provisioning"}.items() <= body["transitions"][0].items()


def test_summary_counts_by_state_and_cluster(api: Api) -> None:
    summary = api.get("/api/v1/summary").json()
    assert (summary["nodes"], summary["gpus"]) == (12, 8 * 8 + 4 * 4)
    assert summary["by_state"]["in_service"] == {"nodes": 6, "gpus": 4 * 8 + 2 * 4}
    assert summary["by_cluster"]["west-fleet"]["nodes"] == 4


def test_token_management(api: Api) -> None:
    made = api.post("/api/v1/tokens", who="admin", json={"name": "ci-bot", "role": "operator"})
    assert made.status_code == 201
    token = made.json()
    assert token["secret"].startswith("gf_") and token["role"] == "operator"
    listed = api.get("/api/v1/tokens", who="admin").json()["items"]
    assert "ci-bot" in [t["name"] for t in listed]
    assert all("secret" not in t and token["secret"] not in str(t) for t in listed)
    as_bot = {"Authorization": f"Bearer {token['secret']}"}
    moved = api.client.post(
        "/api/v1/nodes/gpu-05/transitions", json={"event": "provision", "reason": "r"}, headers=as_bot
    )
    assert moved.status_code == 200
    first = api.delete(f"/api/v1/tokens/{token['id']}", who="admin").json()
    second = api.delete(f"/api/v1/tokens/{token['id']}", who="admin").json()
    assert first["revoked_at"] == second["revoked_at"]
    assert_problem(api.client.get("/api/v1/nodes", headers=as_bot), 401)
    scoped = api.post(
        "/api/v1/tokens", who="admin", json={"name": "tenant-b-ro", "role": "viewer", "tenant": "tenant-b"}
    )
    secret = scoped.json()["secret"]
    seen = api.client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {secret}"}).json()["items"]
    assert [n["serial"] for n in seen] == ["SN09"]
