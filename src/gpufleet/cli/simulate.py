"""`gpufleet simulate`: run a fleet scenario on simulated time and report its figures; and the demo's live fleet."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from gpufleet.cli.output import EXIT_BAD_INPUT, CliError, console, table
from gpufleet.cli.state import state
from gpufleet.platform.database import Database
from gpufleet.sim import LiveSimulation, ScenarioError, SimulationError, load_scenario, shipped_scenarios, write_html
from gpufleet.sim import simulate as run_scenario

DEMO_SCENARIO = "demo"


def simulate(
    ctx: typer.Context,
    scenario: Annotated[
        str, typer.Argument(help=f"A shipped scenario ({', '.join(shipped_scenarios())}) or a scenario file.")
    ],
    days: Annotated[
        float | None, typer.Option("--days", min=0.001, help="Simulated days (default: the scenario's).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: the scenario's).")] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write every figure as JSON to this file ('-' for stdout).")
    ] = None,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report with plots.")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="An empty database to run on (default: GPUFLEET_DATABASE_URL, else SQLite in memory).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Run a scenario through the real services on simulated time; the same seed gives the same figures."""
    try:
        spec = load_scenario(scenario)
    except ScenarioError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    url = database_url or state(ctx).database_url
    to_stdout = json_file is not None and str(json_file) == "-"
    err = console(stderr=True)
    total_days = days if days is not None else spec.duration_days
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("day {task.completed:.1f}/{task.total:g}"),
        TextColumn("{task.fields[events]:,} events"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
        transient=True,
    )
    with progress:
        task = progress.add_task(f"simulating {spec.name}", total=total_days, events=0)

        def advance(done: float, _total: float, events: int) -> None:
            progress.update(task, completed=done, events=events)

        try:
            results = run_scenario(spec, seed=seed, days=days, database_url=url, progress=advance)
        except SimulationError as exc:
            raise CliError(str(exc)) from None
    if json_file is not None:
        text = json.dumps(results, indent=2, default=str) + "\n"
        if to_stdout:
            sys.stdout.write(text)
        else:
            json_file.write_text(text, encoding="utf-8")
    if html_file is not None:
        write_html(results, html_file)
    _print_figures(results, stderr=to_stdout)
    for label, path in (("JSON", json_file), ("HTML report", html_file)):
        if path is not None and not (label == "JSON" and to_stdout):
            console(stderr=to_stdout).print(f"{label} written to {path}")


def _print_figures(r: dict[str, Any], stderr: bool) -> None:
    mttr = r["mttr_hours"]
    rows: list[tuple[str, str]] = [
        ("scenario", f"{r['scenario']} (seed {r['seed']}, {r['database']})"),
        ("fleet", f"{r['nodes']:,} nodes, {r['gpus']:,} GPUs, {r['simulated_days']:g} days"),
        ("unexpected interruptions", f"{r['interruptions_total']:,} ({r['hardware_share']:.1%} hardware)"),
        ("availability", f"{r['availability']:.3%} of GPU-hours in service"),
        ("jobs interrupted", f"{r['jobs']['interrupted']:,}, {r['jobs']['gpu_hours_lost']:,.0f} GPU-hours lost"),
        ("time to repair, software", f"p50 {mttr['software']['p50']:.1f} h, p90 {mttr['software']['p90']:.1f} h"),
        ("time to repair, hardware", f"p50 {mttr['hardware']['p50']:.1f} h, p90 {mttr['hardware']['p90']:.1f} h"),
        ("sent to the supplier", f"{r['repairs']['rma']:,}"),
        (
            "reboots",
            f"{r['reboots']['issued']:,} issued, {r['reboots']['returned']:,} came back, "
            f"{r['reboots']['not_returned']:,} did not",
        ),
        ("lifecycle transitions", f"{r['transitions']:,} in {r['transactions']:,} transactions"),
        ("events processed", f"{r['events_processed']:,} ({r['events_per_second']:,.0f}/s)"),
        ("wall time", f"{r['wall_seconds']:.1f} s"),
    ]
    out = console(stderr=stderr)
    out.print(table("Simulation", ("figure", "value"), rows))
    top = sorted(r["interruptions"].items(), key=lambda kv: -kv[1])
    total = r["interruptions_total"] or 1
    out.print(
        table(
            "Interruptions by component",
            ("component", "count", "share"),
            [(name, count, f"{count / total:.1%}") for name, count in top if count],
        )
    )
    reban = [
        (f"supplier {name}", v["n"], v["count"], f"{v['rate']:.1%}") for name, v in r["reban"]["by_supplier"].items()
    ] + [(f"SKU {name}", v["n"], v["count"], f"{v['rate']:.1%}") for name, v in r["reban"]["by_sku"].items()]
    if reban:
        out.print(table("Re-bans after hardware repair or delivery", ("group", "admitted", "re-banned", "rate"), reban))


def start_live_demo(
    db: Database, speed: float, host: str, port: int, scenario: str = DEMO_SCENARIO
) -> LiveSimulation | None:
    """Bring the demo fleet to life on ``db`` once the API listens on ``host:port``; ``None`` at speed 0."""
    if speed <= 0:
        return None
    url = db.engine.url.render_as_string(hide_password=False)
    live = LiveSimulation(
        load_scenario(scenario), url, speed=speed, log=_log, start_when=lambda: _listening(host, port)
    )
    live.start()
    return live


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _log(message: str) -> None:
    console(stderr=True).print(message, markup=False, highlight=False)
