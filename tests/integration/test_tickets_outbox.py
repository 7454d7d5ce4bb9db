"""Supplier tickets: one per hardware unit with the evidence, delivered by webhook through the durable outbox to a
real HTTP receiver on loopback that is down for a while. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from gpufleet.adapters.db.models import OutboxMessage
from gpufleet.adapters.drivers.base import RepairAction
from gpufleet.fleet.lifecycle import apply_transition
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput
from gpufleet.remediation.cases import act
from gpufleet.remediation.outbox import deliver_due, outbox_summary, set_channel
from gpufleet.remediation.tickets import list_tickets, set_ticket_status
from tests.factories import OPERATOR, VIEWER
from tests.integration.remediation_support import Harness, harness, node_id


class Receiver:
    """A supplier's webhook endpoint: answers ``status`` and keeps what it was sent."""

    def __init__(self) -> None:
        self.status = 503
        self.received: list[tuple[str, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((self.headers["Idempotency-Key"], json.loads(body)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tickets"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/down"


def escalate(h: Harness, serial: str, gpu: int | None = 3) -> None:
    h.break_node(serial, RepairAction.RMA)
    h.report(serial, "xid:79", gpu=gpu)
    h.settle(hours=1)
    assert h.case(serial).state == "escalated"


def messages(db: Database) -> list[OutboxMessage]:
    with db.reader() as session:
        rows = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        session.expunge_all()
        return rows


def test_a_ticket_waits_out_a_receiver_that_is_down_and_is_delivered_once_it_is_up(
    db: Database, clock: ManualClock, receiver: Receiver
) -> None:
    h = harness(db, clock)
    escalate(h, "E1")
    report = deliver_due(db)
    assert report.unrouted == 1 and messages(db)[0].status == "unrouted"
    set_channel(db, OPERATOR, "acme-rma", closed_port_url(), supplier="acme-cloud")
    down = deliver_due(db)
    assert down.retrying == 1 and down.sent == 0
    first = messages(db)[0]
    assert first.status == "pending" and first.attempts == 1 and first.last_error
    assert deliver_due(db).retrying == 0  # not due again before its backoff
    set_channel(db, OPERATOR, "acme-rma", receiver.url, supplier="acme-cloud")
    clock.advance(timedelta(minutes=1))
    assert deliver_due(db).retrying == 1  # the receiver answers 503
    receiver.status = 200
    clock.advance(timedelta(minutes=5))
    assert deliver_due(db).sent == 1
    assert deliver_due(db).sent == 0
    keys = {key for key, _ in receiver.received}
    assert len(receiver.received) == 2 and len(keys) == 1  # the same message, the same key each time
    _, body = receiver.received[-1]
    assert body["unit"] == "gpu:GPU-E1-3" and body["node_serial"] == "E1" and body["kind"] == "rma"
    assert any(item.get("code") == "xid:79" for item in body["evidence"])
    ticket = list_tickets(db, VIEWER)[0]
    assert ticket["status"] == "sent" and ticket["supplier"] == "acme-cloud"
    assert outbox_summary(db, VIEWER)["by_status"]["sent"] == 1


def test_a_second_case_on_the_same_unit_adds_to_its_open_ticket(db: Database, clock: ManualClock) -> None:
    h = harness(db, clock)
    escalate(h, "E2", gpu=None)
    with db.transaction() as session:
        act(session, h.case("E2").id, "close", "the supplier sent it back untested", OPERATOR, clock.now())
        apply_transition(session, node_id("E2"), "supplier_returned", "back, still broken", OPERATOR, clock.now())
    h.world.replace_hardware(h.world.node("east-frontier", "host-e2"), defect=False)
    escalate(h, "E2", gpu=None)  # the same fault shows again while it validates
    tickets = list_tickets(db, VIEWER)
    assert len(tickets) == 1 and len(tickets[0]["cases"]) == 2 and tickets[0]["unit"] == "node:E2"
    assert [m.topic for m in messages(db)] == ["ticket.opened", "ticket.updated"]


def test_ticket_status_is_tracked_with_a_reason(db: Database, clock: ManualClock) -> None:
    h = harness(db, clock)
    escalate(h, "E3")
    ticket_id = list_tickets(db, VIEWER)[0]["id"]
    acked = set_ticket_status(db, OPERATOR, ticket_id, "acknowledged", "supplier replied", external_ref="SR-1234")
    assert acked["status"] == "acknowledged" and acked["external_ref"] == "SR-1234"
    assert list_tickets(db, VIEWER, status="acknowledged")[0]["id"] == ticket_id
    assert list_tickets(db, VIEWER, supplier="bolt-hw") == []
    with pytest.raises(InvalidInput, match="status"):
        set_ticket_status(db, OPERATOR, ticket_id, "lost", "why")
    with pytest.raises(InvalidInput, match="reason"):
        set_ticket_status(db, OPERATOR, ticket_id, "closed", None)
    with pytest.raises(Forbidden):
        set_ticket_status(db, VIEWER, ticket_id, "closed", "why")
    with pytest.raises(InvalidInput, match="URL"):
        set_channel(db, OPERATOR, "bad", "ftp://example")
