"""`gpufleet summary`: how many nodes and GPUs, in which states and clusters."""

from __future__ import annotations

import typer

from gpufleet.cli.output import Output, OutputOption, emit_json, say, show, table
from gpufleet.cli.state import actor, database
from gpufleet.fleet.queries import fleet_summary


def summary(ctx: typer.Context, output: OutputOption = Output.TABLE) -> None:
    """Count nodes and GPUs by state and by cluster (JSON adds state x cluster x supplier x SKU groups)."""
    db = database(ctx)
    with db.reader() as session:
        data = fleet_summary(session, actor(ctx), db.clock.now())
    if output is Output.JSON:
        emit_json(data)
        return
    say(f"{data['nodes']} nodes, {data['gpus']} GPUs, {data['gpus_in_service']} GPUs in service", style="bold")
    if not data["nodes"]:
        return
    total = data["nodes"]
    states = [
        (state, c["nodes"], c["gpus"], f"{100 * c['nodes'] / total:.1f}%")
        for state, c in data["by_state"].items()
        if c["nodes"]
    ]
    show(table("By state", ("state", "nodes", "gpus", "share"), states))
    clusters = [(name, c["nodes"], c["gpus"]) for name, c in sorted(data["by_cluster"].items())]
    show(table("By cluster", ("cluster", "nodes", "gpus"), clusters))
