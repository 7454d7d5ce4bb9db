"""`gpufleet validation`: policies per cluster, results history, bans, re-ban rates and the threshold simulator."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from gpufleet.cli.output import EXIT_FAILED, Output, OutputOption, capped_note, emit_json, say, show, table
from gpufleet.cli.state import actor, database
from gpufleet.domain.validation import CHECKS, SUITES, parse_time
from gpufleet.platform.errors import InvalidInput
from gpufleet.validation.analytics import DEFAULT_DAYS, Scope, reban_report, threshold_report
from gpufleet.validation.bans import ban_node, list_bans
from gpufleet.validation.chart import threshold_chart_html
from gpufleet.validation.ingest import IngestReport, ingest_results_file
from gpufleet.validation.policy import load_criteria, plan_validation, set_policy, show_policy

app = typer.Typer(
    help="Validation gating: policies, results, bans, re-ban rates and the threshold simulator.", no_args_is_help=True
)
policy_app = typer.Typer(help="A cluster's validation policy.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

NodeArgument = Annotated[str, typer.Argument(help="Chassis id, serial or hostname.", show_default=False)]
ClusterArgument = Annotated[str, typer.Argument(help="Cluster name.", show_default=False)]
DaysOption = Annotated[
    int, typer.Option("--days", min=1, max=3650, help="A re-ban is a ban within this many days of an admission.")
]
TABLE_ROWS = 100


def _opt(help_text: str, *names: str) -> Any:
    return typer.Option(*names, help=help_text, show_default=False)


def _pct(value: float) -> str:
    return f"{value:.1%}"


# ---------------------------------------------------------------------------------------------------------------
# Policies and plans.


def _show_policy(view: dict[str, Any]) -> None:
    origin = "defaults (never set)" if view["is_default"] else f"version {view['version']} by {view['updated_by']}"
    rows = [
        ("fast track", f"within {view['fast_track_days']} days", view["fast_track_suite"], view["fast_track_passes"]),
        ("slow path", "new or repaired hardware", view["slow_path_suite"], view["slow_path_passes"]),
        ("canary", f"configuration {view['config_version'] or '-'}", view["canary_suite"], view["slow_path_passes"]),
    ]
    show(table(f"Validation policy of {view['cluster']}: {origin}", ("path", "when", "suite", "passes"), rows))


@policy_app.command("show")
def policy_show(ctx: typer.Context, cluster: ClusterArgument, output: OutputOption = Output.TABLE) -> None:
    """The cluster's policy, or the defaults it uses when none was set."""
    view = show_policy(database(ctx), cluster, actor(ctx)).as_dict()
    if output is Output.JSON:
        emit_json(view)
        return
    _show_policy(view)


@policy_app.command("set")
def policy_set(
    ctx: typer.Context,
    cluster: ClusterArgument,
    fast_track_days: Annotated[int | None, _opt("Fast track within this many days of healthy service.")] = None,
    fast_track_suite: Annotated[str | None, _opt("Suite the fast track runs.")] = None,
    fast_track_passes: Annotated[int | None, _opt("Passes the fast track needs.")] = None,
    slow_path_suite: Annotated[str | None, _opt("Suite the slow path runs.")] = None,
    slow_path_passes: Annotated[int | None, _opt("Passes the slow path (and a canary) needs.")] = None,
    canary_suite: Annotated[str | None, _opt("Suite a canary runs.")] = None,
    config_version: Annotated[
        str | None, _opt("The cluster's configuration version; a new one sends a canary first.")
    ] = None,
    clear_config_version: Annotated[bool, typer.Option(help="Forget the configuration version.")] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """Change some of the cluster's policy; fields not named keep their value."""
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("fast_track_days", fast_track_days),
            ("fast_track_suite", fast_track_suite),
            ("fast_track_passes", fast_track_passes),
            ("slow_path_suite", slow_path_suite),
            ("slow_path_passes", slow_path_passes),
            ("canary_suite", canary_suite),
            ("config_version", config_version),
        )
        if value is not None
    }
    if clear_config_version:
        changes["config_version"] = None
    view = set_policy(database(ctx), cluster, changes, actor(ctx)).as_dict()
    if output is Output.JSON:
        emit_json(view)
        return
    say(f"updated the policy of {cluster}" if view["changed"] else "no changes: the policy already says that", "green")
    _show_policy(view)


@app.command("plan")
def plan(ctx: typer.Context, node: NodeArgument, output: OutputOption = Output.TABLE) -> None:
    """The path, suite and passes the node should run now, and why."""
    result = plan_validation(database(ctx), node, actor(ctx)).as_dict()
    if output is Output.JSON:
        emit_json(result)
        return
    say(f"{result['node']} in {result['cluster']}: {result['path']} - {result['reason']}")
    rows = [
        (
            result["path"],
            result["suite"],
            result["passes"],
            result["checks"],
            f"{result['minutes_per_pass']:g} min",
            result["attempt"],
        )
    ]
    show(table(None, ("path", "suite", "passes", "checks", "per pass", "attempt number"), rows))
    if result["wait_for"]:
        say(f"wait: canary {result['wait_for']} must pass first", style="yellow")


@app.command("suites")
def suites(output: OutputOption = Output.TABLE) -> None:
    """The suites, the checks they run, and the per-GPU-model floors for measured checks."""
    criteria = {c.gpu_model: {"source": c.source, **c.minimums} for c in load_criteria().values()}
    data = {
        "suites": {s.name: {"checks": list(s.checks), "minutes": s.minutes, "doc": s.doc} for s in SUITES.values()},
        "checks": {
            c.name: {"kind": c.kind.value, "unit": c.unit, "minutes": c.minutes, "doc": c.doc} for c in CHECKS.values()
        },
        "criteria": criteria,
    }
    if output is Output.JSON:
        emit_json(data)
        return
    show(
        table(
            "Suites",
            ("suite", "checks", "minutes per pass", "use"),
            [(s.name, s.checks, s.minutes, s.doc) for s in SUITES.values()],
        )
    )
    measured = [c for c in CHECKS.values() if c.unit]
    rows = [(model, *(values.get(c.name) for c in measured), values["source"]) for model, values in criteria.items()]
    show(table("Floors per GPU model", ("model", *(f"{c.name} ({c.unit})" for c in measured), "source"), rows))


# ---------------------------------------------------------------------------------------------------------------
# Results and bans.


def _show_ingest(report: IngestReport) -> None:
    say(report.summary_line(), style="green" if report.ok else ("yellow" if report.applied else "red"))
    for title, items in (("Bad records", report.errors), ("Notes", report.notes)):
        if not items:
            continue
        shown = items[:TABLE_ROWS]
        show(table(title, ("line", "field", "message"), [(e.line, e.field, e.message) for e in shown]))
        note = capped_note(len(shown), len(items), "--output json lists them all")
        if note is not None:
            show(note)


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="JSONL (or a JSON array) of results.")
    ],
    partial: Annotated[bool, typer.Option("--partial", help="Record the good lines and list the bad ones.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and count, record nothing.")] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """Record validation results, one pass a line. All or nothing unless --partial; lines already recorded are
    skipped, so re-running a file is safe. Exits 0 only when every line was recorded (or already was)."""
    report = ingest_results_file(database(ctx), file, actor(ctx), partial=partial, dry_run=dry_run)
    if output is Output.JSON:
        emit_json(report.as_dict(max_notes=len(report.notes)))
    else:
        _show_ingest(report)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


@app.command("ban")
def ban(
    ctx: typer.Context,
    node: NodeArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why: the fault seen in service.", show_default=False)],
    source: Annotated[str, typer.Option("--source", help="Who found it: health, tenant, operator...")] = "operator",
    at: Annotated[
        str | None, _opt("Backfill a past ban at this ISO 8601 time (no quarantine); default: now.", "--at")
    ] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Ban a node from its cluster for failing in service; a node in service is quarantined too."""
    when: datetime | None = None
    if at is not None:
        try:
            when = parse_time(at)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="at") from None
    result = ban_node(database(ctx), node, reason, actor(ctx), source=source, at=when).as_dict()
    if output is Output.JSON:
        emit_json(result)
        return
    if not result["created"]:
        say(f"no changes: {result['node']} is already banned from {result['cluster']} (ban {result['id']})", "green")
        return
    extra = " and quarantined it" if result["quarantined"] else ""
    say(f"banned {result['node']} from {result['cluster']}{extra} (ban {result['id']})", style="green")


@app.command("bans")
def bans(
    ctx: typer.Context,
    node: Annotated[str | None, _opt("Only this node.", "--node")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most this many, newest first.")] = 100,
    output: OutputOption = Output.TABLE,
) -> None:
    """The latest bans."""
    items = list_bans(database(ctx), actor(ctx), node, limit)
    if output is Output.JSON:
        emit_json(items)
        return
    columns = ("at", "node", "cluster", "source", "reason", "by")
    show(
        table(None, columns, [(b["at"], b["node"], b["cluster"], b["source"], b["reason"], b["actor"]) for b in items])
    )


# ---------------------------------------------------------------------------------------------------------------
# Analytics.


class GroupBy(StrEnum):
    SUPPLIER = "supplier"
    SKU = "sku"
    CLUSTER = "cluster"
    MONTH = "month"


ScopeCluster = Annotated[str | None, _opt("Only this cluster.", "--cluster")]
ScopeSupplier = Annotated[str | None, _opt("Only this supplier's nodes.", "--supplier")]
ScopeSku = Annotated[str | None, _opt("Only this SKU.", "--sku")]


@app.command("reban-rates")
def reban_rates(
    ctx: typer.Context,
    by: Annotated[GroupBy, typer.Option("--by", case_sensitive=False, help="Group admissions by this.")] = (
        GroupBy.SUPPLIER
    ),
    days: DaysOption = DEFAULT_DAYS,
    cluster: ScopeCluster = None,
    supplier: ScopeSupplier = None,
    sku: ScopeSku = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Of the nodes admitted (a passing attempt), how many were banned again within D days, per group."""
    report = reban_report(database(ctx), actor(ctx), by.value, days, Scope(cluster, supplier, sku))
    if output is Output.JSON:
        emit_json(report.as_dict())
        return
    rows = [(r.group, r.admissions, r.rebanned, _pct(r.rate)) for r in report.rates]
    total = report.as_dict()
    rows.append(("all", total["admissions"], total["rebanned"], _pct(total["rate"])))
    show(table(f"Re-ban rate within {days} days by {by.value}", (by.value, "admissions", "re-banned", "rate"), rows))


@app.command("threshold")
def threshold(
    ctx: typer.Context,
    cluster: ScopeCluster = None,
    supplier: ScopeSupplier = None,
    sku: ScopeSku = None,
    days: DaysOption = DEFAULT_DAYS,
    html: Annotated[Path | None, _opt("Also write the chart to this self-contained HTML file.", "--html")] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """If only k of the N slow-path passes had been required: who else gets in, how risky, and what it saves.
    --output json prints one object per k."""
    report = threshold_report(database(ctx), actor(ctx), Scope(cluster, supplier, sku), days)
    if html is not None:
        html.write_text(threshold_chart_html(report), encoding="utf-8")
    if output is Output.JSON:
        emit_json([r.as_dict() for r in report.rows])
        return
    if not report.rows:
        say("no completed slow-path attempts in scope yet", style="yellow")
    else:
        rows = [
            (
                r.k,
                r.admitted,
                r.extra_admitted,
                _pct(r.extra_share),
                r.expected_bad_admitted,
                f"{r.gpu_hours_saved:,.0f}",
                r.value_of_pass,
                _pct(r.value_share),
            )
            for r in report.rows
        ]
        first = report.rows[0]
        title = (
            f"Threshold simulator: {report.attempts} completed attempts, N = {report.passes_required}; "
            f"admitted at N: {first.admitted_at_n}, re-banned within {days} days: {first.rebanned_at_n} "
            f"({_pct(first.reban_rate_at_n)})"
        )
        columns = (
            "k",
            "admitted",
            "extra admitted",
            "extra share",
            "expected bad",
            "GPU-h saved",
            "value of pass k",
            "share",
        )
        show(table(title, columns, rows))
    if html is not None:
        say(f"wrote the chart to {html}", style="green")
