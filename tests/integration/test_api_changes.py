"""Changing nodes through the API: transitions, label/attribute edits and allocations, with ETags and history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gpufleet.adapters.db.models import NodeEvent, NodeLabel
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.database import Database
from tests.integration.api_support import Api, assert_problem, make_api, node_id


@pytest.fixture
def api(db: Database) -> Api:
    return make_api(db)


def events(api: Api, kind: str) -> int:
    with api.db.reader() as session:
        return int(session.execute(select(func.count()).where(NodeEvent.kind == kind)).scalar_one())


def test_transition_returns_new_state_version_and_etag(api: Api) -> None:
    version = int(api.get("/api/v1/nodes/gpu-05").headers["etag"].strip('"'))
    response = api.post(
        "/api/v1/nodes/gpu-05/transitions",
        json={"event": "provision", "reason": "racked and cabled"},
        headers={"If-Match": f'"{version}"'},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["from_state"], body["state"], body["version"]) == (
        node_id("SN05"),
        "received",
        "provisioning",
        version + 1,
    )
    assert response.headers["etag"] == f'"{version + 1}"'
    detail = api.get("/api/v1/nodes/gpu-05").json()
    assert detail["state"] == "provisioning"
    assert detail["events"][0]["reason"] == "racked and cabled"


def test_invalid_event_is_409_naming_allowed_events(api: Api) -> None:
    problem = assert_problem(
        api.post("/api/v1/nodes/gpu-05/transitions", json={"event": "admit", "reason": "skip ahead"}), 409
    )
    assert problem["allowed_events"] == ["decommission", "provision"]
    assert "decommission" in problem["detail"] and "provision" in problem["detail"]
    assert problem["state"] == "received"
    assert api.get("/api/v1/nodes/gpu-05").json()["state"] == "received"


def test_stale_if_match_is_412_and_changes_nothing(api: Api) -> None:
    stale = api.get("/api/v1/nodes/gpu-03").headers["etag"]
    assert api.post("/api/v1/nodes/gpu-03/transitions", json={"event": "quarantine", "reason": "xid 79"}).is_success
    problem = assert_problem(
        api.post(
            "/api/v1/nodes/gpu-03/transitions",
            json={"event": "drain", "reason": "planned"},
            headers={"If-Match": stale},
        ),
        412,
    )
    assert problem["current_version"] == problem["expected_version"] + 1
    assert api.get("/api/v1/nodes/gpu-03").json()["state"] == "quarantined"
    problem = assert_problem(
        api.patch("/api/v1/nodes/gpu-03", json={"labels": {"x": "y"}, "reason": "r"}, headers={"If-Match": stale}),
        412,
    )
    bad = assert_problem(
        api.post(
            "/api/v1/nodes/gpu-03/transitions",
            json={"event": "drain", "reason": "r"},
            headers={"If-Match": "yesterday"},
        ),
        400,
    )
    assert bad["field"] == "If-Match"


def test_transition_body_is_validated(api: Api) -> None:
    problem = assert_problem(api.post("/api/v1/nodes/gpu-05/transitions", json={"event": "provision"}), 422)
    assert problem["field"] == "reason"
    problem = assert_problem(
        api.post("/api/v1/nodes/gpu-05/transitions", json={"event": "provision", "reason": "r", "extra": 1}), 422
    )
    assert problem["field"] == "extra"


def test_patch_merges_labels_and_attributes_and_records_it(api: Api) -> None:
    etag = api.get("/api/v1/nodes/gpu-01").headers["etag"]
    response = api.patch(
        "/api/v1/nodes/gpu-01",
        json={"labels": {"team": "infra", "tier": None}, "attributes": {"asset_tag": "A-17"}, "reason": "handover"},
        headers={"If-Match": etag},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["changed"] is True
    assert body["labels"] == {"pool": "a", "team": "infra"}
    assert body["attributes"] == {"asset_tag": "A-17"}
    assert response.headers["etag"] == f'"{int(etag.strip(chr(34))) + 1}"'
    # The selector rows follow the node row.
    assert [n["serial"] for n in api.get("/api/v1/nodes?selector=team=infra").json()["items"]] == ["SN01"]
    assert "SN01" not in [n["serial"] for n in api.get("/api/v1/nodes?selector=tier=gold").json()["items"]]
    with api.db.reader() as session:
        keys = session.execute(select(NodeLabel.key).where(NodeLabel.node_id == node_id("SN01"))).scalars().all()
    assert sorted(keys) == ["pool", "team"]
    detail = api.get("/api/v1/nodes/gpu-01").json()
    assert detail["events"][0]["kind"] == "updated" and detail["events"][0]["reason"] == "handover"
    # Repeating the same patch changes nothing and writes no second event.
    again = api.patch("/api/v1/nodes/gpu-01", json={"labels": {"team": "infra"}, "reason": "handover"})
    assert again.json()["changed"] is False and again.json()["version"] == body["version"]
    assert events(api, "updated") == 1


def test_patch_rejects_bad_labels_and_viewers(api: Api) -> None:
    problem = assert_problem(api.patch("/api/v1/nodes/gpu-01", json={"labels": {"no spaces": "x"}, "reason": "r"}), 422)
    assert problem["field"].startswith("labels")
    problem = assert_problem(api.patch("/api/v1/nodes/gpu-01", json={"labels": {"k": 5}, "reason": "r"}), 422)
    assert problem["field"].startswith("labels")
    assert_problem(api.patch("/api/v1/nodes/gpu-01", json={"reason": "nothing"}), 422)
    assert_problem(api.patch("/api/v1/nodes/gpu-01", who="viewer", json={"labels": {"k": "v"}, "reason": "r"}), 403)


def test_allocation_lifecycle_is_idempotent_and_drives_tenant_visibility(api: Api, clock: ManualClock) -> None:
    request = {"node": "gpu-05", "tenant": "tenant-a", "project": "llm-7"}
    created = api.post("/api/v1/allocations", json=request)
    assert created.status_code == 201, created.text
    allocation = created.json()
    assert (allocation["node"], allocation["tenant"], allocation["active"]) == (node_id("SN05"), "tenant-a", True)
    clock.advance(timedelta(minutes=1))
    repeat = api.post("/api/v1/allocations", json=request)
    assert repeat.status_code == 200 and repeat.json()["id"] == allocation["id"]
    assert events(api, "allocated") == 1
    assert "SN05" in [n["serial"] for n in api.get("/api/v1/nodes", who="tenant-a").json()["items"]]

    conflict = assert_problem(api.post("/api/v1/allocations", json={"node": "gpu-05", "tenant": "tenant-b"}), 409)
    assert "tenant-a" in conflict["detail"]
    unknown = assert_problem(api.post("/api/v1/allocations", json={"node": "gpu-06", "tenant": "nobody"}), 422)
    assert unknown["field"] == "tenant"
    backwards = {"node": "gpu-06", "tenant": "tenant-a", "ends_at": "2020-01-01T00:00:00Z"}
    assert assert_problem(api.post("/api/v1/allocations", json=backwards), 422)["field"] == "ends_at"
    naive = {"node": "gpu-06", "tenant": "tenant-a", "starts_at": "2026-03-02T09:00:00"}
    assert assert_problem(api.post("/api/v1/allocations", json=naive), 422)["field"] == "starts_at"

    listed = api.get("/api/v1/allocations?node=gpu-05&active=true").json()["items"]
    assert [a["id"] for a in listed] == [allocation["id"]]

    clock.advance(timedelta(minutes=1))
    ended = api.post(f"/api/v1/allocations/{allocation['id']}/end", json={"reason": "project over"})
    assert ended.status_code == 200 and ended.json()["changed"] is True and ended.json()["active"] is False
    again = api.delete(f"/api/v1/allocations/{allocation['id']}")
    assert again.status_code == 200 and again.json()["changed"] is False
    assert events(api, "released") == 1
    assert "SN05" not in [n["serial"] for n in api.get("/api/v1/nodes", who="tenant-a").json()["items"]]
    assert_problem(api.get("/api/v1/nodes/gpu-05", who="tenant-a"), 403)
    assert_problem(api.delete("/api/v1/allocations/999999"), 404)
    # Now free, the node can go to the other tenant.
    assert api.post("/api/v1/allocations", json={"node": "gpu-05", "tenant": "tenant-b"}).status_code == 201


def test_future_allocation_can_be_cancelled_before_it_starts(api: Api, clock: ManualClock) -> None:
    start = (clock.now() + timedelta(days=2)).isoformat()
    made = api.post("/api/v1/allocations", json={"node": "gpu-06", "tenant": "tenant-b", "starts_at": start})
    assert made.status_code == 201 and made.json()["active"] is False
    assert "SN06" not in [n["serial"] for n in api.get("/api/v1/nodes", who="tenant-a").json()["items"]]
    cancelled = api.post(f"/api/v1/allocations/{made.json()['id']}/end").json()
    assert cancelled["ends_at"] == cancelled["starts_at"]
    clock.advance(timedelta(days=3))
    assert api.get("/api/v1/allocations?node=gpu-06&active=true").json()["items"] == []
