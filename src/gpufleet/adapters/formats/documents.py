"""YAML and JSON documents that remember where each value came from, so errors can name the line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


class DocumentError(ValueError):
    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(message)


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines)


def load_document(text: str, name: str = "<input>") -> tuple[Any, Callable[[Path_], int | None]]:
    """Parse YAML (a superset of JSON) and return the data with a function from a path to its line number."""
    try:
        if name.endswith(".json"):
            data = json.loads(text)
            return data, lambda _path: None
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"{name}: not valid JSON: {exc.msg}", exc.lineno) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise DocumentError(f"{name}: not valid YAML: {problem}", line) from None
    lines: dict[Path_, int] = {}
    if root is not None:
        _walk(root, (), lines)

    def line_of(path: Path_) -> int | None:
        probe = tuple(path)
        while probe:
            if probe in lines:
                return lines[probe]
            probe = probe[:-1]
        return lines.get(())

    return data, line_of


def read_document(path: Path) -> tuple[Any, Callable[[Path_], int | None]]:
    return load_document(path.read_text(encoding="utf-8"), str(path))
