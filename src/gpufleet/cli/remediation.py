"""`gpufleet remediation`: run the controller, and its figures, breakers, dry runs, tickets, notifications, reboots.

The immediate reaction to ingested events is attached with the CLI's database (``cli.state.database``), so
`gpufleet events ingest` quarantines a node with a fatal Xid within the command.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Annotated, Any

import typer

from gpufleet.cli.output import Output, OutputOption, emit_json, say, show, table, when
from gpufleet.cli.state import actor, database
from gpufleet.remediation.outbox import deliver_due, list_channels, outbox_summary, set_channel
from gpufleet.remediation.policy import set_override
from gpufleet.remediation.reboots import list_reboots
from gpufleet.remediation.safety import breakers, reset_breaker, trip_breaker
from gpufleet.remediation.tickets import list_tickets, set_ticket_status
from gpufleet.reports.remediation import remediation_figures

app = typer.Typer(
    help="The remediation controller and its safety, figures, tickets and notifications.", no_args_is_help=True
)
breaker_app = typer.Typer(help="Per-cluster circuit breakers.", no_args_is_help=True)
channel_app = typer.Typer(
    help="Where notifications (supplier tickets, cases needing a person) go.", no_args_is_help=True
)
app.add_typer(breaker_app, name="breaker")
app.add_typer(channel_app, name="channel")

ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded).", show_default=False)]
ClusterArgument = Annotated[str, typer.Argument(help="Cluster name.", show_default=False)]


CONTROLLER = "gpufleet.controllers.remediation"
"""Started by import string, like the API server: entry points do not import the controllers."""


@app.command("run")
def run_command(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit (for cron or a test).")] = False,
    deliver: Annotated[bool, typer.Option("--deliver/--no-deliver", help="Also deliver the outbox.")] = True,
    output: OutputOption = Output.TABLE,
) -> None:
    """Run the remediation controller: take new health events into cases and move cases on, until stopped. Safe to
    run in several processes at once."""
    db = database(ctx)
    controller = importlib.import_module(CONTROLLER)
    if not once:
        say("remediation controller running (every 10 s, sooner when work is due); Ctrl-C stops it")
    report = controller.run(db, once=once, deliver=deliver, log=lambda m: say(m, style="yellow"))
    if output is Output.JSON:
        emit_json(report)
    else:
        say(", ".join(f"{k} {v}" for k, v in report.items() if k != "outbox"))


@app.command("figures")
def figures_command(
    ctx: typer.Context,
    days: Annotated[
        int | None, typer.Option("--days", min=1, max=3650, help="Only cases opened in the last N days.")
    ] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """MTTR from detection to reintegration (software/hardware, p50/p90), the share resolved without a person by
    supplier and by cluster, and the share of reboots that came back."""
    db = database(ctx)
    since = db.clock.now() - timedelta(days=days) if days else None
    data = remediation_figures(db, actor(ctx), since)
    if output is Output.JSON:
        emit_json(data)
        return
    mttr = data["mttr_minutes"]
    auto = data["automation"]
    reb = data["reboots"]
    rows: list[tuple[str, Any]] = [
        ("cases", f"{data['cases_total']} ({data['open_cases']} open)"),
        *(
            (f"MTTR {g}", f"p50 {_min(v['p50'])}, p90 {_min(v['p90'])} over {v['count']} case(s)")
            for g, v in mttr.items()
        ),
        *(
            (f"unresolved {g}", f"{v['count']} case(s), open p50 {_min(v['age_p50'])}, longest {_min(v['age_max'])}")
            for g, v in data["unresolved_minutes"].items()
            if v["count"]
        ),
        ("resolved without a person", _share(auto["rate"], auto["automated"], auto["cases"])),
        (
            "reboots that came back",
            _share(reb["returned_share"], reb["returned"], reb["returned"] + reb["not_returned"]),
        ),
    ]
    show(table(None, ("", ""), rows, show_header=False))
    for scope in ("by_supplier", "by_cluster"):
        show(
            table(
                f"Automation {scope.replace('_', ' ')}",
                ("name", "cases", "without a person", "rate"),
                [(k, v["cases"], v["automated"], _pct(v["rate"])) for k, v in auto[scope].items()],
            )
        )


def _min(value: float | None) -> str:
    return "-" if value is None else (f"{value:g} min" if value < 120 else f"{value / 60:.1f} h")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _share(rate: float | None, part: int, whole: int) -> str:
    return f"{_pct(rate)} ({part} of {whole})"


@app.command("dry-run")
def dry_run_command(
    ctx: typer.Context,
    mode: Annotated[str, typer.Argument(help="on or off.")],
    reason: ReasonOption,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Only this cluster (default: the fleet).")] = None,
) -> None:
    """Record what automation would do without doing it (on), or act again (off)."""
    if mode not in ("on", "off"):
        raise typer.BadParameter("expected on or off", param_hint="MODE")
    set_override(database(ctx), actor(ctx), "setting:dry_run", mode == "on", reason, cluster)
    say(f"dry run {mode} for {cluster or 'the fleet'}", style="green")


def _breakers(items: list[dict[str, Any]]) -> None:
    rows = [
        (
            b["cluster"],
            b["state"],
            when(b["tripped_at"]),
            b["reason"],
            b["held_cases"],
            f"{b['reset_by']}: {b['reset_reason']}" if b["reset_by"] else "",
        )
        for b in items
    ]
    show(table("Circuit breakers", ("cluster", "state", "tripped", "why", "held cases", "last reset"), rows))


@breaker_app.command("show")
def breaker_show(ctx: typer.Context, output: OutputOption = Output.TABLE) -> None:
    """Every cluster's breaker: open ones say why and how many cases they hold."""
    items = [b.as_dict() for b in breakers(database(ctx), actor(ctx))]
    if output is Output.JSON:
        emit_json(items)
        return
    _breakers(items)


@breaker_app.command("reset")
def breaker_reset(ctx: typer.Context, cluster: ClusterArgument, reason: ReasonOption) -> None:
    """Close the breaker: held cases proceed at the controller's next pass."""
    _breakers([reset_breaker(database(ctx), actor(ctx), cluster, reason).as_dict()])


@breaker_app.command("trip")
def breaker_trip(ctx: typer.Context, cluster: ClusterArgument, reason: ReasonOption) -> None:
    """Stop automation taking nodes out in the cluster until reset (a change window, a suspect check)."""
    _breakers([trip_breaker(database(ctx), actor(ctx), cluster, reason).as_dict()])


@app.command("tickets")
def tickets_command(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="open, sent, acknowledged, resolved or closed.")
    ] = None,
    supplier: Annotated[str | None, typer.Option("--supplier", help="Only this supplier's.")] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Supplier tickets (RMA and escalations), one per hardware unit, newest first."""
    items = list_tickets(database(ctx), actor(ctx), status, supplier)
    if output is Output.JSON:
        emit_json(items)
        return
    rows = [
        (
            t["id"],
            t["supplier"],
            t["unit"],
            t["kind"],
            t["status"],
            t["cases"],
            len(t["evidence"]),
            t["external_ref"],
            when(t["updated_at"]),
        )
        for t in items
    ]
    show(
        table(
            f"{len(items)} ticket(s)",
            ("id", "supplier", "unit", "kind", "status", "cases", "evidence", "their ref", "updated"),
            rows,
        )
    )


@app.command("ticket")
def ticket_command(
    ctx: typer.Context,
    ticket_id: Annotated[int, typer.Argument(help="The ticket id.")],
    status: Annotated[str, typer.Argument(help="acknowledged, resolved, closed, ...")],
    reason: ReasonOption,
    ref: Annotated[str | None, typer.Option("--ref", help="The supplier's own reference.")] = None,
) -> None:
    """Record what the supplier said about a ticket."""
    t = set_ticket_status(database(ctx), actor(ctx), ticket_id, status, reason, ref)
    say(f"ticket {t['id']} ({t['unit']}) is {t['status']}", style="green")


@channel_app.command("set")
def channel_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name; 'default' takes what no supplier channel does.")],
    url: Annotated[str, typer.Argument(help="The webhook URL (http or https).")],
    supplier: Annotated[str | None, typer.Option("--supplier", help="This supplier's tickets go here.")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Keep it, send nothing to it.")] = False,
) -> None:
    """Add or change a webhook channel."""
    c = set_channel(database(ctx), actor(ctx), name, url, supplier, enabled=not disabled)
    say(f"channel {c['name']} -> {c['url']}" + (f" for {c['supplier']}" if c["supplier"] else ""), style="green")


@channel_app.command("list")
def channel_list(ctx: typer.Context, output: OutputOption = Output.TABLE) -> None:
    items = list_channels(database(ctx), actor(ctx))
    if output is Output.JSON:
        emit_json(items)
        return
    show(
        table(
            "Channels",
            ("name", "url", "supplier", "enabled"),
            [(c["name"], c["url"], c["supplier"], c["enabled"]) for c in items],
        )
    )


@app.command("outbox")
def outbox_command(
    ctx: typer.Context,
    deliver: Annotated[bool, typer.Option("--deliver", help="Deliver what is due now.")] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """What waits to be delivered (and why), and what was sent."""
    db = database(ctx)
    delivered = deliver_due(db).as_dict() if deliver else None
    data = outbox_summary(db, actor(ctx))
    if delivered is not None:
        data["delivered_now"] = delivered
    if output is Output.JSON:
        emit_json(data)
        return
    say(
        ", ".join(f"{k} {v}" for k, v in data["by_status"].items()) + f"; oldest waiting {when(data['oldest_waiting'])}"
    )
    show(
        table(
            "Recent",
            ("id", "topic", "status", "channel", "attempts", "last error"),
            [(m["id"], m["topic"], m["status"], m["channel"], m["attempts"], m["last_error"]) for m in data["recent"]],
        )
    )


@app.command("reboots")
def reboots_command(
    ctx: typer.Context,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Only this cluster's.")] = None,
    outcome: Annotated[str | None, typer.Option("--outcome", help="pending, returned or not_returned.")] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Reboots asked for or seen: which nodes went down, which came back and how long it took, the share returned."""
    data = list_reboots(database(ctx), actor(ctx), cluster, outcome)
    if output is Output.JSON:
        emit_json(data)
        return
    f = data["figures"]
    say(
        f"{f['total']} reboot(s): {f['returned']} came back, {f['not_returned']} did not, {f['pending']} pending; "
        f"returned {_pct(f['returned_share'])}, p50 {f['minutes_p50']} min"
    )
    show(
        table(
            "Reboots",
            ("node", "cluster", "case", "asked", "went down", "came back", "minutes", "outcome"),
            [
                (
                    r["hostname"],
                    r["cluster"],
                    r["case"],
                    when(r["requested_at"]),
                    when(r["went_down_at"]),
                    when(r["came_back_at"]),
                    r["minutes"],
                    r["outcome"],
                )
                for r in data["reboots"]
            ],
        )
    )
