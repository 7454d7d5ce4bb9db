"""Health telemetry over the API: one endpoint per format, roles, the event list and the unmatched list."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.platform.database import Database
from tests.integration.api_support import Api, assert_problem, make_api, node_id

FIXTURES = Path(__file__).parents[1] / "fixtures" / "health"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    api = make_api(db)
    db.ingest_reactions.clear()  # ingest on its own: remediation's reaction is not under test here
    yield api


@pytest.mark.parametrize(
    ("fmt", "name", "accepted", "node"),
    [
        ("xid", "kern.log", 8, None),
        ("nvidia-smi", "nvidia-smi-h100.xml", 4, "gpu-01"),
        ("dcgm", "dcgm4-fail.json", 2, None),
        ("alertmanager", "alertmanager-firing.json", 3, None),
        ("json", "events.jsonl", 5, None),
    ],
)
def test_each_format_has_its_endpoint(api: Api, fmt: str, name: str, accepted: int, node: str | None) -> None:
    params = {"source": name, **({"node": node} if node else {})}
    response = api.post(f"/api/v1/events/{fmt}", content=fixture(name), params=params)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["accepted"] == accepted and report["format"] == fmt and report["source"] == name
    again = api.post(f"/api/v1/events/{fmt}", content=fixture(name), params=params).json()
    assert again["accepted"] == 0 and again["duplicates"] == accepted


def test_alertmanager_posts_its_webhook_with_a_bearer_token(api: Api) -> None:
    headers = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.28.1"}
    first = api.post("/api/v1/events/alertmanager", content=fixture("alertmanager-firing.json"), headers=headers)
    body = first.json()
    assert first.status_code == 200 and body["accepted"] == 3 and body["unmatched_count"] == 1
    assert body["problems"] == [
        {"line": 1, "where": "payload 1 alerts[3].startsAt", "message": body["problems"][0]["message"]}
    ]
    repeat = api.post("/api/v1/events/alertmanager", content=fixture("alertmanager-firing.json"), headers=headers)
    assert repeat.json()["duplicates"] == 3
    listed = api.get("/api/v1/events", params={"source": "alertmanager"}).json()["items"]
    assert {(i["code"], i["node"]["id"] if i["node"] else None) for i in listed} == {
        ("xid:79", node_id("SN03")),
        ("alert:GPUHighTemperature", node_id("SN04")),
        ("alert:GPUXidError", None),
    }


def test_who_may_post_and_read(api: Api) -> None:
    body = fixture("kern.log")
    assert_problem(api.client.post("/api/v1/events/xid", content=body), 401)
    assert_problem(api.post("/api/v1/events/xid", who="viewer", content=body), 403)
    assert_problem(api.post("/api/v1/events/xid", who="tenant-a-admin", content=body), 403)
    assert_problem(api.get("/api/v1/events", who="tenant-a"), 403)
    assert api.get("/api/v1/events").status_code == 200
    assert_problem(api.post("/api/v1/events/rematch", who="viewer"), 403)


def test_unreadable_bodies(api: Api) -> None:
    bad = assert_problem(api.post("/api/v1/events/alertmanager", content=b"{not json"), 422)
    assert bad["errors"][0]["line"] == 1 and bad["report"]["accepted"] == 0
    bomb = assert_problem(api.post("/api/v1/events/nvidia-smi", content=fixture("nvidia-smi-bomb.xml")), 422)
    assert "refused" in bomb["detail"]
    assert api.post("/api/v1/events/syslog", content=b"x").status_code == 422
    partly = api.post("/api/v1/events/json", content=fixture("events.jsonl")).json()
    assert partly["accepted"] == 5 and partly["problem_count"] == 5 and not partly["ok"]
    assert_problem(
        api.post("/api/v1/events/xid", content=b"NVRM: Xid (PCI:0000:01:00): 79, x\n" * 10, params={"delivery": ""}),
        422,
    )


def test_large_kernel_logs_get_the_upload_limit(api: Api) -> None:
    line = b"Mar  2 08:41:09 gpu-01 kernel: [1.0] usb 1-1: new high-speed USB device number 2 using xhci_hcd\n"
    body = line * (2 * 1024 * 1024 // len(line) + 1)  # over the 1 MiB JSON limit
    response = api.post("/api/v1/events/xid", content=body)
    assert response.status_code == 200 and response.json()["ignored_lines"] > 20_000


def test_list_filters_unmatched_and_pages(api: Api) -> None:
    api.post("/api/v1/events/xid", content=fixture("kern.log"))
    unmatched = api.get("/api/v1/events", params={"unmatched": "true"}).json()["items"]
    assert [(i["subject"], i["unmatched"]) for i in unmatched] == [
        ("unknown-host-7 gpu pci_bus_id 0000:18:00.0", "unknown node 'unknown-host-7'")
    ]
    page = api.get("/api/v1/events", params={"limit": 3}).json()
    assert len(page["items"]) == 3 and page["next_before"]
    rest = api.get("/api/v1/events", params={"before": page["next_before"], "limit": 100}).json()
    assert len(rest["items"]) == 5 and rest["next_before"] is None
    by_node = api.get("/api/v1/events", params={"node": "gpu-02", "code": "xid:48"}).json()["items"]
    assert len(by_node) == 1 and by_node[0]["data"]["process"] == "train"
    since = api.get("/api/v1/events", params={"since": "2026-03-02T08:44:00Z"}).json()["items"]
    assert len(since) == 4
    assert_problem(api.get("/api/v1/events", params={"node": "nope"}), 404)
    assert api.get("/api/v1/events", params={"source": "pigeon"}).status_code == 422


def test_rematch_over_http(api: Api) -> None:
    body = {"node": "gpu-77", "code": "fan:failed", "severity": "critical", "observed_at": "2026-03-02T08:00:00Z"}
    first = api.post("/api/v1/events/json", content=json.dumps(body)).json()
    assert first["unmatched_count"] == 1
    result = api.post("/api/v1/events/rematch").json()
    assert result == {"examined": 1, "matched": 0, "still_unmatched": 1, "stale": 0, "event_ids": []}


def test_a_busy_server_answers_503_which_the_agent_retries(
    api: Api, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpufleet.agent.uplink import RETRY_STATUSES
    from gpufleet.health import ingest as health_ingest

    monkeypatch.setattr(health_ingest, "INGEST_WAIT_S", 0.05)
    turns = db.ingest_turns
    held = [turns.acquire(timeout=1) for _ in range(turns.size)]
    try:
        response = api.post("/api/v1/events/xid", content=fixture("kern.log"))
    finally:
        for _ in held:
            turns.release()
    assert "send it again later" in assert_problem(response, 503)["detail"]
    assert response.status_code in RETRY_STATUSES
    assert api.post("/api/v1/events/xid", content=fixture("kern.log")).json()["accepted"] == 8
