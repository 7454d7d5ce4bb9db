"""The one handle on storage that entry points hold: an engine, a session factory and the clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session, sessionmaker

from gpufleet.adapters.db import migrate
from gpufleet.adapters.db.engine import READ_ONLY, database_url, make_engine
from gpufleet.services.clock import Clock, SystemClock


@dataclass
class Database:
    engine: Engine
    clock: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work: everything inside commits together or not at all."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only session: on SQLite it does not take the write lock, so reads run beside a long import."""
        with self._sessions() as session:
            session.connection(execution_options={READ_ONLY: True})
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


def open_database(url: str | None = None, clock: Clock | None = None) -> Database:
    return Database(make_engine(database_url(url)), clock or SystemClock())
