"""The agent's disk buffer: what was collected waits here, in order, until the server has taken it.

Each entry is one JSON file written atomically (temporary file, then rename), so a crash leaves either the whole
entry or none. Its delivery id is fixed when it is written: a retry after a lost response is a duplicate on the
server, never a second event. The buffer is capped: past ``max_entries`` the oldest are dropped, with a warning, so
a host cut off for days cannot fill its disk.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger("gpufleet.agent")
MAX_ENTRIES = 5000
KEEP_REJECTED = 100


class Spool:
    def __init__(self, root: Path, max_entries: int = MAX_ENTRIES) -> None:
        self.root = root
        self.outbox = root / "outbox"
        self.rejected = root / "rejected"
        self.max_entries = max_entries
        self._seq = 0
        for folder in (self.root, self.outbox, self.rejected):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def put(self, fmt: str, body: str, node: str, request: int | None = None) -> Path:
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.json"
        entry = {"format": fmt, "node": node, "delivery": uuid.uuid4().hex, "request": request, "body": body}
        path = self.outbox / name
        _write_atomic(path, json.dumps(entry))
        self._trim()
        return path

    def pending(self) -> list[Path]:
        return sorted(self.outbox.glob("*.json"))

    def load(self, path: Path) -> dict[str, Any] | None:
        try:
            entry = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return entry if isinstance(entry, dict) and {"format", "node", "delivery", "body"} <= set(entry) else None

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def reject(self, path: Path, why: str) -> None:
        """Keep what the server refused for a person to look at, and stop retrying it."""
        log.warning("the server refused %s: %s; kept in %s", path.name, why, self.rejected)
        path.replace(self.rejected / path.name)
        kept = sorted(self.rejected.glob("*.json"))
        for old in kept[: max(0, len(kept) - KEEP_REJECTED)]:
            old.unlink(missing_ok=True)

    def _trim(self) -> None:
        entries = self.pending()
        excess = len(entries) - self.max_entries
        if excess > 0:
            log.warning("buffer full (%d entries): dropping the %d oldest", len(entries), excess)
            for old in entries[:excess]:
                old.unlink(missing_ok=True)

    def read_state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.root / "state.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return state if isinstance(state, dict) else {}

    def write_state(self, state: dict[str, Any]) -> None:
        _write_atomic(self.root / "state.json", json.dumps(state))


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    with temporary.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
