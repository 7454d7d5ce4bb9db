"""The immediate reaction to new health events, attached to a database by a composition root (``attach``).

The API app and the CLI attach it where they assemble themselves; nothing registers by being imported, so whether a
process reacts is written where it is put together. Ingest calls it after its commit with the new event ids, so a
fatal Xid on a serving node is quarantined within the request that delivered it instead of at the controller's next
pass. It uses one engine per database and the
default driver registry; anything it cannot finish now (a case leased by another process, a budget) the regular
controller pass carries on with, because the events' ``processed_at`` cursor and the cases' due times say so.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from gpufleet.clusters.drivers import DriverRegistry, default_registry
from gpufleet.health.ingest import NewEvents, on_ingested
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden
from gpufleet.remediation.engine import Engine, PassReport
from gpufleet.remediation.runtime import DbWork

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
    """React to these events now, in this thread; ``None`` when none needed a decision."""
    report = None
    engine = engine_for(db)
    facts = ids.facts if isinstance(ids, NewEvents) else None
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        with db.reader() as session:
            now = db.clock.now()
            book = engine.policies(session, now)
            wanted = engine.intake.triage(session, now, book, chunk, facts, engine.held_clusters(now))
        if wanted:
            with DbWork(db) as work:
                report = engine.react(work, wanted)
    return report


def react(db: Database, ids: Sequence[int]) -> None:
    """The ingest callback: react in the ingesting thread, right after its commit."""
    react_now(db, ids)


def attach(db: Database) -> None:
    """React to every ingest into ``db`` from now on; attaching twice changes nothing."""
    on_ingested(db, react)


def run_once(db: Database, actor: Actor) -> dict[str, Any]:
    """One controller pass now, for an operator who does not want to wait for the next (API and tests)."""
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("running remediation needs the operator role and a token not scoped to a tenant")
    with DbWork(db) as work:
        return engine_for(db).run_pass(work).as_dict()
