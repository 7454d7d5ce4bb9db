"""Every database test runs twice: on SQLite and on PostgreSQL.

PostgreSQL comes from ``GPUFLEET_TEST_PG_URL`` (default: the local server on 127.0.0.1:5432). Without a server the
PostgreSQL half is skipped on a developer's machine, and fails loudly when ``CI`` is set.

The suite runs in parallel with pytest-xdist (``--numprocesses=auto --dist=loadfile`` in pyproject.toml; ``-n0`` or
``-p no:xdist`` runs it in one process). Each worker has its own databases, copied from templates that are migrated
once per run: the first worker that needs one runs the Alembic migrations under a file lock in the run's folder, and
the others copy the result (``CREATE DATABASE ... TEMPLATE`` on PostgreSQL, a file copy on SQLite). The process that
started the run drops the templates at the end, and the next run drops what a killed run left. ``loadfile`` keeps each
module on one worker, so a module-scoped fixture is built once. Each worker that runs Slurm tests starts a loopback
cluster of its own, in its own folder and on ports that no other worker draws (tests/fixtures/slurm/cluster.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from gpufleet.adapters.db.engine import make_engine
from gpufleet.adapters.db.models import Base
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.database import Database

PG_ADMIN_URL = os.environ.get("GPUFLEET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

_RUN_DIR = pytest.StashKey[Path]()
_RUN_DIR_INPUT = "gpufleet_run_dir"
_TERMINAL_INPUT = "gpufleet_terminal"
_RUN_PREFIX = "gpufleet-tests-"
_PG_TEMPLATE_FILE = "pg-template"  # names the template database once its creation starts
_PG_TEMPLATE_READY = "pg-template.ready"
_PG_DATABASE_MARK = "pg-database."  # then the name of a worker's database, while it exists
_SQLITE_TEMPLATE = "template.db"
_SQLITE_TEMPLATE_READY = "sqlite-template.ready"


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Without pytest-xdist (``-p no:xdist``, or not installed yet) the suite runs in one process: accept and ignore
    the options that pyproject.toml's addopts passes to it."""
    if pluginmanager.has_plugin("xdist"):
        return
    group = parser.getgroup("xdist", "pytest-xdist is not loaded: these are ignored")
    group.addoption("--numprocesses", dest="numprocesses", default=None, help="ignored without pytest-xdist")
    group.addoption("--dist", dest="dist", default="no", help="ignored without pytest-xdist")


# The run: one folder shared by the workers, made by the process that starts the run and removed by it at the end.


def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        run_dir = Path(workerinput[_RUN_DIR_INPUT])
        # GNU readline, once loaded in the controller, puts COLUMNS=80 and LINES into the environment that the
        # workers inherit but the controller's os.environ does not show; the CLI then wraps its output at 80 columns
        # in a worker and not in a single process. A worker sees what the controller sees.
        for name, value in workerinput[_TERMINAL_INPUT].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    else:
        _remove_stale_runs()
        run_dir = Path(tempfile.gettempdir()) / f"{_RUN_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:10]}"
    config.stash[_RUN_DIR] = run_dir


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, in the controller: tell each worker the run's folder and the controller's terminal size."""
    node.workerinput[_RUN_DIR_INPUT] = str(node.config.stash[_RUN_DIR])
    node.workerinput[_TERMINAL_INPUT] = {name: os.environ.get(name) for name in ("COLUMNS", "LINES")}


def pytest_unconfigure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    run_dir = config.stash.get(_RUN_DIR, None)
    if run_dir is not None:
        _remove_run(run_dir)


def _remove_run(run_dir: Path) -> None:
    """Drop the run's PostgreSQL databases, if it made any, and delete its folder."""
    if not run_dir.exists():
        return
    names = [p.name.removeprefix(_PG_DATABASE_MARK) for p in run_dir.glob(f"{_PG_DATABASE_MARK}*")]
    template = run_dir / _PG_TEMPLATE_FILE
    if template.exists():
        names.append(template.read_text().strip())
    try:
        for name in names:  # a worker that died left its own; the template is the controller's to drop
            _drop_pg(name)
    except psycopg.OperationalError as exc:
        print(f"could not drop the test databases of {run_dir}: {exc}")
        return  # keep the folder, so that a later run drops them
    shutil.rmtree(run_dir, ignore_errors=True)


def _remove_stale_runs() -> None:
    """What runs that were killed left behind: their folder names the pid of the process that started them."""
    for run_dir in Path(tempfile.gettempdir()).glob(f"{_RUN_PREFIX}*-*"):
        pid = run_dir.name.removeprefix(_RUN_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            _remove_run(run_dir)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Held by one worker at a time while it makes or copies a template."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _migrate(url: str) -> None:
    database = Database(make_engine(url), ManualClock(START))
    try:
        database.upgrade()
    finally:
        database.dispose()


# PostgreSQL


def _pg_admin() -> psycopg.Connection:
    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_pg(name: str) -> None:
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_available() -> bool:
    try:
        with _pg_admin():
            return True
    except psycopg.OperationalError:
        return False


def _pg_template(run_dir: Path) -> str:
    """The run's migrated PostgreSQL template, made by the first worker that asks for it; returns its name."""
    name = f"gpufleet_test_tpl_{run_dir.name.rsplit('-', 1)[1]}"
    if not (run_dir / _PG_TEMPLATE_READY).exists():
        (run_dir / _PG_TEMPLATE_FILE).write_text(name)
        _drop_pg(name)  # what a worker that failed half-way left
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        _migrate(_pg_url(name))
        (run_dir / _PG_TEMPLATE_READY).touch()
    return name


@pytest.fixture(scope="session")
def pg_server(pytestconfig: pytest.Config) -> Iterator[str]:
    """A migrated PostgreSQL database of this worker's own, for the session; yields its SQLAlchemy URL."""
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN_URL} and CI is set: the PostgreSQL tests must run")
        pytest.skip("PostgreSQL is not reachable; set GPUFLEET_TEST_PG_URL to run these tests")
    run_dir = pytestconfig.stash[_RUN_DIR]
    name = f"gpufleet_test_{uuid.uuid4().hex[:10]}"
    mark = run_dir / f"{_PG_DATABASE_MARK}{name}"
    try:
        with _run_lock(run_dir):
            mark.touch()
            template = _pg_template(run_dir)
            with _pg_admin() as conn:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        yield _pg_url(name)
    finally:
        _drop_pg(name)
        mark.unlink(missing_ok=True)


def new_pg_database() -> str:
    """A throwaway PostgreSQL database for tests that need their own; the caller drops it with drop_pg_database."""
    name = f"gpufleet_test_{uuid.uuid4().hex[:10]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _pg_url(name)


def drop_pg_database(url: str) -> None:
    _drop_pg(url.rsplit("/", 1)[1])


# SQLite


@pytest.fixture(scope="session")
def sqlite_url(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite file of this worker's own, copied from the run's template."""
    run_dir = pytestconfig.stash[_RUN_DIR]
    path = tmp_path_factory.mktemp("db") / "gpufleet.db"
    with _run_lock(run_dir):
        template = run_dir / _SQLITE_TEMPLATE
        if not (run_dir / _SQLITE_TEMPLATE_READY).exists():
            for leftover in run_dir.glob(f"{_SQLITE_TEMPLATE}*"):  # what a worker that failed half-way left
                leftover.unlink()
            _migrate(f"sqlite:///{template}")
            (run_dir / _SQLITE_TEMPLATE_READY).touch()
        # The backup API copies the database as SQLite sees it, whatever is still in a write-ahead log.
        with contextlib.closing(sqlite3.connect(template)) as source, contextlib.closing(sqlite3.connect(path)) as copy:
            source.backup(copy)
    return f"sqlite:///{path}"


# The database fixtures


_MIGRATED: dict[str, Database] = {}
_PG_SEQUENCES: dict[str, list[str]] = {}
_TABLES = [t.name for t in reversed(Base.metadata.sorted_tables)]


def _migrated(url: str) -> Database:
    """The session's database at ``url``: migrated already, as the session fixtures copy it from a template."""
    if url not in _MIGRATED:
        database = Database(make_engine(url), ManualClock(START))
        assert database.is_current(), f"{url} is not at the head revision"
        _MIGRATED[url] = database
    return _MIGRATED[url]


def _wipe(database: Database) -> None:
    """Empty every table and start every identity from 1 again.

    On PostgreSQL this is what ``TRUNCATE ... RESTART IDENTITY`` does, as row deletes: a TRUNCATE of every table makes
    new files for each table and index and costs a few hundred milliseconds a test, deleting the few rows a test
    writes costs a few."""
    url = database.engine.url.render_as_string(hide_password=False)
    with database.engine.begin() as conn:
        if database.dialect == "postgresql":
            if url not in _PG_SEQUENCES:
                _PG_SEQUENCES[url] = list(
                    conn.execute(
                        text(
                            "SELECT DISTINCT s.oid::regclass::text FROM pg_class s"
                            " JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid"
                            " AND d.deptype IN ('a', 'i')"
                            " JOIN pg_class t ON t.oid = d.refobjid"
                            " WHERE s.relkind = 'S' AND t.relname = ANY(:tables)"
                            " AND t.relnamespace = current_schema()::regnamespace"
                        ),
                        {"tables": _TABLES},
                    ).scalars()
                )
            statements = [f'DELETE FROM "{table}"' for table in _TABLES]
            statements += [f"ALTER SEQUENCE {sequence} RESTART" for sequence in _PG_SEQUENCES[url]]
            conn.exec_driver_sql("; ".join(statements))
        else:
            for table in _TABLES:
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
    database.ingest_reactions.clear()  # each test attaches what it reacts with, as a composition root would
    yield database


@pytest.fixture
def clock(db: Database) -> ManualClock:
    assert isinstance(db.clock, ManualClock)
    return db.clock


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for database in _MIGRATED.values():
        database.dispose()
