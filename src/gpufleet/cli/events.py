"""`gpufleet events`: record health telemetry from files, list what arrived, and the events no node matched."""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from gpufleet.cli.output import EXIT_BAD_INPUT, Output, OutputOption, capped_note, emit_json, say, show, table
from gpufleet.cli.state import actor, database
from gpufleet.health.events import EventFilter, list_events, rematch
from gpufleet.health.ingest import MAX_BYTES, HealthIngestReport, ingest, ingest_file
from gpufleet.health.requests import list_requests, request_diagnostic
from gpufleet.platform.errors import InvalidInput

app = typer.Typer(
    help="Health telemetry: Xid lines, nvidia-smi, DCGM, Alertmanager and JSON events, and the unmatched list.",
    no_args_is_help=True,
)
TABLE_ROWS = 100


class Format(StrEnum):
    AUTO = "auto"
    XID = "xid"
    NVIDIA_SMI = "nvidia-smi"
    DCGM = "dcgm"
    ALERTMANAGER = "alertmanager"
    JSON = "json"


def _show_report(report: HealthIngestReport) -> None:
    say(report.summary_line(), style="green" if report.ok and not report.unmatched else "yellow")
    if report.problems:
        shown = report.problems[:TABLE_ROWS]
        show(table("Unreadable", ("line", "where", "problem"), [(p.line, p.where, p.message) for p in shown]))
        note = capped_note(len(shown), len(report.problems), "--output json lists them all")
        if note is not None:
            show(note)
    if report.unmatched:
        shown_unmatched = report.unmatched[:TABLE_ROWS]
        rows = [(u.line, u.subject, u.reason, u.event_id) for u in shown_unmatched]
        show(table("Unmatched (stored, not acted on)", ("line", "named", "why", "event"), rows))


@app.command("ingest")
def ingest_command(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="The file to read, or - for standard input.", show_default=False)],
    fmt: Annotated[
        Format, typer.Option("--format", case_sensitive=False, help="What the file holds; auto tells by its content.")
    ] = Format.AUTO,
    node: Annotated[
        str | None,
        typer.Option(
            "--node", help="The node the file came from (chassis id, serial or hostname).", show_default=False
        ),
    ] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Record the health events in a file. Bad lines are listed with their position and the rest is recorded;
    events already recorded are counted as duplicates, so re-running a file is safe. Exits 2 when some lines or
    documents could not be read."""
    db, who = database(ctx), actor(ctx)
    if file == "-":
        text = sys.stdin.read(MAX_BYTES + 1)
        report = ingest(db, text, fmt.value, who, node, "stdin")
    else:
        path = Path(file)
        if not path.is_file():
            raise InvalidInput(f"no file at {path}", field="file")
        report = ingest_file(db, path, fmt.value, who, node)
    if output is Output.JSON:
        emit_json(report.as_dict(max_items=max(len(report.problems), len(report.unmatched), len(report.event_ids))))
    else:
        _show_report(report)
    if report.problems:
        raise typer.Exit(EXIT_BAD_INPUT)


def _show_events(items: list[dict[str, Any]], title: str | None, unmatched: bool = False) -> None:
    if unmatched:
        columns: tuple[str, ...] = ("id", "observed", "source", "code", "named", "why")
        rows: list[tuple[Any, ...]] = [
            (i["id"], i["observed_at"], i["source"], i["code"], i["subject"], i["unmatched"]) for i in items
        ]
    else:
        columns = ("id", "observed", "node", "gpu", "source", "code", "severity", "status", "message", "note")
        rows = [
            (
                i["id"],
                i["observed_at"],
                i["node"]["hostname"] if i["node"] else f"? {i['subject']}",
                i["gpu_index"],
                i["source"],
                i["code"],
                i["severity"],
                i["status"],
                i["message"],
                i["flag"] or ("case " + str(i["case_id"]) if i["case_id"] else None),
            )
            for i in items
        ]
    show(table(title, columns, rows))


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"'{value}' is not an ISO 8601 time", field="since") from None
    if parsed.tzinfo is None:
        raise InvalidInput("give --since with a UTC offset, e.g. 2026-03-02T00:00:00Z", field="since")
    return parsed


def _opt(help_text: str, *names: str) -> Any:
    return typer.Option(*names, help=help_text, show_default=False)


@app.command("list")
def list_command(
    ctx: typer.Context,
    node: Annotated[str | None, _opt("Only this node (chassis id, serial or hostname).", "--node")] = None,
    unmatched: Annotated[bool, typer.Option("--unmatched", help="Only events no node was found for.")] = False,
    source: Annotated[
        str | None, _opt("Only this source: xid, nvidia-smi, dcgm, alertmanager, json.", "--source")
    ] = None,
    code: Annotated[str | None, _opt("Only this code, e.g. xid:79.", "--code")] = None,
    severity: Annotated[str | None, _opt("Only this severity: info, warning, critical.", "--severity")] = None,
    since: Annotated[str | None, _opt("Only events observed at or after this ISO 8601 time.", "--since")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many, newest first.")] = 100,
    before: Annotated[int | None, _opt("Only events older than this id (the next page).", "--before")] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Health events, newest first. With --output json, a JSON array of events."""
    where = EventFilter(node, unmatched, source, code, severity, _since(since))
    page = list_events(database(ctx), actor(ctx), where, limit, before)
    if output is Output.JSON:
        emit_json(page.items)
        return
    _show_events(page.items, None, unmatched)
    if page.next_before is not None:
        say(f"more: --before {page.next_before}", style="yellow")


@app.command("unmatched")
def unmatched_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many, newest first.")] = 100,
    output: OutputOption = Output.TABLE,
) -> None:
    """Events for a node or GPU the inventory does not know: stored, not acted on, waiting for someone to look.
    Fix the inventory, then `gpufleet events rematch`."""
    page = list_events(database(ctx), actor(ctx), EventFilter(unmatched=True), limit)
    if output is Output.JSON:
        emit_json(page.items)
        return
    if not page.items:
        say("no unmatched events", style="green")
        return
    _show_events(page.items, "Unmatched events", unmatched=True)


@app.command("rematch")
def rematch_command(ctx: typer.Context, output: OutputOption = Output.TABLE) -> None:
    """Match the unmatched events again against the inventory as it is now; matched ones go to remediation."""
    report = rematch(database(ctx), actor(ctx))
    if output is Output.JSON:
        emit_json(report.as_dict())
        return
    say(
        f"{report.matched} of {report.examined} unmatched event(s) now match a node "
        f"({report.stale} too old to act on); {report.still_unmatched} still unmatched",
        style="green" if not report.still_unmatched else "yellow",
    )


@app.command("diag")
def diag_command(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="Chassis id, serial or hostname.", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why the diagnostic is needed.", show_default=False)],
    level: Annotated[int, typer.Option("--level", min=1, max=4, help="dcgmi diag -r level: 1 quick ... 4 long.")] = 2,
    output: OutputOption = Output.TABLE,
) -> None:
    """Ask the node's agent to run a DCGM diagnostic; its result arrives as DCGM health events."""
    view = request_diagnostic(database(ctx), node, level, actor(ctx), reason)
    if output is Output.JSON:
        emit_json(view.as_dict())
        return
    if view.created:
        say(f"asked {view.node} for dcgmi diag -r {view.level} (request {view.id})", style="green")
    else:
        say(f"no changes: {view.node} already has request {view.id} ({view.status}, level {view.level})", "green")


@app.command("requests")
def requests_command(
    ctx: typer.Context,
    node: Annotated[str | None, _opt("Only this node.", "--node")] = None,
    status: Annotated[str | None, _opt("Only this status: pending, running, done or failed.", "--status")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many, newest first.")] = 100,
    output: OutputOption = Output.TABLE,
) -> None:
    """Diagnostics asked of node agents and what came of them."""
    views = list_requests(database(ctx), actor(ctx), node, status, limit)
    if output is Output.JSON:
        emit_json([v.as_dict() for v in views])
        return
    columns = ("id", "node", "level", "status", "asked", "by", "reason", "result")
    rows = [
        (v.id, v.node, v.level, v.status, v.requested_at, v.requested_by, v.reason, v.result.get("codes"))
        for v in views
    ]
    show(table(None, columns, rows))
