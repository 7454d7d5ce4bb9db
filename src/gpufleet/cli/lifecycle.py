"""`gpufleet lifecycle`: the node state machine as the code declares it, as a table or a diagram."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from gpufleet.cli.output import Output, OutputOption, duration, emit_json, say, show, table
from gpufleet.domain import diagram
from gpufleet.domain.lifecycle import FINAL_STATES, STATE_POLICIES, allowed_events

app = typer.Typer(help="The node lifecycle: states, events, owners and time limits.", no_args_is_help=True)


class DiagramFormat(StrEnum):
    MERMAID = "mermaid"
    DOT = "dot"


@app.command("diagram")
def diagram_(
    fmt: Annotated[
        DiagramFormat, typer.Option("--format", case_sensitive=False, help="Mermaid (Markdown) or Graphviz dot.")
    ] = DiagramFormat.MERMAID,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", dir_okay=False, help="Write to this file instead of stdout.", show_default=False),
    ] = None,
) -> None:
    """Write the lifecycle diagram, generated from the transition table."""
    text = diagram.mermaid() if fmt is DiagramFormat.MERMAID else diagram.dot()
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    say(f"wrote the {fmt.value} lifecycle diagram to {out}", style="green")


@app.command("show")
def show_(output: OutputOption = Output.TABLE) -> None:
    """Every state with the action that moves it on, its owner, its time limit and the events allowed from it."""
    states = [
        {
            "state": state.value,
            "action": policy.action,
            "owner": policy.owner,
            "time_limit_seconds": int(policy.time_limit.total_seconds()) if policy.time_limit else None,
            "final": state in FINAL_STATES,
            "allowed_events": allowed_events(state),
        }
        for state, policy in STATE_POLICIES.items()
    ]
    if output is Output.JSON:
        emit_json(states)
        return
    rows = [
        (
            state.value,
            policy.action,
            policy.owner,
            duration(policy.time_limit) if policy.time_limit else "none",
            allowed_events(state) or "final",
        )
        for state, policy in STATE_POLICIES.items()
    ]
    show(table("Node lifecycle", ("state", "action", "owner", "time limit", "allowed events"), rows))
