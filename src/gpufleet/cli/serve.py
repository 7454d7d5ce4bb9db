"""`gpufleet serve` and `gpufleet demo`: run the API server on the CLI's database.

The server is started by import string so the CLI never imports the API: the two entry points stay independent
and share only the services and the database URL.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from gpufleet.cli.output import show, table
from gpufleet.cli.simulate import start_live_demo
from gpufleet.cli.state import actor, database, state
from gpufleet.fleet.demo import seed_demo_fleet
from gpufleet.fleet.tokens import create_token

APP_FACTORY = "gpufleet.api.app:create_app"
DATABASE_ENV = "GPUFLEET_DATABASE_URL"

HostOption = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOption = Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")]
MAX_WORKERS = 64
WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        max=MAX_WORKERS,
        help="Server processes on the one port. Parsing a body is Python, one core a process: on SQLite too, two "
        "workers take more events per second than one, as they parse while the other writes.",
    ),
]
AccessLogOption = Annotated[
    bool,
    typer.Option(
        "--access-log/--no-access-log",
        help="Log a line for every request. Under a burst of webhooks the lines cost the server time it would ingest "
        "in; a proxy in front can log them instead.",
    ),
]


def run_server(ctx: typer.Context, host: str, port: int, workers: int = 1, access_log: bool = True) -> None:
    import uvicorn  # imported here so that every other command starts fast

    url = state(ctx).database_url
    if url:
        # The server process reads its database from the environment, as every gpufleet entry point does.
        os.environ[DATABASE_ENV] = url
    # Each worker is its own process that opens the database from the environment; writers of one SQLite file take
    # turns through SQLite's lock, and what must happen once (a case per node, an event per fingerprint) is held by
    # the database's unique keys, not by the process.
    uvicorn.run(
        APP_FACTORY, factory=True, host=host, port=port, log_level="info", workers=workers, access_log=access_log
    )


def serve(
    ctx: typer.Context,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    workers: WorkersOption = 1,
    access_log: AccessLogOption = True,
) -> None:
    """Serve the REST API (OpenAPI at /docs) on the database; it must be migrated first."""
    database(ctx)  # refuse early, with the fix, if the schema is missing or old
    run_server(ctx, host, port, workers, access_log)


SpeedOption = Annotated[
    float,
    typer.Option("--speed", min=0, help="Simulated seconds per second of the live demo fleet (0: a still fleet)."),
]


def demo(
    ctx: typer.Context, host: HostOption = "127.0.0.1", port: PortOption = 8000, speed: SpeedOption = 3600.0
) -> None:
    """Migrate the database, load a demo fleet if it is empty, make an admin token and serve, with the `demo`
    scenario running live on the same database (one simulated hour per second by default)."""
    db = database(ctx, migrated=False)
    db.upgrade()
    seeded = seed_demo_fleet(db, actor(ctx))
    if seeded is None:
        typer.echo(f"database {db.url} already holds a fleet; leaving it as it is")
    else:
        nodes = seeded.nodes
        typer.echo(f"loaded the demo fleet into {db.url}: {nodes.created} nodes, {nodes.gpus_written} GPUs")
    token = create_token(db, "demo-admin", "admin", actor(ctx))
    address = f"[{host}]" if ":" in host else host
    show(
        table(
            "gpufleet demo",
            ("", ""),
            [("API docs", f"http://{address}:{port}/docs"), ("admin token", token.secret), ("database", db.url)],
            show_header=False,
        )
    )
    typer.echo(f"Use the token as: Authorization: Bearer {token.secret}")
    live = start_live_demo(db, speed, host, port)
    try:
        run_server(ctx, host, port)
    finally:
        if live is not None:
            live.stop()
