"""`gpufleet policy`: the health policy in force (Xid and other codes, related codes, repeats, the ladder) and its
overrides per cluster or pool."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from gpufleet.cli.output import Output, OutputOption, emit_json, say, show, table, when
from gpufleet.cli.state import actor, database
from gpufleet.platform.errors import InvalidInput
from gpufleet.remediation.policy import list_overrides, revoke_override, set_override, show_policy

app = typer.Typer(help="The health policy in force and its overrides per cluster or pool.", no_args_is_help=True)

ClusterOption = Annotated[str | None, typer.Option("--cluster", help="The policy in force in this cluster.")]
PoolOption = Annotated[str | None, typer.Option("--pool", help="... in this pool (node label 'pool') of the cluster.")]


@app.command("show")
def show_command(
    ctx: typer.Context,
    cluster: ClusterOption = None,
    pool: PoolOption = None,
    code: Annotated[str | None, typer.Option("--code", help="Only codes starting with this, e.g. xid:4.")] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """The policy in force: version, per-code action, kind and owner, related-code rules, repeat windows, the
    ladder, the safety settings, and the overrides that apply here."""
    policy = show_policy(database(ctx), actor(ctx), cluster, pool)
    if code:
        policy["codes"] = {k: v for k, v in policy["codes"].items() if k.startswith(code)}
    if output is Output.JSON:
        emit_json(policy)
        return
    scope = policy["scope"]
    where = (
        "the fleet"
        if not scope["cluster"]
        else f"cluster {scope['cluster']}" + (f", pool {scope['pool']}" if scope["pool"] else "")
    )
    say(f"Health policy {policy['version']} in force for {where} ({policy['source']})", style="bold")
    rows = [
        (c, r["action"], r["kind"], r["owner"], "yes" if r["fatal"] else "", r["drain"], r["name"] or r["about"])
        for c, r in policy["codes"].items()
    ]
    show(table("Codes", ("code", "action", "kind", "owner", "fatal", "drain", "what"), rows))
    show(
        table(
            "Codes not listed",
            ("prefix", "from severity", "action", "kind", "owner"),
            [(p["prefix"], p["min_severity"], p["action"], p["kind"], p["owner"]) for p in policy["prefixes"]],
        )
    )
    related = [(r["code"], r["with_any"], r["action"], r["drain"], r["reason"]) for r in policy["related"]]
    related += [(c, "any other code", "follows the others", "", "acted on alone only") for c in policy["follows"]]
    show(table("Related codes", ("code", "seen with", "action", "drain", "why"), related))
    show(
        table(
            "Repeats",
            ("rule", "counts", "how many", "within", "action"),
            [
                (
                    r["name"],
                    r["counts"] + (f" ({', '.join(r['kinds'])})" if r["kinds"] else ""),
                    r["count"],
                    f"{r['window_hours']:g} h",
                    r["action"],
                )
                for r in policy["repeats"]
            ],
        )
    )
    b = policy["backoff"]
    show(
        table(
            f"Ladder (retries back off from {b['initial_seconds']:g} s x{b['factor']:g} up to {b['max_seconds']:g} s)",
            ("rung", "action", "attempts", "time limit"),
            [
                (i + 1, s["action"], s["attempts"], f"{s['time_limit_minutes']:g} min")
                for i, s in enumerate(policy["ladder"])
            ],
        )
    )
    show(table("Settings", ("setting", "value"), list(policy["settings"].items())))
    if policy["overrides"]:
        _overrides(policy["overrides"])


def _overrides(items: list[dict[str, Any]]) -> None:
    rows = [
        (
            o["id"],
            o["cluster"] or "fleet",
            o["pool"] or "",
            o["key"],
            json.dumps(o["value"]),
            o["reason"],
            o["actor"],
            when(o["created_at"]),
            when(o["revoked_at"]) if o["revoked_at"] else "",
        )
        for o in items
    ]
    show(table("Overrides", ("id", "cluster", "pool", "key", "value", "reason", "by", "at", "revoked"), rows))


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@app.command("override")
def override_command(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded with the override).", show_default=False)],
    cluster: ClusterOption = None,
    pool: PoolOption = None,
    code: Annotated[str | None, typer.Option("--code", help="The code to change, e.g. xid:79.")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="restart_app, reset_gpu, reboot, reimage, inspect, rma or none.")
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="software, hardware or workload.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="us, supplier or customer.")] = None,
    fatal: Annotated[bool | None, typer.Option("--fatal/--not-fatal", help="Counts toward the repeat rules.")] = None,
    drain: Annotated[str | None, typer.Option("--drain", help="graceful or immediate.")] = None,
    setting: Annotated[
        list[str] | None, typer.Option("--set", help="A setting, as NAME=VALUE (e.g. dry_run=true); repeatable.")
    ] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Override a code's rule or a setting for the fleet, a cluster, or a pool in it, with a reason."""
    changes: list[tuple[str, Any]] = []
    rule = {
        k: v
        for k, v in (("action", action), ("kind", kind), ("owner", owner), ("fatal", fatal), ("drain", drain))
        if v is not None
    }
    if code:
        if not rule:
            raise InvalidInput("name what to change about the code: --action, --kind, --owner, --fatal or --drain")
        changes.append((f"code:{code}", rule))
    elif rule:
        raise InvalidInput("--action, --kind, --owner, --fatal and --drain change a code: name it with --code")
    for item in setting or []:
        name, sep, raw = item.partition("=")
        if not sep:
            raise InvalidInput(f"expected NAME=VALUE, got '{item}'", field="--set")
        changes.append((f"setting:{name.strip()}", _value(raw.strip())))
    if not changes:
        raise InvalidInput("nothing to override: give --code with a change, or --set NAME=VALUE")
    db, who = database(ctx), actor(ctx)
    made = [set_override(db, who, key, value, reason, cluster, pool).as_dict() for key, value in changes]
    if output is Output.JSON:
        emit_json(made)
        return
    say(f"{len(made)} override(s) recorded", style="green")
    _overrides(made)


@app.command("overrides")
def overrides_command(
    ctx: typer.Context,
    cluster: ClusterOption = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked ones.")] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """Overrides in force (fleet-wide, and the cluster's when --cluster is given)."""
    items = [o.as_dict() for o in list_overrides(database(ctx), actor(ctx), cluster, revoked)]
    if output is Output.JSON:
        emit_json(items)
        return
    if not items:
        say("no overrides: the shipped policy is in force")
        return
    _overrides(items)


@app.command("revoke")
def revoke_command(
    ctx: typer.Context,
    override_id: Annotated[int, typer.Argument(help="The override's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why.", show_default=False)],
) -> None:
    """Take an override back (it stays on record); what it overrode is in force again."""
    view = revoke_override(database(ctx), actor(ctx), override_id, reason)
    say(f"override {view.id} ({view.key}) revoked", style="green")
