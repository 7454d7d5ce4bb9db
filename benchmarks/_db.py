"""A throwaway, migrated database for one benchmark run, on SQLite or PostgreSQL."""

from __future__ import annotations

import argparse
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from gpufleet.platform.database import Database, open_database

PG_ADMIN = os.environ.get("GPUFLEET_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def backend_arg(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


@contextmanager
def scratch_database(backend: str) -> Iterator[Database]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            db = open_database(f"sqlite:///{tmp}/bench.db")
            db.upgrade()
            try:
                yield db
            finally:
                db.dispose()
        return
    name = f"gpufleet_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = open_database(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    try:
        db.upgrade()
        yield db
    finally:
        db.dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
