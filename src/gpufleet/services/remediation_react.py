"""The immediate reaction to new health events: registered with the ingest hook when this module is imported.

Ingest calls it after its commit with the new event ids, so a fatal Xid on a serving node is quarantined within the
request that delivered it instead of at the controller's next pass. It uses one engine per database and the
default driver registry; anything it cannot finish now (a case leased by another process, a budget) the regular
controller pass carries on with, because the events' ``processed_at`` cursor and the cases' due times say so.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from gpufleet.services.context import Actor, Role
from gpufleet.services.database import Database
from gpufleet.services.drivers import DriverRegistry, default_registry
from gpufleet.services.errors import Forbidden
from gpufleet.services.health_ingest import on_ingested
from gpufleet.services.remediation import Engine, PassReport
from gpufleet.services.remediation_runtime import DbWork

_engines: dict[int, Engine] = {}
_lock = threading.Lock()
_registry: DriverRegistry | None = None


def use_registry(registry: DriverRegistry | None) -> None:
    """Act through this registry's drivers (tests and the simulator's live demo bring their own)."""
    global _registry
    with _lock:
        _registry = registry
        _engines.clear()


def engine_for(db: Database) -> Engine:
    with _lock:
        engine = _engines.get(id(db))
        if engine is None or engine.clock is not db.clock:
            engine = Engine(_registry or default_registry(), db.clock)
            _engines[id(db)] = engine
        return engine


CHUNK = 1000


def react_now(db: Database, ids: Sequence[int]) -> PassReport | None:
    """React to these events now, in this thread; ``None`` when there were none."""
    report = None
    for start in range(0, len(ids), CHUNK):
        with DbWork(db) as work:
            report = engine_for(db).react(work, list(ids[start : start + CHUNK]))
    return report


class _Pending:
    """Events waiting for a reaction while another thread is already reacting for the same database."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: list[int] = []
        self.running = False


_pending: dict[int, _Pending] = {}
MAX_ROUNDS = 50


def react(db: Database, ids: Sequence[int]) -> None:
    """The ingest callback. When another thread is already reacting for this database, hand it the ids and
    return: it takes them in its next round, so under a burst the reactions batch up instead of queueing for
    SQLite's one write lock one ingest at a time. Alone, it reacts before returning."""
    with _lock:
        pending = _pending.setdefault(id(db), _Pending())
    with pending.lock:
        pending.ids.extend(ids)
        if pending.running:
            return
        pending.running = True
    try:
        for _ in range(MAX_ROUNDS):
            with pending.lock:
                batch, pending.ids = pending.ids, []
                if not batch:
                    break
            react_now(db, batch)
    finally:
        with pending.lock:
            pending.running = False


on_ingested(react)


def run_once(db: Database, actor: Actor) -> dict[str, Any]:
    """One controller pass now, for an operator who does not want to wait for the next (API and tests)."""
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("running remediation needs the operator role and a token not scoped to a tenant")
    with DbWork(db) as work:
        return engine_for(db).run_pass(work).as_dict()
