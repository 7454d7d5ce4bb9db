"""`gpufleet nodes`: find nodes, look at one, move it through its lifecycle, and chase the stuck ones."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from gpufleet.cli.output import Output, OutputOption, capped_note, duration, emit_json, say, show, table, when
from gpufleet.cli.state import actor, database
from gpufleet.fleet.escalation import escalate_overdue, find_stuck
from gpufleet.fleet.lifecycle import transition as apply_event
from gpufleet.fleet.queries import MAX_PAGE, NodeFilter, iter_nodes, list_nodes, node_detail, parse_fields

app = typer.Typer(help="List, inspect and move nodes through their lifecycle.", no_args_is_help=True)

NodeArgument = Annotated[str, typer.Argument(help="Chassis id, serial or hostname.", show_default=False)]
EVENTS_SHOWN = 20


def _opt(help_text: str, *names: str) -> Any:
    return typer.Option(*names, help=help_text, show_default=False)


@app.command("list")
def list_(
    ctx: typer.Context,
    state: Annotated[str | None, _opt("Only these states (comma-separated).", "--state")] = None,
    cluster: Annotated[str | None, _opt("Only this cluster.", "--cluster")] = None,
    supplier: Annotated[str | None, _opt("Only this supplier.", "--supplier")] = None,
    sku: Annotated[str | None, _opt("Only this SKU.", "--sku")] = None,
    rack: Annotated[str | None, _opt("Only this rack.", "--rack")] = None,
    nvlink_domain: Annotated[str | None, _opt("Only this NVLink domain.", "--nvlink-domain")] = None,
    selector: Annotated[
        str | None, _opt("Label selector: k=v, k!=v, k (has), !k (lacks), comma-separated.", "--selector", "-l")
    ] = None,
    fields: Annotated[str | None, _opt("Fields to include in JSON (comma-separated); default all.", "--fields")] = None,
    limit: Annotated[
        int,
        typer.Option("--limit", min=1, max=MAX_PAGE, help="Rows in the table view; --output json prints every node."),
    ] = 100,
    output: OutputOption = Output.TABLE,
) -> None:
    """List nodes matching every filter given."""
    db = database(ctx)
    flt = NodeFilter.build(state, cluster, supplier, sku, rack, nvlink_domain, selector)
    if output is Output.JSON:
        emit_json(iter_nodes(db, actor(ctx), flt, parse_fields(fields)))
        return
    with db.reader() as session:
        page = list_nodes(session, actor(ctx), db.clock.now(), flt, limit=limit)
    if not page.items:
        say("no nodes match", style="yellow")
        return
    columns = ("id", "hostname", "serial", "state", "since", "cluster", "sku", "rack", "nvlink domain")
    rows = [
        (
            n["id"],
            n["hostname"],
            n["serial"],
            n["state"],
            when(n["state_since"]),
            n["cluster"],
            n["sku"],
            n["rack"],
            n["nvlink_domain"],
        )
        for n in page.items
    ]
    show(table(None, columns, rows))
    if page.next_cursor is not None:
        show(capped_note(len(rows), None, "narrow the filters, raise --limit, or use --output json for every node"))
    else:
        say(f"{len(rows)} node(s)")


def _show_node(node: dict[str, Any]) -> None:
    life = node["lifecycle"]
    deadline = life["deadline"]
    due = "no time limit" if deadline is None else when(deadline) + ("  OVERDUE" if life["overdue"] else "")
    facts = [
        ("id", node["id"]),
        ("hostname", node["hostname"]),
        ("serial", node["serial"]),
        ("supplier", node["supplier"]),
        ("cluster", node["cluster"]),
        ("sku", f"{node['sku']} ({node['gpus']} GPUs)"),
        ("rack", node["rack"]),
        ("nvlink domain", node["nvlink_domain"]),
        ("switch", node["switch"]),
        ("provider id", node["provider_id"]),
        ("bmc address", node["bmc_address"]),
        ("labels", node["labels"]),
        ("attributes", node["attributes"]),
        ("state", f"{node['state']} since {when(node['state_since'])}"),
        ("version", node["version"]),
        ("next action", f"{life['action']} (owner {life['owner']})"),
        ("time limit", due),
        ("allowed events", life["allowed_events"]),
    ]
    show(table(f"Node {node['id']}", ("field", "value"), facts))
    if node["gpu_devices"]:
        gpus = [(g["index"], g["serial"], g["uuid"], g["pci_bus_id"]) for g in node["gpu_devices"]]
        show(table("GPUs", ("index", "serial", "uuid", "pci bus id"), gpus))
    if node["allocations"]:
        allocations = [
            (a["tenant"], a["project"], when(a["starts_at"]), when(a["ends_at"]), "yes" if a["active"] else "no")
            for a in node["allocations"]
        ]
        show(table("Allocations", ("tenant", "project", "from", "until", "active"), allocations))
    events = node["events"][:EVENTS_SHOWN]
    rows = [
        (
            when(e["at"]),
            e["kind"],
            e["event"],
            f"{e['from_state'] or '-'} -> {e['to_state'] or '-'}",
            e["actor"],
            e["reason"],
        )
        for e in events
    ]
    show(table("Events (newest first)", ("at", "kind", "event", "state", "actor", "reason"), rows))
    note = capped_note(len(events), len(node["events"]), "--output json includes the whole timeline")
    if note is not None:
        show(note)


@app.command("show")
def show_node(ctx: typer.Context, node: NodeArgument, output: OutputOption = Output.TABLE) -> None:
    """Show one node with its GPUs, allocations, lifecycle obligations and event timeline."""
    db = database(ctx)
    with db.reader() as session:
        detail = node_detail(session, node, actor(ctx), db.clock.now())
    if output is Output.JSON:
        emit_json(detail)
    else:
        _show_node(detail)


@app.command("transition")
def transition(
    ctx: typer.Context,
    node: NodeArgument,
    event: Annotated[
        str, typer.Argument(help="The lifecycle event, e.g. quarantine, drain, repair.", show_default=False)
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why: recorded with the change.", show_default=False)],
    force: Annotated[
        bool, typer.Option("--force", help="Override guards such as an active tenant allocation (recorded).")
    ] = False,
    expect_version: Annotated[
        int | None,
        typer.Option(
            "--expect-version", help="Refuse if the node changed since you read this version.", show_default=False
        ),
    ] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Apply a lifecycle event to a node. Refused events exit non-zero and name the events allowed instead."""
    result = apply_event(database(ctx), node, event, reason, actor(ctx), expected_version=expect_version, force=force)
    if output is Output.JSON:
        emit_json(
            {
                "id": result.node_id,
                "event": result.event,
                "from_state": result.from_state,
                "to_state": result.to_state,
                "version": result.version,
                "at": result.at,
                "event_id": result.event_id,
            }
        )
        return
    say(
        f"{result.node_id}: {result.from_state} -> {result.to_state} ({result.event}), now at version {result.version}",
        style="green",
    )


def _stuck_rows(nodes: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            n.id,
            n.hostname,
            n.cluster,
            n.state,
            when(n.state_since),
            duration(n.overdue_by),
            n.owner,
            when(n.escalated_at) if n.escalated_at else "",
        )
        for n in nodes
    ]


STUCK_COLUMNS = ("id", "hostname", "cluster", "state", "since", "overdue by", "owner", "escalated")


@app.command()
def stuck(
    ctx: typer.Context,
    cluster: Annotated[str | None, _opt("Only this cluster.", "--cluster")] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Nodes that have stayed in their state past its time limit, longest overdue first."""
    nodes = find_stuck(database(ctx), actor(ctx), cluster)
    if output is Output.JSON:
        emit_json([n.as_dict() for n in nodes])
        return
    if not nodes:
        say("no node is past its state's time limit", style="green")
        return
    show(table(None, STUCK_COLUMNS, _stuck_rows(nodes)))
    say(f"{len(nodes)} node(s) past their state's time limit; `gpufleet nodes escalate` records an escalation")


@app.command()
def escalate(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be escalated, write nothing.")] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """Record one escalation event for each overdue node not yet escalated in its current stay. Safe to repeat."""
    report = escalate_overdue(database(ctx), actor(ctx), dry_run=dry_run)
    if output is Output.JSON:
        emit_json(report.as_dict())
        return
    verb = "would escalate" if dry_run else "escalated"
    if report.escalated:
        show(table(None, STUCK_COLUMNS[:-1], [r[:-1] for r in _stuck_rows(report.escalated)]))
    show(Text(f"{verb} {len(report.escalated)} node(s); {report.already_escalated} already escalated earlier"))
