"""`gpufleet clusters`: which driver acts on a cluster, whether it reaches the scheduler, and reconciling with it."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from gpufleet.cli.output import EXIT_FAILED, Output, OutputOption, emit_json, say, show, table
from gpufleet.cli.state import actor, database
from gpufleet.clusters.drivers import set_cluster_driver
from gpufleet.clusters.sync import check_cluster, reboot_in_scheduler, resume_in_scheduler, sync_cluster
from gpufleet.controllers import cluster_sync as cluster_sync_controller
from gpufleet.controllers.base import Runner, run_together
from gpufleet.platform.errors import InvalidInput

app = typer.Typer(help="Cluster drivers (simulated, slurm, kubernetes): set, check and sync.", no_args_is_help=True)

ClusterArgument = Annotated[str, typer.Argument(help="Cluster name.", show_default=False)]
NodeArgument = Annotated[str, typer.Argument(help="Chassis id, serial or hostname.", show_default=False)]


def _path(value: Path | None) -> str | None:
    return str(value.expanduser().resolve()) if value is not None else None


def _settings(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"expected KEY=VALUE, got {pair!r}", field="--set")
        text = value.strip()
        number: Any = text
        if text.lower() in ("true", "false"):
            number = text.lower() == "true"
        else:
            try:
                number = float(text) if "." in text else int(text)
            except ValueError:
                number = text
        out[key.strip()] = number
    return out


@app.command("set-driver")
def set_driver(
    ctx: typer.Context,
    cluster: ClusterArgument,
    driver: Annotated[str, typer.Argument(help="simulated, slurm or kubernetes.", show_default=False)],
    conf: Annotated[Path | None, typer.Option("--conf", help="Slurm: the cluster's slurm.conf.")] = None,
    bin_dir: Annotated[Path | None, typer.Option("--bin-dir", help="Slurm: folder of scontrol, sinfo, squeue.")] = None,
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", help="Kubernetes: kubeconfig file.")] = None,
    context: Annotated[str | None, typer.Option("--context", help="Kubernetes: kubeconfig context.")] = None,
    in_cluster: Annotated[
        bool, typer.Option("--in-cluster", help="Kubernetes: use the pod's service account.")
    ] = False,
    setting: Annotated[
        list[str] | None, typer.Option("--set", help="Another driver setting, KEY=VALUE (repeatable).")
    ] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Switch a cluster to a driver. Paths are stored, never credentials; `clusters check` then tries it."""
    config = _settings(setting or [])
    for key, value in (
        ("conf", _path(conf)),
        ("bin_dir", _path(bin_dir)),
        ("kubeconfig", _path(kubeconfig)),
        ("context", context),
    ):
        if value is not None:
            config[key] = value
    if in_cluster:
        config["in_cluster"] = True
    target = set_cluster_driver(database(ctx), cluster, driver, config, actor(ctx))
    if output is Output.JSON:
        emit_json({"cluster": target.name, "driver": target.driver, "config": dict(target.config)})
        return
    say(f"{target.name} now uses the {target.driver} driver", style="bold")
    if target.config:
        show(table(None, ("setting", "value"), sorted(target.config.items())))


@app.command("check")
def check(ctx: typer.Context, cluster: ClusterArgument, output: OutputOption = Output.TABLE) -> None:
    """Whether the driver reaches the cluster's scheduler, and what it sees there. Exit 1 when unreachable."""
    seen = check_cluster(database(ctx), cluster, actor(ctx))
    if output is Output.JSON:
        emit_json(seen)
    else:
        state = "reachable" if seen.get("reachable") else "NOT reachable"
        say(f"{cluster} ({seen['driver']}): {state}", style="bold" if seen.get("reachable") else "red")
        rows = [(k, v) for k, v in seen.items() if k not in ("cluster", "driver", "reachable", "states")]
        show(table(None, ("what", "value"), rows))
        if seen.get("states"):
            show(table("Nodes by scheduler state", ("state", "nodes"), sorted(seen["states"].items())))
    if not seen.get("reachable"):
        raise typer.Exit(EXIT_FAILED)


@app.command("sync")
def sync(ctx: typer.Context, cluster: ClusterArgument, output: OutputOption = Output.TABLE) -> None:
    """Reconcile once, both ways: record what the scheduler changed, apply what gpufleet holds. Exit 1 on errors."""
    report = sync_cluster(database(ctx), cluster, actor(ctx))
    data = report.as_dict()
    if output is Output.JSON:
        emit_json(data)
    elif report.skipped:
        say(f"{cluster}: another process is syncing this cluster now; nothing done", style="yellow")
    elif not report.reachable:
        say(f"{cluster}: the scheduler did not answer; nothing changed: {report.error}", style="red")
    else:
        say(
            f"{cluster} ({report.driver}): {report.nodes} nodes, {len(report.observed)} observed, "
            f"{len(report.actions)} actions, {len(report.transitions)} transitions, {len(report.failures)} failures",
            style="bold",
        )
        if report.observed:
            rows = [
                (o["node"], o["event"], o.get("native_state"), o.get("reason"), o.get("user")) for o in report.observed
            ]
            show(table("Observed", ("node", "event", "scheduler state", "reason", "by"), rows))
        if report.actions:
            show(
                table(
                    "Done",
                    ("node", "action", "reason"),
                    [(a["node"], a["action"], a["reason"]) for a in report.actions],
                )
            )
        if report.held_outside:
            held = [(h["node"], h["state"], h["reason"], h["user"]) for h in report.held_outside]
            show(table("Held outside gpufleet (not resumed)", ("node", "gpufleet state", "reason", "by"), held))
        if report.failures:
            show(
                table(
                    "Failed (retried next run)",
                    ("node", "action", "error"),
                    [(f["node"], f["action"], f["error"]) for f in report.failures],
                )
            )
        for name, items in (
            ("In the cluster, unknown to gpufleet", report.unknown_to_gpufleet),
            ("In gpufleet, missing from the cluster", report.missing_in_cluster),
        ):
            if items:
                say(f"{name}: {', '.join(items[:50])}", style="yellow")
    if not report.reachable or report.failures:
        raise typer.Exit(EXIT_FAILED)


@app.command("resume")
def resume(
    ctx: typer.Context,
    node: NodeArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).", show_default=False)],
    override: Annotated[
        bool, typer.Option("--override", help="Also lift a hold that someone else put on the node.")
    ] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """Return a node to the scheduler's service. A drain someone else made is lifted only with --override."""
    done = resume_in_scheduler(database(ctx), node, reason, actor(ctx), override=override)
    if output is Output.JSON:
        emit_json(done)
        return
    say(f"{done['node']} resumed in {done['cluster']}" + (" (override)" if override else ""))


@app.command("reboot")
def reboot(
    ctx: typer.Context,
    node: NodeArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).", show_default=False)],
    output: OutputOption = Output.TABLE,
) -> None:
    """Ask the scheduler to reboot a node; `clusters sync` records whether it came back."""
    done = reboot_in_scheduler(database(ctx), node, reason, actor(ctx))
    if output is Output.JSON:
        emit_json(done)
        return
    say(f"reboot of {done['node']} requested in {done['cluster']}")


@app.command()
def watch(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option("--interval", min=1.0, help="Seconds between passes.")] = 60.0,
    passes: Annotated[
        int, typer.Option("--passes", min=0, help="Stop after this many passes (0: run until Ctrl-C).")
    ] = 0,
) -> None:
    """Keep every driven cluster in sync: one pass each --interval seconds. Safe to run in several processes at once
    (each cluster is synced by one of them at a time)."""
    stop = threading.Event()
    done = 0

    def report(reports: list[Any]) -> None:
        nonlocal done
        done += 1
        say(f"pass {done}: {len(reports)} cluster(s) with a scheduler driver synced")
        for r in reports:
            data = r.as_dict()
            say(
                f"{data.get('cluster')}: reachable={data.get('reachable')} observed={len(data.get('observed') or [])} "
                f"actions={len(data.get('actions') or [])} failures={len(data.get('failures') or [])}"
            )
        if passes and done >= passes:
            stop.set()

    db = database(ctx)
    controller = cluster_sync_controller.ClusterSyncController(db, actor(ctx), on_pass=report)
    runner = Runner(
        controller, db.clock.now, log=lambda m: say(m, style="yellow"), interval=timedelta(seconds=interval)
    )
    try:
        run_together([runner], stop, passes or None)
    except KeyboardInterrupt:
        stop.set()
