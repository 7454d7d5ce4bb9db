"""`gpufleet db`, and the one clear line every command prints when the database is not ready."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gpufleet.adapters.db.engine import database_url
from gpufleet.cli.main import app
from tests.conftest import drop_pg_database, new_pg_database, pg_available
from tests.integration.cli_support import RUNNER, one_line_error


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that exists but was never migrated, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "empty.db"
        sqlite3.connect(path).close()
        yield f"sqlite:///{path}"
        return
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is unreachable and CI is set")
        pytest.skip("PostgreSQL is not reachable")
    url = new_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def test_commands_on_an_unmigrated_database_say_to_upgrade(empty_url: str) -> None:
    for command in (["nodes", "list"], ["summary"], ["tokens", "list"], ["db", "current"], ["serve"]):
        result = RUNNER.invoke(app, ["--database-url", empty_url, *command], catch_exceptions=False)
        message = one_line_error(result)
        assert result.exit_code == 1
        assert "gpufleet db upgrade" in message and "no gpufleet schema" in message, command


def test_upgrade_then_everything_works(empty_url: str) -> None:
    upgraded = RUNNER.invoke(app, ["--database-url", empty_url, "db", "upgrade"], catch_exceptions=False)
    assert upgraded.exit_code == 0, upgraded.output
    assert "migrated" in upgraded.stdout
    again = RUNNER.invoke(app, ["--database-url", empty_url, "db", "upgrade"], catch_exceptions=False)
    assert again.exit_code == 0 and "already at schema revision" in again.stdout
    current = RUNNER.invoke(app, ["--database-url", empty_url, "db", "current"], catch_exceptions=False)
    assert current.exit_code == 0 and "(current)" in current.stdout
    listed = RUNNER.invoke(app, ["--database-url", empty_url, "nodes", "list"], catch_exceptions=False)
    assert listed.exit_code == 0 and "no nodes match" in listed.stdout


def test_a_missing_sqlite_file_is_reported_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"
    result = RUNNER.invoke(app, ["--database-url", f"sqlite:///{path}", "summary"], catch_exceptions=False)
    message = one_line_error(result)
    assert "gpufleet db upgrade" in message and str(path) in message
    assert not path.exists()


def test_an_old_schema_revision_is_reported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    assert RUNNER.invoke(app, ["--database-url", url, "db", "upgrade"]).exit_code == 0
    engine = create_engine(database_url(url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    engine.dispose()
    result = RUNNER.invoke(app, ["--database-url", url, "nodes", "list"], catch_exceptions=False)
    message = one_line_error(result)
    assert "revision 0000" in message and "gpufleet db upgrade" in message


def test_the_database_url_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env.db"
    monkeypatch.setenv("GPUFLEET_DATABASE_URL", f"sqlite:///{path}")
    assert RUNNER.invoke(app, ["db", "upgrade"], catch_exceptions=False).exit_code == 0
    assert path.exists()


def test_the_default_database_is_gpufleet_db_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPUFLEET_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    result = RUNNER.invoke(app, ["db", "upgrade", "--output", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "gpufleet.db").exists()


def test_an_unreachable_database_is_one_line_not_a_traceback() -> None:
    result = RUNNER.invoke(
        app, ["--database-url", "postgresql://nobody@127.0.0.1:1/none", "summary"], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert "OperationalError" in one_line_error(result)
