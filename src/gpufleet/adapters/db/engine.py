"""Engine creation for SQLite (the embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from gpufleet.adapters.db.json_text import from_json, to_json

DEFAULT_URL = "sqlite:///gpufleet.db"


def database_url(explicit: str | None = None) -> str:
    """The database to use: an explicit URL, then ``GPUFLEET_DATABASE_URL``, then the local SQLite file."""
    url = explicit or os.environ.get("GPUFLEET_DATABASE_URL") or DEFAULT_URL
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # psycopg 3 is the one PostgreSQL driver we ship; a plain URL should just work.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def whole_number_setting(name: str, default: int, what: str, minimum: int = 0) -> int:
    """A whole-number setting from the environment; a bad value is an error that names the variable and the value."""
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ValueError(f"{name} must be a whole number {what}, not {raw!r}")
    return int(raw)


def _checkpoint_pages() -> int:
    return whole_number_setting("GPUFLEET_SQLITE_CHECKPOINT_PAGES", 10000, "of pages")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; NORMAL sync in WAL still survives a process crash.
    # busy_timeout makes concurrent writers wait for the lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={os.environ.get('GPUFLEET_SQLITE_SYNC', 'NORMAL')}")
    cursor.execute("PRAGMA busy_timeout=30000")
    # A checkpoint runs inside whichever commit crosses the threshold and pays for the fsyncs; a longer WAL (about
    # 40 MiB at 10,000 pages) makes that rarer, so the many small transactions of a transition or an ingest stay cheap.
    cursor.execute(f"PRAGMA wal_autocheckpoint={_checkpoint_pages()}")
    cursor.close()


READ_ONLY = "gpufleet_read_only"
"""Execution option marking a read-only transaction, which on SQLite must not take the write lock."""


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock at BEGIN so a read-then-write transaction can't deadlock against another writer;
    # readers begin deferred and read the last committed snapshot beside a running writer (WAL).
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


_JSON_TEXT: dict[str, Any] = {"json_serializer": to_json, "json_deserializer": from_json}


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    resolved = database_url(url)
    if resolved.startswith("sqlite"):
        in_memory = resolved in ("sqlite://", "sqlite:///:memory:")
        options: dict[str, Any] = {"connect_args": {"check_same_thread": False}, **_JSON_TEXT}
        if in_memory:
            options["poolclass"] = StaticPool
        options.update(kwargs)
        engine = create_engine(resolved, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy own transaction boundaries so BEGIN IMMEDIATE is the one that runs.
        event.listen(engine, "connect", lambda conn, _rec: setattr(conn, "isolation_level", None))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    options = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20, **_JSON_TEXT}
    options.update(kwargs)
    return create_engine(resolved, **options)
