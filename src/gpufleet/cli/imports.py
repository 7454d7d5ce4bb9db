"""`gpufleet import`: reference data from a fleet document, and nodes from a supplier's inventory."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from gpufleet.cli.output import EXIT_FAILED, Output, OutputOption, capped_note, console, emit_json, say, show, table
from gpufleet.cli.state import actor, database
from gpufleet.fleet.inventory import ImportReport, import_nodes_file
from gpufleet.fleet.reference import import_fleet, load_fleet_file

app = typer.Typer(help="Import reference data and supplier inventories.", no_args_is_help=True)

TABLE_ROWS = 100

FileArgument = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The file to import.", show_default=False)
]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Show what would change and change nothing.")]


class InventoryFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    JSONL = "jsonl"


@app.command()
def fleet(
    ctx: typer.Context, file: FileArgument, dry_run: DryRunOption = False, output: OutputOption = Output.TABLE
) -> None:
    """Create or update suppliers, regions, sites, clusters, SKUs, racks, NVLink domains, switches, partitions, pools
    and tenants from a YAML or JSON fleet document, all or nothing."""
    document = load_fleet_file(str(file))
    report = import_fleet(database(ctx), document, actor(ctx), dry_run=dry_run)
    if output is Output.JSON:
        emit_json({"source": str(file), **report.as_dict()})
        return
    sections = sorted(set(report.created) | set(report.updated) | set(report.unchanged))
    rows = [(s, report.created.get(s, 0), report.updated.get(s, 0), report.unchanged.get(s, 0)) for s in sections]
    if not report.changed:
        say(f"no changes: everything in {file} already matches", style="green")
    elif dry_run:
        say(f"dry run: {file} would make these changes (nothing was written)", style="yellow")
    else:
        say(f"applied {file}", style="green")
    if rows:
        show(table(None, ("section", "created", "updated", "unchanged"), rows))


class ImportProgress:
    """A progress bar per phase the import service reports, on stderr so JSON on stdout stays clean."""

    def __init__(self, out: Console, source: str) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
            transient=True,
            disable=not out.is_terminal,
        )
        self._tasks: dict[str, TaskID] = {}
        self._reading: TaskID | None = self._progress.add_task(f"reading {source}", total=None)

    def __enter__(self) -> ImportProgress:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.stop()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self._reading is not None:
            self._progress.update(self._reading, total=1, completed=1)
            self._reading = None
        if phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(phase, total=total)
        self._progress.update(self._tasks[phase], completed=done, total=total)


def _change_text(changes: dict[str, list[Any]]) -> str:
    return "; ".join(f"{name}: {old} -> {new}" for name, (old, new) in changes.items())


def _show_report(report: ImportReport) -> None:
    style = "green" if report.ok else ("yellow" if report.applied or report.dry_run else "red")
    say(report.summary_line(), style=style)
    if report.errors:
        shown = report.errors[:TABLE_ROWS]
        show(table("Row errors", ("line", "field", "message"), [(e.line, e.field, e.message) for e in shown]))
        note = capped_note(len(shown), len(report.errors), "--output json lists every error")
        if note is not None:
            show(note)
    if report.dry_run:
        planned = [c for c in report.changes if c.action != "unchanged"]
        if planned:
            shown_changes = planned[:TABLE_ROWS]
            rows = [(c.line, c.node_id, c.serial, c.action, _change_text(c.changes)) for c in shown_changes]
            show(table("Planned changes", ("line", "id", "serial", "action", "changes"), rows))
            note = capped_note(len(shown_changes), len(planned), "--output json lists every change")
            if note is not None:
                show(note)


@app.command()
def nodes(
    ctx: typer.Context,
    file: FileArgument,
    fmt: Annotated[
        InventoryFormat | None,
        typer.Option("--format", case_sensitive=False, help="The file's format; by default from its extension."),
    ] = None,
    partial: Annotated[
        bool, typer.Option("--partial", help="Apply the good rows and list the bad ones, instead of all or nothing.")
    ] = False,
    dry_run: DryRunOption = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """Import a supplier's node inventory (CSV, JSON or JSONL), keyed by supplier + serial.

    All or nothing unless --partial. Exits 0 only when every row was applied (or, with --dry-run, would be).
    """
    db = database(ctx)
    with ImportProgress(console(stderr=True), file.name) as progress:
        report = import_nodes_file(
            db,
            str(file),
            actor(ctx),
            fmt=fmt.value if fmt else None,
            partial=partial,
            dry_run=dry_run,
            progress=progress,
        )
    if output is Output.JSON:
        emit_json(report.as_dict(max_changes=len(report.changes)))
    else:
        _show_report(report)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)
