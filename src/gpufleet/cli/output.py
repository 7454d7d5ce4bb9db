"""How every command speaks: Rich tables for people, JSON for scripts, and one-line errors with a meaningful exit code.

Errors are caught once, at the root command group, so no command can leak a traceback to an operator's terminal.
Exit codes: 0 done, 1 refused or failed (not found, invalid transition, conflict, import with row errors),
2 bad input (a malformed file or value, as for a usage error).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from gpufleet.platform.errors import InvalidInput, InvalidTransition, ServiceError

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
DEBUG_ENV = "GPUFLEET_DEBUG"


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[
    Output,
    typer.Option("--output", case_sensitive=False, help="table for people, json (on stdout) for scripts."),
]


class CliError(Exception):
    """A failure the CLI itself detects (e.g. an unmigrated database), reported like a service error."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        self.code = code
        super().__init__(message)


def one_line(message: str) -> str:
    return " ".join(message.split())


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def exit_code(exc: Exception) -> int:
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, InvalidInput):
        return EXIT_BAD_INPUT
    return EXIT_FAILED


class GuardedGroup(TyperGroup):
    """The root group: turns every error from below into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise  # usage errors, --help and deliberate exits keep their own handling
        except (CliError, ServiceError, InvalidTransition) as exc:
            fail(str(exc), exit_code(exc))
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            fail(f"{type(exc).__name__}: {first} (set {DEBUG_ENV}=1 for the traceback)")


def console(stderr: bool = False) -> Console:
    """A console bound to the current stdout/stderr; wide when piped so tables are not cut to 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(file=stream, highlight=False, width=width, soft_wrap=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def say(message: str, style: str | None = None) -> None:
    console().print(Text(message, style=style or ""))


def cell(value: Any) -> Text:
    """Table cells as plain text: node names and reasons come from users and must never be read as markup."""
    if value is None or value == "" or value == {} or value == []:
        return Text("-", style="dim")
    if isinstance(value, datetime):
        return Text(when(value))
    if isinstance(value, dict):
        return Text(", ".join(f"{k}={v}" for k, v in value.items()))
    if isinstance(value, list | tuple):
        return Text(", ".join(str(v) for v in value))
    return Text(str(value))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], show_header: bool = True) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold", show_header=show_header)
    for name in columns:
        out.add_column(name, overflow="fold")
    for row in rows:
        out.add_row(*(cell(v) for v in row))
    return out


def show(*renderables: Any) -> None:
    out = console()
    for renderable in renderables:
        out.print(renderable)


def when(value: datetime | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def duration(delta: timedelta | float | None) -> str:
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds() if isinstance(delta, timedelta) else delta)
    days, rest = divmod(abs(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        text = f"{days}d {hours}h"
    elif hours:
        text = f"{hours}h {minutes}m"
    else:
        text = f"{minutes}m"
    return ("-" if seconds < 0 else "") + text


def capped_note(shown: int, total: int | None, hint: str) -> Text | None:
    if total is not None and shown >= total:
        return None
    more = f"{total - shown} more" if total is not None else "more"
    return Text(f"showing {shown}, {more} not shown; {hint}", style="yellow")
