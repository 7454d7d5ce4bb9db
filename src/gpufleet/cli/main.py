"""The `gpufleet` command: works directly on the database, as the local operator, through the services."""

from __future__ import annotations

from typing import Annotated

import typer

from gpufleet.cli import (
    agent,
    cases,
    clusters,
    controllers,
    db,
    docs,
    events,
    imports,
    lifecycle,
    nodes,
    policy,
    remediation,
    serve,
    simulate,
    summary,
    tokens,
    validation,
)
from gpufleet.cli.output import GuardedGroup
from gpufleet.cli.state import CliState

app = typer.Typer(
    name="gpufleet",
    cls=GuardedGroup,
    help="The control plane for a GPU fleet's hardware lifecycle.",
    epilog="Exit codes: 0 done; 1 refused or failed (not found, invalid transition, conflict, rows not applied); "
    "2 bad input or usage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="GPUFLEET_DATABASE_URL",
            help="SQLAlchemy URL of the database (default: sqlite:///gpufleet.db in this directory).",
            show_default=False,
            show_envvar=True,
        ),
    ] = None,
) -> None:
    ctx.obj = CliState(database_url=database_url)


app.add_typer(db.app, name="db")
app.add_typer(imports.app, name="import")
app.add_typer(nodes.app, name="nodes")
app.add_typer(tokens.app, name="tokens")
app.add_typer(lifecycle.app, name="lifecycle")
app.add_typer(docs.app, name="docs")
app.add_typer(validation.app, name="validation")
app.add_typer(events.app, name="events")
app.add_typer(clusters.app, name="clusters")
app.add_typer(cases.app, name="cases")
app.add_typer(policy.app, name="policy")
app.add_typer(remediation.app, name="remediation")
app.add_typer(controllers.app, name="controllers")
app.command("summary")(summary.summary)
app.command("serve")(serve.serve)
app.command("demo")(serve.demo)
app.command("simulate")(simulate.simulate)
app.command("agent")(agent.agent)


def main() -> None:
    app()
