"""`gpufleet db`: create or migrate the database, and say which schema revision it is at."""

from __future__ import annotations

import typer

from gpufleet.cli.output import Output, OutputOption, emit_json, say
from gpufleet.cli.state import check_schema, database

app = typer.Typer(help="Create, migrate and inspect the database.", no_args_is_help=True)


@app.command()
def upgrade(ctx: typer.Context, output: OutputOption = Output.TABLE) -> None:
    """Create the database, or migrate it to the schema this gpufleet needs. Safe to run again."""
    db = database(ctx, migrated=False)
    before = db.revision() if db.has_schema() else None
    db.upgrade()
    after = db.revision()
    if output is Output.JSON:
        emit_json({"database": db.url, "from": before, "to": after, "changed": before != after})
        return
    if before == after:
        say(f"{db.url} is already at schema revision {after}")
    else:
        say(f"{db.url} migrated from {before or 'an empty database'} to schema revision {after}", style="green")


@app.command()
def current(ctx: typer.Context, output: OutputOption = Output.TABLE) -> None:
    """Show the database's schema revision; exits non-zero when it needs `gpufleet db upgrade`."""
    db = database(ctx, migrated=False)
    check_schema(db)
    revision = db.revision()
    if output is Output.JSON:
        emit_json({"database": db.url, "revision": revision, "head": db.head_revision(), "current": True})
        return
    say(f"{db.url} is at schema revision {revision} (current)")
