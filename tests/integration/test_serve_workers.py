"""`gpufleet serve --workers 2` as an operator starts it: two server processes on one port and one database.

What must happen once is held by the database, not by a process: a re-delivered alert is stored once whichever
worker takes it, and Xid 79s that reach both workers at once open one case for the node and quarantine it once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from gpufleet.adapters.db.models import HealthEvent, Node, NodeEvent, RemediationCase
from gpufleet.platform.database import Database
from tests.integration.api_support import make_api, node_id

GPUFLEET = Path(sys.executable).with_name("gpufleet")
SENDS = 8


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _workers_of(pid: int) -> list[int]:
    """The server's worker processes: its children that multiprocessing spawned to serve (not its resource
    tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and "spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def served(db: Database, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], int]]:
    api = make_api(db)
    port = _free_port()
    url = db.engine.url.render_as_string(hide_password=False)
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [str(GPUFLEET), "--database-url", url, "serve", "--port", str(port), "--workers", "2"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GPUFLEET_DATABASE_URL": ""},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "gpufleet serve did not answer within 60 s"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200 and len(_workers_of(server.pid)) == 2:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield base, api.tokens, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _alert(host: str, xid: int, fingerprint: str, at: str) -> dict[str, object]:
    return {
        "status": "firing",
        "labels": {"alertname": "GPUXidError", "Hostname": host, "gpu": "0", "xid": str(xid)},
        "annotations": {"summary": f"Xid {xid}"},
        "startsAt": at,
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }


def _post_all(base: str, token: str, bodies: list[dict[str, object]]) -> list[dict[str, object]]:
    """Every body at once, each on its own connection, so the kernel hands them to both workers."""

    def post(body: dict[str, object]) -> dict[str, object]:
        with httpx.Client(base_url=base, timeout=60) as client:
            answer = client.post("/api/v1/events/alertmanager", json=body, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        result: dict[str, object] = answer.json()
        return result

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def test_two_workers_serve_and_a_redelivered_webhook_is_stored_once(
    served: tuple[str, dict[str, str], int], db: Database
) -> None:
    base, tokens, pid = served
    assert len(_workers_of(pid)) == 2
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    alerts = [_alert(f"gpu-{i:02d}", 43, f"redeliver{i:02d}", at) for i in range(1, 13)]
    body = {"version": "4", "status": "firing", "receiver": "gpufleet", "alerts": alerts}
    answers = _post_all(base, tokens["operator"], [body] * SENDS)
    assert sum(int(str(a["accepted"])) for a in answers) == len(alerts)
    assert sum(int(str(a["duplicates"])) for a in answers) == len(alerts) * (SENDS - 1)
    with db.reader() as session:
        stored = session.execute(
            select(func.count()).where(HealthEvent.source == "alertmanager", HealthEvent.code == "xid:43")
        ).scalar_one()
    assert stored == len(alerts)


def test_xid_79s_reaching_both_workers_at_once_open_one_case_and_quarantine_once(
    served: tuple[str, dict[str, str], int], db: Database
) -> None:
    base, tokens, _ = served
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    # Different fingerprints, one node: every delivery is a new event and every worker that takes one reacts to it.
    bodies: list[dict[str, object]] = [
        {"version": "4", "status": "firing", "receiver": "gpufleet", "alerts": [_alert("gpu-01", 79, f"fell{k}", at)]}
        for k in range(SENDS)
    ]
    answers = _post_all(base, tokens["operator"], bodies)
    assert sum(int(str(a["accepted"])) for a in answers) == SENDS
    node = node_id("SN01")
    with db.reader() as session:
        cases = session.execute(select(RemediationCase.state).where(RemediationCase.node_id == node)).all()
        quarantines = session.execute(
            select(func.count()).where(NodeEvent.node_id == node, NodeEvent.to_state == "quarantined")
        ).scalar_one()
        state = session.execute(select(Node.state).where(Node.id == node)).scalar_one()
    assert len(cases) == 1, cases
    assert quarantines == 1
    assert state != "in_service"
