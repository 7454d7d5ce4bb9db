"""Storage behaviour the rest of the product relies on."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import Tenant
from gpufleet.platform import database as database_module
from gpufleet.platform.database import Database


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


def test_writers_of_one_process_take_turns_and_a_stuck_one_is_named(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:

    holding = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with db.transaction() as session:
            session.add(Tenant(name="first"))
            session.flush()
            holding.set()
            release.wait(5)
            order.append("first")

    def second() -> None:
        with db.transaction() as session:
            order.append("second")
            session.add(Tenant(name="second"))

    one = threading.Thread(target=first)
    one.start()
    assert holding.wait(5)
    two = threading.Thread(target=second)
    two.start()
    time.sleep(0.2)
    if db.dialect == "sqlite":  # one writer at a time: the second waits for its turn, and a long wait is an error
        assert order == []
        monkeypatch.setattr(database_module, "WRITER_WAIT_S", 0.1)
        with pytest.raises(TimeoutError, match="write turn"), db.transaction():
            pass
    release.set()
    one.join()
    two.join()
    if db.dialect == "sqlite":
        assert order == ["first", "second"]
    with db.reader() as session:
        assert session.execute(select(func.count()).select_from(Tenant)).scalar_one() == 2


def test_sqlite_writes_keep_one_connection_apart_from_the_readers(db: Database) -> None:
    """A SQLite connection drops its page cache when it begins after another connection wrote; writes on a connection
    of their own keep theirs warm from one write to the next. PostgreSQL has no such cache to keep."""

    def dbapi(session: Session) -> object:
        return session.connection().connection.dbapi_connection

    writers = []
    for name in ("one", "two", "three"):
        with db.reader() as reading:
            reader = dbapi(reading)
            with db.transaction() as session:
                session.add(Tenant(name=name))
                writers.append(dbapi(session))
        if db.dialect == "sqlite":
            assert reader is not writers[-1]
    if db.dialect == "sqlite":
        assert writers[0] is writers[1] is writers[2]
    with db.reader() as session:  # what the writer committed, every reader sees
        assert session.execute(select(func.count()).select_from(Tenant)).scalar_one() == 3
