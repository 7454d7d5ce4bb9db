"""`gpufleet cases`: remediation cases, one per node incident, with their steps and evidence; a person's decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gpufleet.cli.lifecycle import DiagramFormat
from gpufleet.cli.output import Output, OutputOption, duration, emit_json, say, show, table, when
from gpufleet.cli.state import actor, database
from gpufleet.domain import diagram
from gpufleet.domain.remediation import CASE_STATE_POLICIES, PERSON_ACTIONS, automation_events, person_actions
from gpufleet.remediation.cases import act_on_case, list_cases, return_from_supplier, show_case

app = typer.Typer(help="Remediation cases: list, show, and act on them with a reason.", no_args_is_help=True)

ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded on the case).", show_default=False)]


@app.command("list")
def list_command(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option("--state", help="Only cases in this state.")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Only this cluster's cases.")] = None,
    node: Annotated[
        str | None, typer.Option("--node", help="Only this node's (chassis id, serial or hostname).")
    ] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only cases still open.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=5000, help="At most this many, newest first.")] = 200,
    output: OutputOption = Output.TABLE,
) -> None:
    """Cases newest first. With --output json, a JSON array of cases (id, node, state, action, kind, owner, ...)."""
    cases = list_cases(database(ctx), actor(ctx), state, cluster, node, open_only, limit)
    if output is Output.JSON:
        emit_json(cases)
        return
    rows = [
        (
            c["id"],
            c["node"]["hostname"],
            c["cluster"],
            c["state"] + (f" ({c['held']})" if c["held"] else ""),
            c["action"],
            c["kind"],
            c["owner"],
            ", ".join(c["codes"]),
            when(c["detected_at"]),
            f"{c['minutes_to_repair']:g} min" if c["minutes_to_repair"] is not None else "-",
        )
        for c in cases
    ]
    columns = ("id", "node", "cluster", "state", "action", "kind", "owner", "codes", "detected", "repaired in")
    show(table(f"{len(cases)} case(s)", columns, rows))


@app.command("show")
def show_command(
    ctx: typer.Context,
    case_id: Annotated[int, typer.Argument(help="The case id.")],
    output: OutputOption = Output.TABLE,
) -> None:
    """One case: its node, state and action, every step (who or what, when), and the evidence."""
    case = show_case(database(ctx), actor(ctx), case_id)
    if output is Output.JSON:
        emit_json(case)
        return
    _show(case)


def _show(case: dict[str, Any]) -> None:
    node = case["node"]
    say(
        f"case {case['id']}: {node['hostname']} ({node['serial']}, {node['id']}) in {case['cluster']} - {case['state']}"
        + (f", held by {case['held']}" if case["held"] else ""),
        style="bold",
    )
    say(f"{case['kind']} fault, owner {case['owner']}, action {case['action']}: {case['reason']}")
    facts = [
        ("codes", case["codes"]),
        ("detected", when(case["detected_at"])),
        ("closed", when(case["closed_at"]) + (f" ({case['resolution']})" if case["resolution"] else "")),
        ("next look", when(case["next_check_at"])),
        ("time limit", when(case["deadline_at"])),
        ("ticket", case["ticket_detail"]),
        ("touched by a person", "yes" if case["human"] else "no"),
        ("policy version", case["policy_version"]),
        ("correlation id", case["correlation_id"]),
    ]
    show(table(None, ("", ""), facts, show_header=False))
    steps = [
        (
            when(s["at"]),
            s["actor"],
            s["kind"],
            f"{s['from_state'] or '-'} -> {s['to_state'] or '-'}",
            s["action"],
            s["detail"],
        )
        for s in case["steps"]
    ]
    show(table("Steps", ("at", "who", "kind", "state", "action", "what"), steps))
    evidence = [
        (when(e["observed_at"]), e["source"], e["code"], e["severity"], e["gpu_index"], e["message"])
        for e in case["evidence"]
    ]
    show(table("Evidence", ("observed", "source", "code", "severity", "gpu", "message"), evidence))
    if case["reboots"]:
        reboots = [
            (
                when(r["requested_at"]),
                when(r["went_down_at"]),
                when(r["came_back_at"]),
                duration(r["minutes"] * 60) if r["minutes"] is not None else "-",
                r["outcome"],
            )
            for r in case["reboots"]
        ]
        show(table("Reboots", ("asked", "went down", "came back", "took", "outcome"), reboots))


@app.command("act")
def act_command(
    ctx: typer.Context,
    case_id: Annotated[int, typer.Argument(help="The case id.")],
    action: Annotated[str, typer.Argument(help=f"One of: {', '.join(PERSON_ACTIONS)}.", show_default=False)],
    reason: ReasonOption,
    no_hardware_change: Annotated[
        bool, typer.Option("--no-hardware-change", help="The repair changed no hardware: keep the fast track.")
    ] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """A person's decision: repaired (validation decides), retry (hand back to automation), escalate (to the
    supplier, with a ticket) or close. Marks the case as handled by a person."""
    case = act_on_case(database(ctx), actor(ctx), case_id, action, reason, hardware_change=not no_hardware_change)
    if output is Output.JSON:
        emit_json(case)
        return
    say(f"case {case_id}: {action} recorded; now {case['state']}", style="green")


@app.command("supplier-returned")
def supplier_returned_command(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="Chassis id, serial or hostname.", show_default=False)],
    reason: ReasonOption,
) -> None:
    """The supplier gave the hardware back: the node validates on the slow path and its case carries on."""
    result = return_from_supplier(database(ctx), actor(ctx), node, reason)
    say(f"{result['node']} is validating; case {result['case']} carries on", style="green")


@app.command("lifecycle")
def lifecycle_command(
    diagram_format: Annotated[
        DiagramFormat | None,
        typer.Option(
            "--diagram", case_sensitive=False, help="Write the diagram (mermaid or dot) instead of the table."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", dir_okay=False, help="Write the diagram to this file.", show_default=False),
    ] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """The case state machine as the code declares it: each state's owner and work, the events automation may take
    from it and the actions a person may. With --diagram, the generated diagram."""
    if diagram_format is not None or out is not None:
        text = diagram.case_dot() if diagram_format is DiagramFormat.DOT else diagram.case_mermaid()
        if out is None:
            typer.echo(text, nl=False)
            return
        out.write_text(text, encoding="utf-8")
        say(f"wrote the case lifecycle diagram to {out}", style="green")
        return
    states = [
        {
            "state": state.value,
            "owner": policy.owner,
            "work": policy.doc,
            "events": automation_events(state),
            "person_actions": person_actions(state),
        }
        for state, policy in CASE_STATE_POLICIES.items()
    ]
    if output is Output.JSON:
        emit_json(states)
        return
    rows = [
        (s["state"], s["owner"], s["work"], ", ".join(s["events"]) or "-", ", ".join(s["person_actions"]) or "final")
        for s in states
    ]
    show(table("Remediation case lifecycle", ("state", "owner", "work", "automation", "a person may"), rows))
