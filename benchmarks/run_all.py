"""Run every benchmark on each database, even after one misses, and end with one table of the figures.

Each ``bench_*.py`` prints its figures as JSON on stdout (the last JSON document it prints is read). The table shows
each figure's own numbers and whether it met its target; the same rows are written as JSON (``--json``) so a run can
be compared with another commit's. The exit code is 0 only when every script ran and every figure was met.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 1800


def last_json(text: str) -> dict[str, Any] | None:
    """The last JSON object in a script's output: scripts print one, compact or indented, after their progress."""
    decoder = json.JSONDecoder()
    found = None
    i = text.find("{")
    while i != -1:
        try:
            value, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        if isinstance(value, dict):
            found = value
        i = text.find("{", end)
    return found


def run(script: Path, db: str) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, str(script), "--db", db],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=HERE.parent,
        )
        out, code = done.stdout, done.returncode
        err = done.stderr.strip().splitlines()[-1:] if done.returncode else []
    except subprocess.TimeoutExpired:
        out, code, err = "", 124, [f"no answer within {TIMEOUT_S} s"]
    figure = last_json(out) or {}
    met = figure.get("met")
    return {
        "script": script.name,
        "db": db,
        "exit": code,
        "seconds": round(time.perf_counter() - start, 1),
        "met": bool(met) and code == 0,
        "figure": figure,
        "error": err[0] if err else None,
    }


def _numbers(figure: dict[str, Any]) -> str:
    keep = [
        f"{k}={v}"
        for k, v in figure.items()
        if k not in {"figure", "db", "met"} and isinstance(v, int | float) and not isinstance(v, bool)
    ]
    return ", ".join(keep[:8])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"], help="default: both")
    parser.add_argument("--only", action="append", help="run only scripts whose name contains this (repeatable)")
    parser.add_argument("--json", type=Path, default=HERE / "results.json", help="where the rows are written")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if any(o in s.name for o in args.only)]
    console = Console(stderr=True)
    rows = []
    for script in scripts:
        for db in args.db or ["sqlite", "postgresql"]:
            console.print(f"[dim]running {script.name} --db {db}[/dim]")
            rows.append(run(script, db))
    table = Table(title="gpufleet benchmarks")
    for column in ("script", "db", "figure", "numbers", "seconds", "result"):
        table.add_column(column)
    for r in rows:
        fig = r["figure"]
        result = "[green]met[/green]" if r["met"] else f"[red]{'missed' if r['exit'] == 0 else 'failed'}[/red]"
        numbers = _numbers(fig) if fig else (r["error"] or f"exit {r['exit']}")
        table.add_row(r["script"], r["db"], str(fig.get("figure", "-")), numbers, f"{r['seconds']:g}", result)
    Console().print(table)
    args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    missed = [f"{r['script']} ({r['db']})" for r in rows if not r["met"]]
    if missed:
        console.print(f"[red]not met: {', '.join(missed)}[/red]")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
