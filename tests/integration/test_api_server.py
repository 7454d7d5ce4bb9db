"""The API served by a real uvicorn on loopback, spoken to over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from gpufleet.api.app import create_app
from gpufleet.platform.database import Database
from tests.integration.api_support import make_api


@pytest.fixture
def server(db: Database) -> Iterator[tuple[str, dict[str, str]]]:
    api = make_api(db)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(db), log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn exited while starting"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", api.tokens
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_real_http_round_trip(server: tuple[str, dict[str, str]]) -> None:
    base, tokens = server
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        headers = {"Authorization": f"Bearer {tokens['operator']}", "X-Correlation-ID": "over-the-wire"}
        page = client.get("/api/v1/nodes", params={"state": "in_service", "limit": 2}, headers=headers)
        assert page.status_code == 200 and page.headers["x-correlation-id"] == "over-the-wire"
        assert len(page.json()["items"]) == 2 and page.json()["next_cursor"]
        etag = client.get("/api/v1/nodes/gpu-05", headers=headers).headers["etag"]
        moved = client.post(
            "/api/v1/nodes/gpu-05/transitions",
            json={"event": "provision", "reason": "over http"},
            headers={**headers, "If-Match": etag},
        )
        assert moved.status_code == 200 and moved.json()["state"] == "provisioning"
        refused = client.get("/api/v1/nodes")
        assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
