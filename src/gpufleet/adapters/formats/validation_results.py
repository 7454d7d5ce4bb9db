"""Validation result files: JSONL (one record a line) or a JSON array, read into records that remember their line."""

from __future__ import annotations

import json

from gpufleet.adapters.formats.inventory import ParseProblem, RawRow, array_item_lines, read_jsonl_objects

FORMATS = ("jsonl", "json")


def detect_format(text: str) -> str:
    """A body that starts with '[' is a JSON array; anything else is read as JSONL."""
    return "json" if text.lstrip().startswith("[") else "jsonl"


def parse_results(text: str, fmt: str | None = None) -> tuple[list[RawRow], list[ParseProblem]]:
    """Records and the lines that could not be read at all. Blank lines are skipped; line numbers are the file's."""
    fmt = fmt or detect_format(text)
    if fmt == "jsonl":
        return read_jsonl_objects(text)
    if fmt == "json":
        return _array(text)
    raise ValueError(f"unknown result format '{fmt}'; expected one of {', '.join(FORMATS)}")


def _array(text: str) -> tuple[list[RawRow], list[ParseProblem]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [ParseProblem(exc.lineno, f"not valid JSON: {exc.msg} at column {exc.colno}")]
    if not isinstance(value, list):
        return [], [ParseProblem(1, "a JSON body must be an array of result objects")]
    lines = array_item_lines(text)
    rows: list[RawRow] = []
    problems: list[ParseProblem] = []
    for number, item in enumerate(value, start=1):
        line = lines[number - 1] if len(lines) == len(value) else number
        if not isinstance(item, dict):
            problems.append(ParseProblem(line, f"item {number} is not an object"))
            continue
        rows.append(RawRow(line, item))
    return rows, problems
