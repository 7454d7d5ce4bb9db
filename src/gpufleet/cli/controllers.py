"""`gpufleet controllers`: every reconcile loop with its interval and retry policy, and one command to run them."""

from __future__ import annotations

import importlib
import signal
import threading
from typing import Annotated, Any

import typer

from gpufleet.cli.output import Output, OutputOption, emit_json, say, show, table
from gpufleet.cli.state import database

app = typer.Typer(help="The reconcile loops: list them, run them all or some.", no_args_is_help=True)

LOOPS = "gpufleet.controllers.loops"
"""Imported when a command needs it: listing the commands should not load every capability."""


def _every(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


@app.command("list")
def list_command(output: OutputOption = Output.TABLE) -> None:
    """Each loop with how often it runs and how it backs off after a failed pass."""
    loops = importlib.import_module(LOOPS)
    specs = [
        {
            "name": s.name,
            "interval_seconds": s.interval.total_seconds(),
            "retry_first_seconds": s.retry.initial.total_seconds(),
            "retry_factor": s.retry.factor,
            "retry_max_seconds": s.retry.maximum.total_seconds(),
            "what": s.doc,
        }
        for s in loops.specs()
    ]
    if output is Output.JSON:
        emit_json(specs)
        return
    rows = [
        (
            s["name"],
            _every(s["interval_seconds"]),
            f"{_every(s['retry_first_seconds'])}, x{s['retry_factor']:g} to {_every(s['retry_max_seconds'])}",
            s["what"],
        )
        for s in specs
    ]
    show(table("Controllers", ("name", "every", "after a failure", "what it does"), rows))


@app.command("run")
def run_command(
    ctx: typer.Context,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run just this loop (repeatable); default: every loop.")
    ] = None,
    passes: Annotated[
        int, typer.Option("--passes", min=0, help="Stop after this many passes of each (0: until Ctrl-C).")
    ] = 0,
    output: OutputOption = Output.TABLE,
) -> None:
    """Run the reconcile loops in this process, each in its own thread at its own interval. Safe to run in several
    processes at once."""
    loops = importlib.import_module(LOOPS)
    base = importlib.import_module("gpufleet.controllers.base")
    db = database(ctx)
    try:
        targets = loops.build(db, only)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--only") from None
    runners = [base.Runner(t, db.clock.now, log=lambda m: say(m, style="yellow")) for t in targets]
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if not passes:
        say(f"running {', '.join(r.target.spec.name for r in runners)}; Ctrl-C stops them")
    try:
        base.run_together(runners, stop, passes or None)
    except KeyboardInterrupt:
        stop.set()
        for r in runners:
            r.stop()
    report: list[dict[str, Any]] = [
        {"name": r.target.spec.name, "passes": r.passes, "failures": r.failures} for r in runners
    ]
    if output is Output.JSON:
        emit_json(report)
        return
    show(table(None, ("loop", "passes", "failing now"), [(r["name"], r["passes"], r["failures"]) for r in report]))
