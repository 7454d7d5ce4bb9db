"""The one handle on storage that entry points hold: an engine, a session factory and the clock.

Use cases pass the open session along as a ``UnitOfWork`` to their capability's store, the only code that writes SQL;
they never build a statement themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from gpufleet.adapters.db import migrate
from gpufleet.adapters.db.engine import READ_ONLY, database_url, make_engine, whole_number_setting
from gpufleet.platform.clock import Clock, SystemClock
from gpufleet.platform.turns import FairTurns

UnitOfWork = Session
"""An open transaction or read, handed from a use case to its capability's store."""

INGEST_CONCURRENCY = {"sqlite": 2, "postgresql": 8}
WRITER_WAIT_S = 30.0
"""How long a writer waits for its turn, as long as SQLite's own busy timeout."""


@dataclass
class Database:
    engine: Engine
    clock: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer. Writers of this process queue here, woken the moment the writer before them
        # commits; left to SQLite, a blocked writer polls the lock with sleeps of up to 100 ms, which under a burst of
        # concurrent ingests costs more than the writes. Other processes still meet SQLite's busy timeout.
        self._writer = threading.RLock() if self.engine.dialect.name == "sqlite" else None
        # SQLite: the writers share one pooled connection of their own. A connection drops its whole page cache when
        # it begins a transaction after another connection wrote, so writes that rotated through the pool, between
        # readers, re-read every index page they touched while holding the one write lock. Kept to writers, the
        # connection's cache stays warm from one write to the next.
        self._write_engine = self.engine
        if self._writer is not None and isinstance(self.engine.pool, QueuePool):  # not one in memory
            self._write_engine = make_engine(
                self.engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=4
            )
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        self.ingest_turns = FairTurns(ingest_concurrency(self.engine.dialect.name))
        self.ingest_reactions: list[Callable[[Database, Sequence[int]], None]] = []
        """What runs after an ingest commits new health events on this database. Empty until a composition root
        (the API app, the CLI) attaches the remediation reaction: nothing registers itself by being imported."""
        # PostgreSQL: a reader in READ COMMITTED takes a fresh snapshot for every statement anyway, so its BEGIN and
        # ROLLBACK are two round trips that buy nothing; it runs in autocommit.
        self._read_options: dict[str, object] = {READ_ONLY: True}
        if self.engine.dialect.name == "postgresql":
            self._read_options["isolation_level"] = "AUTOCOMMIT"

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work: everything inside commits together or not at all."""
        if self._writer is None:
            with self._sessions() as session, session.begin():
                yield session
            return
        if not self._writer.acquire(timeout=WRITER_WAIT_S):
            raise TimeoutError(f"no write turn on {self.url} within {WRITER_WAIT_S:.0f} s: another writer holds it")
        try:
            with self._write_sessions() as session, session.begin():
                yield session
        finally:
            self._writer.release()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only session: on SQLite it does not take the write lock, so reads run beside a long import."""
        with self._sessions() as session:
            session.connection(execution_options=self._read_options)
            try:
                yield session
            finally:
                session.rollback()

    def upgrade(self) -> None:
        migrate.upgrade(self.engine)

    def is_current(self) -> bool:
        return migrate.current_revision(self.engine) == migrate.head_revision()

    def revision(self) -> str | None:
        """The schema revision stored in the database, ``None`` when it was never migrated."""
        return migrate.current_revision(self.engine)

    @staticmethod
    def head_revision() -> str | None:
        """The revision this version of gpufleet expects."""
        return migrate.head_revision()

    def has_schema(self) -> bool:
        return inspect(self.engine).has_table("nodes")

    def dispose(self) -> None:
        self.engine.dispose()
        if self._write_engine is not self.engine:
            self._write_engine.dispose()


def ingest_concurrency(dialect: str) -> int:
    """How many health ingests one process works on at once: ``GPUFLEET_INGEST_CONCURRENCY``, else 2 on SQLite and 8
    on PostgreSQL.

    Parsing, matching and the reaction are Python, which runs one thread at a time. On SQLite, ingests past a couple
    only contend for the interpreter lock and the one writer, and every one of them gets slower; waiting their turn in
    arrival order, a burst is taken at the rate the process can sustain. On PostgreSQL the waits on the server leave
    room for more. More throughput comes from more processes (replicas on PostgreSQL), not more threads.
    """
    return whole_number_setting(
        "GPUFLEET_INGEST_CONCURRENCY", INGEST_CONCURRENCY.get(dialect, 2), "of 1 or more", minimum=1
    )


def open_database(url: str | None = None, clock: Clock | None = None) -> Database:
    return Database(make_engine(database_url(url)), clock or SystemClock())
