"""Supplier inventory files (CSV, JSON array or JSONL), read into raw rows that remember their line."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

FORMATS = ("csv", "json", "jsonl")


@dataclass(frozen=True)
class RawRow:
    line: int
    values: dict[str, Any]


@dataclass(frozen=True)
class ParseProblem:
    line: int
    message: str


def detect_format(filename: str) -> str:
    lowered = filename.lower()
    for fmt in ("jsonl", "ndjson", "json", "csv"):
        if lowered.endswith("." + fmt):
            return "jsonl" if fmt == "ndjson" else fmt
    raise ValueError(f"cannot tell the format of '{filename}' from its extension; use .csv, .json or .jsonl")


def parse_inventory(text: str, fmt: str) -> tuple[list[RawRow], list[ParseProblem], list[str]]:
    """Rows, the lines that could not be read at all, and the columns the file declares (CSV only)."""
    if fmt == "csv":
        return _parse_csv(text)
    if fmt == "jsonl":
        return _parse_jsonl(text)
    if fmt == "json":
        return _parse_json(text)
    raise ValueError(f"unknown inventory format '{fmt}'; expected one of {', '.join(FORMATS)}")


def _parse_csv(text: str) -> tuple[list[RawRow], list[ParseProblem], list[str]]:
    reader = csv.reader(io.StringIO(text))
    rows: list[RawRow] = []
    problems: list[ParseProblem] = []
    header: list[str] | None = None
    try:
        for record in reader:
            line = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue
            if header is None:
                header = [h.strip().lower() for h in record]
                continue
            if len(record) != len(header):
                problems.append(
                    ParseProblem(line, f"expected {len(header)} columns as in the header, found {len(record)}")
                )
                continue
            rows.append(RawRow(line, {h: cell for h, cell in zip(header, record, strict=True) if h}))
    except csv.Error as exc:
        problems.append(ParseProblem(reader.line_num, f"malformed CSV: {exc}"))
    return rows, problems, header or []


def read_jsonl_objects(text: str) -> tuple[list[RawRow], list[ParseProblem]]:
    """One JSON object a line; a line that is not one is a problem at that line, never fatal to the rest."""
    rows: list[RawRow] = []
    problems: list[ParseProblem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(ParseProblem(number, f"not valid JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(value, dict):
            problems.append(ParseProblem(number, "each line must be a JSON object"))
            continue
        rows.append(RawRow(number, value))
    return rows, problems


def _parse_jsonl(text: str) -> tuple[list[RawRow], list[ParseProblem], list[str]]:
    rows, problems = read_jsonl_objects(text)
    return rows, problems, []


def array_item_lines(text: str) -> list[int]:
    """The line on which each element of a top-level JSON array starts, so errors can point into the file."""
    decoder = json.JSONDecoder()
    pos = text.find("[") + 1
    lines: list[int] = []
    line = text.count("\n", 0, pos) + 1
    last = pos
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return lines
        line += text.count("\n", last, pos)
        lines.append(line)
        _, end = decoder.raw_decode(text, pos)
        line += text.count("\n", pos, end)
        last = pos = end


def _parse_json(text: str) -> tuple[list[RawRow], list[ParseProblem], list[str]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [ParseProblem(exc.lineno, f"not valid JSON: {exc.msg} at column {exc.colno}")], []
    if isinstance(value, dict) and isinstance(value.get("nodes"), list):
        value = value["nodes"]
        cut = text.find("[", text.find('"nodes"'))
        offset = text.count("\n", 0, cut)
        text = text[cut:]
    else:
        offset = 0
    if not isinstance(value, list):
        return [], [ParseProblem(1, 'a JSON inventory must be an array of node objects (or {"nodes": [...]})')], []
    lines = array_item_lines(text) if text.lstrip().startswith("[") else []
    rows: list[RawRow] = []
    problems: list[ParseProblem] = []
    for number, item in enumerate(value, start=1):
        line = (lines[number - 1] + offset) if len(lines) == len(value) else number
        if not isinstance(item, dict):
            problems.append(ParseProblem(line, f"item {number} is not an object"))
            continue
        rows.append(RawRow(line, item))
    return rows, problems, []
