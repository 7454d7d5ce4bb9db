"""Every database test runs twice: on SQLite and on PostgreSQL.

PostgreSQL comes from ``GPUFLEET_TEST_PG_URL`` (default: the local server on 127.0.0.1:5432). Without a server the
PostgreSQL half is skipped on a developer's machine, and fails loudly when ``CI`` is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import text

from gpufleet.adapters.db.engine import make_engine
from gpufleet.adapters.db.models import Base
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.database import Database

PG_ADMIN_URL = os.environ.get("GPUFLEET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _pg_admin() -> psycopg.Connection:
    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)


def pg_available() -> bool:
    try:
        with _pg_admin():
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; yields its SQLAlchemy URL."""
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN_URL} and CI is set: the PostgreSQL tests must run")
        pytest.skip("PostgreSQL is not reachable; set GPUFLEET_TEST_PG_URL to run these tests")
    name = f"gpufleet_test_{uuid.uuid4().hex[:10]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_pg_database() -> str:
    """A throwaway PostgreSQL database for tests that need their own; the caller drops it with drop_pg_database."""
    name = f"gpufleet_test_{uuid.uuid4().hex[:10]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'gpufleet.db'}"


_MIGRATED: dict[str, Database] = {}


def _migrated(url: str) -> Database:
    if url not in _MIGRATED:
        database = Database(make_engine(url), ManualClock(START))
        database.upgrade()
        _MIGRATED[url] = database
    return _MIGRATED[url]


def _wipe(database: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with database.engine.begin() as conn:
        if database.dialect == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_server"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated, empty database with a manual clock at START, on each backend in turn."""
    database = _migrated(db_url)
    _wipe(database)
    database.clock = ManualClock(START)
    yield database


@pytest.fixture
def clock(db: Database) -> ManualClock:
    assert isinstance(db.clock, ManualClock)
    return db.clock


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for database in _MIGRATED.values():
        database.dispose()
