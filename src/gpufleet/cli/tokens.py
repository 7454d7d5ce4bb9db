"""`gpufleet tokens`: API tokens for people and automation; the secret is shown once, at creation."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from gpufleet.cli.output import Output, OutputOption, emit_json, say, show, table, when
from gpufleet.cli.state import actor, database
from gpufleet.fleet.tokens import create_token, list_tokens, revoke_token

app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)


class RoleName(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Who or what uses the token.", show_default=False)],
    role: Annotated[RoleName, typer.Option("--role", case_sensitive=False, help="What the token may do.")],
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Limit the token to this tenant's nodes.", show_default=False)
    ] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Create a token and print its secret, which is stored only as a hash and cannot be shown again."""
    issued = create_token(database(ctx), name, role.value, actor(ctx), tenant=tenant)
    if output is Output.JSON:
        emit_json(
            {
                "id": issued.id,
                "name": issued.name,
                "role": issued.role,
                "tenant": issued.tenant,
                "secret": issued.secret,
            }
        )
        return
    scope = f", tenant {issued.tenant}" if issued.tenant else ""
    say(f"created token #{issued.id} '{issued.name}' ({issued.role}{scope})", style="green")
    say("secret (shown only now; store it safely):")
    typer.echo(issued.secret)


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = Output.TABLE) -> None:
    """List tokens (never their secrets)."""
    tokens = list_tokens(database(ctx), actor(ctx))
    if output is Output.JSON:
        emit_json(tokens)
        return
    if not tokens:
        say("no tokens; create one with `gpufleet tokens create --name NAME --role ROLE`", style="yellow")
        return
    rows = [
        (
            t["id"],
            t["name"],
            t["role"],
            t["tenant"],
            t["prefix"] + "...",
            when(t["created_at"]),
            t["created_by"],
            f"revoked {when(t['revoked_at'])}" if t["revoked_at"] else "active",
        )
        for t in tokens
    ]
    show(table(None, ("id", "name", "role", "tenant", "prefix", "created", "by", "status"), rows))


@app.command()
def revoke(
    ctx: typer.Context,
    token_id: Annotated[
        int, typer.Argument(metavar="ID", help="The token's id (see `tokens list`).", show_default=False)
    ],
    output: OutputOption = Output.TABLE,
) -> None:
    """Revoke a token at once. Revoking a revoked token changes nothing."""
    revoked_at = revoke_token(database(ctx), token_id, actor(ctx))
    if output is Output.JSON:
        emit_json({"id": token_id, "revoked_at": revoked_at})
        return
    say(f"token #{token_id} is revoked (since {when(revoked_at)})", style="green")
