"""The database and the actor a CLI invocation works with, opened once and closed when the command ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from gpufleet.cli.output import CliError
from gpufleet.platform.context import Actor, cli_actor
from gpufleet.platform.database import Database, open_database

UPGRADE_HINT = "run `gpufleet db upgrade`"


@dataclass
class CliState:
    database_url: str | None = None
    actor: Actor = field(default_factory=cli_actor)
    db: Database | None = None


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def actor(ctx: typer.Context) -> Actor:
    return state(ctx).actor


def sqlite_file(db: Database) -> Path | None:
    if db.dialect != "sqlite":
        return None
    path = db.engine.url.database
    if not path or path == ":memory:":
        return None
    return Path(path)


def check_schema(db: Database) -> None:
    """Refuse to work on a database this version cannot read, with the one command that fixes it."""
    path = sqlite_file(db)
    if path is not None and not path.exists():
        # Checking would create an empty file; say what is missing instead.
        raise CliError(f"no gpufleet database at {path}; {UPGRADE_HINT} to create it")
    if not db.has_schema():
        raise CliError(f"the database {db.url} has no gpufleet schema; {UPGRADE_HINT} to create it")
    current, head = db.revision(), db.head_revision()
    if current != head:
        raise CliError(
            f"the database {db.url} is at schema revision {current or 'none'}, this gpufleet needs {head}; "
            f"{UPGRADE_HINT}"
        )


def database(ctx: typer.Context, migrated: bool = True) -> Database:
    """The invocation's database; unless ``migrated`` is False, one whose schema is current."""
    st = state(ctx)
    if st.db is None:
        st.db = open_database(st.database_url)
        ctx.find_root().call_on_close(st.db.dispose)
        # The composition root of the CLI: an ingest from the command line reacts as the server's does. Imported
        # here, not at the top, so that `gpufleet --help` and commands without a database load no engine.
        from gpufleet.remediation.react import attach

        attach(st.db)
    if migrated:
        check_schema(st.db)
    return st.db
