"""Work the server asks of node agents: run a DCGM diagnostic now, and report it as a DCGM health event.

The flow: someone (an operator, the remediation controller) asks with ``request_diagnostic``; the node's agent polls
``claim_requests`` and gets it; it runs ``dcgmi diag -r <level> -j`` and posts the output to the DCGM ingest with the
request id, which closes the request in the same transaction as the events (``complete_request``).

A request is asked once per node at a time: asking again while one is open returns that one. A claimed request that
never reports back (the agent died, the host rebooted) is offered again after a lease that fits its level, at most
``MAX_ATTEMPTS`` times, then it fails with the reason, so nothing waits forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gpufleet.adapters.db.models import AgentRequest
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.health import store
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound

DCGM_DIAG = "dcgm-diag"
OPEN = ("pending", "running")
MAX_ATTEMPTS = 3
# dcgmi diag -r 1 takes about a minute, -r 2 a few minutes, -r 3 half an hour, -r 4 up to a couple of hours.
LEASES = {1: timedelta(minutes=10), 2: timedelta(minutes=30), 3: timedelta(hours=2), 4: timedelta(hours=4)}


@dataclass(frozen=True)
class RequestView:
    id: int
    node: str
    kind: str
    level: int
    status: str
    reason: str
    requested_by: str
    requested_at: datetime
    claimed_at: datetime | None
    attempts: int
    finished_at: datetime | None
    result: dict[str, Any]
    created: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for name in ("requested_at", "claimed_at", "finished_at"):
            value = out[name]
            out[name] = value.isoformat() if value is not None else None
        return out


def _view(row: AgentRequest, created: bool = False) -> RequestView:
    return RequestView(
        row.id,
        row.node_id,
        row.kind,
        row.level,
        row.status,
        row.reason,
        row.requested_by,
        row.requested_at,
        row.claimed_at,
        row.attempts,
        row.finished_at,
        dict(row.result or {}),
        created,
    )


def _check_operator(actor: Actor, what: str) -> None:
    if actor.role < Role.OPERATOR:
        raise Forbidden(f"{what} needs the operator role")
    if actor.tenant_scoped:
        raise Forbidden(f"a tenant-scoped token cannot {what}")


def request_diagnostic(db: Database, node: str, level: int, actor: Actor, reason: str) -> RequestView:
    """Ask the node's agent for ``dcgmi diag -r level``; idempotent while a request for the node is open."""
    _check_operator(actor, "asking for a diagnostic")
    if level not in LEASES:
        raise InvalidInput("the DCGM diagnostic level is 1, 2, 3 or 4", field="level")
    if not reason.strip():
        raise InvalidInput("say why the diagnostic is needed", field="reason")
    now = db.clock.now()
    with db.transaction() as session:
        node_id = resolve_node_id(session, node, actor, now)
        store.lock_node(session, node_id)  # one open request per node
        open_request = store.open_request(session, node_id, DCGM_DIAG, OPEN)
        if open_request is not None:
            return _view(open_request)
        row = AgentRequest(
            node_id=node_id,
            kind=DCGM_DIAG,
            level=level,
            status="pending",
            reason=reason.strip()[:2000],
            requested_by=actor.name,
            requested_at=now,
            attempts=0,
            result={},
        )
        store.add_request(session, row)
        return _view(row, created=True)


def claim_requests(db: Database, node: str, actor: Actor) -> list[RequestView]:
    """What the node's agent should run now: pending requests, and running ones whose lease ran out."""
    _check_operator(actor, "taking agent requests")
    now = db.clock.now()
    with db.transaction() as session:
        node_id = resolve_node_id(session, node, actor, now)
        rows = store.requests_to_claim(session, node_id, OPEN)
        taken: list[RequestView] = []
        for row in rows:
            lease = LEASES.get(row.level, LEASES[4])
            if row.status == "running" and row.claimed_at is not None and row.claimed_at > now - lease:
                continue
            if row.attempts >= MAX_ATTEMPTS:
                row.status, row.finished_at = "failed", now
                row.result = {"error": f"taken {row.attempts} times and never reported back"}
                continue
            row.status, row.claimed_at, row.attempts = "running", now, row.attempts + 1
            taken.append(_view(row))
        return taken


def complete_request(
    session: UnitOfWork, request_id: int, node_id: str | None, now: datetime, codes: list[str]
) -> None:
    """Close a request with the events its run produced, inside the ingest's transaction. A request already closed
    stays as it is, so an agent's retry of the same post is harmless."""
    row = store.request_for_update(session, request_id)
    if row is None or (node_id is not None and row.node_id != node_id):
        raise InvalidInput(f"no agent request {request_id} for this node", field="request")
    if row.status not in OPEN:
        return
    row.status, row.finished_at = "done", now
    row.result = {"codes": sorted(set(codes)), "passed": "dcgm:pass" in codes}


def list_requests(
    db: Database, actor: Actor, node: str | None = None, status: str | None = None, limit: int = 100
) -> list[RequestView]:
    if actor.tenant_scoped:
        raise Forbidden("agent requests are fleet data; a tenant-scoped token cannot read them")
    now = db.clock.now()
    with db.reader() as session:
        node_id = None if node is None else resolve_node_id(session, node, actor, now)
        return [_view(row) for row in store.request_page(session, max(1, min(limit, 1000)), node_id, status)]


def get_request(db: Database, request_id: int, actor: Actor) -> RequestView:
    if actor.tenant_scoped:
        raise Forbidden("agent requests are fleet data; a tenant-scoped token cannot read them")
    with db.reader() as session:
        row = store.request_by_id(session, request_id)
        if row is None:
            raise NotFound(f"no agent request {request_id}")
        return _view(row)
