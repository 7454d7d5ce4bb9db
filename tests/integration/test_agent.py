"""`gpufleet agent` end to end: fake GPU tools on PATH, a real uvicorn server on loopback that may not be up yet."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from typer.testing import CliRunner, Result

from gpufleet.adapters.db.models import HealthEvent
from gpufleet.agent.runtime import AgentConfig
from gpufleet.agent.setup import build_agent
from gpufleet.api.app import create_app
from gpufleet.cli.main import app
from gpufleet.platform.database import Database
from tests.integration.api_support import Api, make_api, node_id
from tests.integration.test_agent_collectors import FIXTURES, XID, fake_tool

RUNNER = CliRunner()


class Server:
    """A uvicorn server on a loopback port that is reserved at once but only listens once ``start`` is called, so
    an agent can be pointed at it while it is still down."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as uvicorn does for sockets it opens
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.uv: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.uv = uvicorn.Server(uvicorn.Config(create_app(self.db), log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.uv.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.uv.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.uv is not None and self.thread is not None:
            self.uv.should_exit = True
            self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def fleet(db: Database) -> Iterator[Api]:
    api = make_api(db)
    db.ingest_reactions.clear()  # the agent's delivery is under test, not remediation's reaction
    yield api


@pytest.fixture
def server(fleet: Api) -> Iterator[Server]:
    running = Server(fleet.db)
    yield running
    running.stop()


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fleet: Api) -> Path:
    """A GPU host: fake nvidia-smi and dcgmi on PATH, a kernel log, an operator token file."""
    tools = tmp_path / "bin"
    fake_tool(tools, "nvidia-smi", FIXTURES / "nvidia-smi-h100.xml")
    fake_tool(tools, "dcgmi", FIXTURES / "dcgm4-pass.json")
    monkeypatch.setenv("PATH", str(tools))
    (tmp_path / "kern.log").write_text(XID)
    token = tmp_path / "token"
    token.write_text(fleet.tokens["operator"] + "\n")
    token.chmod(0o600)
    return tmp_path


def run_agent(host: Path, server: Server, *extra: str) -> Result:
    args = ["agent", "--server", server.url, "--token-file", str(host / "token"), "--node", "gpu-01"]
    args += ["--buffer", str(host / "buffer"), "--kernel-log", str(host / "kern.log"), "--once", *extra]
    return RUNNER.invoke(app, args, catch_exceptions=False)


def stored(db: Database) -> list[tuple[str, str | None, str]]:
    with db.reader() as session:
        rows = session.execute(
            select(HealthEvent.code, HealthEvent.node_id, HealthEvent.source).order_by(HealthEvent.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def pending(host: Path) -> int:
    return len(list((host / "buffer" / "outbox").glob("*.json")))


def test_buffers_while_the_server_is_down_then_delivers_once(host: Path, server: Server, fleet: Api) -> None:
    down = run_agent(host, server)
    assert down.exit_code == 3 and pending(host) == 2  # the nvidia-smi reading and the Xid line
    assert "cannot send" in down.stderr and fleet.tokens["operator"] not in down.output
    assert stored(fleet.db) == []
    server.start()
    up = run_agent(host, server)
    assert up.exit_code == 0, up.output
    assert pending(host) == 0
    events = stored(fleet.db)
    codes = sorted(code for code, _, _ in events)
    # The fake nvidia-smi prints the same <timestamp> each time: the second reading is the same observation and is
    # a duplicate; the Xid line is read once because the kernel log offset was kept.
    assert codes == ["ecc:uncorrectable", "row-remap:pending", "temp:slowdown", "throttle:hw_slowdown", "xid:79"]
    assert {n for _, n, _ in events} == {node_id("SN01")}
    assert fleet.tokens["operator"] not in up.output
    again = run_agent(host, server)
    assert again.exit_code == 0 and stored(fleet.db).count(("xid:79", node_id("SN01"), "xid")) == 1


def test_a_retry_of_a_delivered_entry_is_a_duplicate(host: Path, server: Server, fleet: Api) -> None:
    server.start()
    run_agent(host, server, "--kernel-source", "none")
    before = len(stored(fleet.db))
    outbox = host / "buffer" / "outbox"
    entry = (
        json.loads((host / "buffer" / "state.json").read_text()) if (host / "buffer" / "state.json").exists() else {}
    )
    assert isinstance(entry, dict)
    # Replay the exact entry the agent sent, as a retry after a lost response would.
    sent = {"format": "xid", "node": "gpu-01", "delivery": "d-fixed", "request": None, "body": XID}
    (outbox / "00000000000000000001-1-000001.json").write_text(json.dumps(sent))
    (outbox / "00000000000000000002-1-000001.json").write_text(json.dumps(sent))
    fake_tool(host / "bin", "nvidia-smi", "driver gone", code=9)
    assert run_agent(host, server, "--kernel-source", "none").exit_code == 0
    after = stored(fleet.db)
    assert [c for c, _, _ in after[before:]].count("xid:79") == 1
    assert ("nvidia-smi:failed", node_id("SN01"), "json") in after


def test_keeps_retrying_in_the_background_until_the_server_comes_up(host: Path, server: Server, fleet: Api) -> None:
    config = AgentConfig(node="gpu-01", interval=0.2, min_backoff=0.05, max_backoff=0.2)
    agent, _ = build_agent(
        config, server.url, fleet.tokens["operator"], host / "buffer", "file", host / "kern.log", timeout=2
    )
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, kwargs={"stop": stop}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: pending(host) >= 3, "the agent buffers readings while the server is down")
        assert stored(fleet.db) == []
        server.start()
        wait_for(lambda: any(c == "xid:79" for c, _, _ in stored(fleet.db)), "the buffer reaches the server")
        wait_for(lambda: pending(host) == 0, "the buffer drains")
    finally:
        stop.set()
        thread.join(timeout=10)
        agent.uplink.close()
    assert not thread.is_alive()


def test_runs_the_diagnostic_the_server_asks_for(host: Path, server: Server, fleet: Api) -> None:
    server.start()
    with httpx.Client(base_url=server.url, headers=fleet.auth("operator")) as client:
        asked = client.post("/api/v1/agent/requests", json={"node": "gpu-01", "level": 1, "reason": "after reset"})
        assert asked.status_code == 201
        again = client.post("/api/v1/agent/requests", json={"node": "gpu-01", "level": 1, "reason": "twice"})
        assert again.status_code == 200 and again.json()["id"] == asked.json()["id"]
        result = run_agent(host, server)
        assert result.exit_code == 0, result.output
        done = client.get(f"/api/v1/agent/requests/{asked.json()['id']}").json()
    assert done["status"] == "done" and done["result"] == {"codes": ["dcgm:pass"], "passed": True}
    assert (host / "bin" / "dcgmi.args").read_text() == "diag -r 1 -j|UTC\n"
    assert ("dcgm:pass", node_id("SN01"), "dcgm") in stored(fleet.db)


def test_run_diag_at_start_and_without_dcgmi(host: Path, server: Server, fleet: Api) -> None:
    server.start()
    (host / "bin" / "dcgmi").unlink()
    result = run_agent(host, server, "--run-diag", "2", "--kernel-source", "none")
    assert result.exit_code == 0
    assert ("dcgm:unavailable", node_id("SN01"), "json") in stored(fleet.db)


def test_a_wrong_token_keeps_the_buffer_and_never_shows_the_token(host: Path, server: Server) -> None:
    server.start()
    (host / "token").write_text("gpf_not-a-real-token-0123456789\n")
    result = run_agent(host, server)
    assert result.exit_code == 3 and pending(host) == 2
    assert "refused the token" in result.stderr and "gpf_not-a-real-token" not in result.output


def test_without_a_gpu_it_says_so_in_one_line(host: Path, server: Server, tmp_path: Path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = run_agent(host, server)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "error: no NVIDIA GPU here: nvidia-smi is not on PATH; run the agent on a GPU host, "
        "or pass --no-gpu-ok to send only the kernel log"
    ]
    server.start()
    kernel_only = run_agent(host, server, "--no-gpu-ok")
    assert kernel_only.exit_code == 0 and "sending the kernel log only" in kernel_only.stderr


def test_a_bad_token_file_is_bad_input(host: Path, server: Server) -> None:
    (host / "token").write_text("")
    result = run_agent(host, server)
    assert result.exit_code == 2 and "must hold one token" in result.stderr


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)
