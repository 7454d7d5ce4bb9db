"""What an inventory import did, or would do: counts, per-row errors and the planned changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpufleet.domain.inventory_rows import RowError


@dataclass
class Change:
    line: int
    node_id: str
    serial: str
    action: str  # created | updated | moved | unchanged
    changes: dict[str, list[Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "id": self.node_id,
            "serial": self.serial,
            "action": self.action,
            "changes": self.changes,
        }


@dataclass
class ImportReport:
    source: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    moved: int = 0
    unchanged: int = 0
    gpus_written: int = 0
    errors: list[RowError] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    applied: bool = False
    dry_run: bool = False
    partial: bool = False

    @property
    def ok(self) -> bool:
        """True only when everything the file asked for was applied (or would be, on a dry run)."""
        return not self.errors

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.moved

    def summary_line(self) -> str:
        if self.errors and not self.applied and not self.dry_run:
            return f"nothing applied: {len(self.errors)} row error(s) in {self.source}; fix them or use --partial"
        verb = "would change" if self.dry_run else "applied"
        if not self.changed and not self.errors:
            return f"no changes: all {self.unchanged} node(s) in {self.source} already match"
        text = f"{verb}: {self.created} created, {self.updated} updated, {self.moved} moved, {self.unchanged} unchanged"
        if self.errors:
            text += f"; {len(self.errors)} row error(s) skipped"
        return text

    def as_dict(self, max_changes: int = 1000) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "moved": self.moved,
            "unchanged": self.unchanged,
            "gpus_written": self.gpus_written,
            "applied": self.applied,
            "dry_run": self.dry_run,
            "partial": self.partial,
            "ok": self.ok,
            "summary": self.summary_line(),
            "errors": [e.as_dict() for e in self.errors],
            "changes": [c.as_dict() for c in self.changes if c.action != "unchanged"][:max_changes],
        }
