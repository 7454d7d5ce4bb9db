"""Storage behaviour the rest of the product relies on."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from gpufleet.adapters.db.models import Tenant
from gpufleet.services.database import Database


def test_reads_are_not_blocked_by_an_open_write_transaction(db: Database) -> None:
    writing = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with db.transaction() as session:
            session.add(Tenant(name="in-flight"))
            session.flush()
            writing.set()
            release.wait(5)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(5)
        started = time.monotonic()
        with db.reader() as session:
            seen = session.execute(select(func.count()).select_from(Tenant)).scalar_one()
        elapsed = time.monotonic() - started
    finally:
        release.set()
        thread.join()
    assert seen == 0  # the uncommitted row is invisible
    assert elapsed < 2.0, f"a read waited {elapsed:.1f}s for a writer"
    with db.reader() as session:
        assert session.execute(select(func.count()).select_from(Tenant)).scalar_one() == 1
