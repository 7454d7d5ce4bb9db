"""Errors that services raise; the API maps them to problem+json statuses and the CLI to one-line messages."""

from __future__ import annotations

from gpufleet.domain.lifecycle import InvalidTransition

__all__ = [
    "Busy",
    "Forbidden",
    "InvalidInput",
    "InvalidTransition",
    "NotFound",
    "ServiceError",
    "VersionConflict",
]


class ServiceError(Exception):
    status = 400
    title = "Bad request"


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"


class Busy(ServiceError):
    """The server has more of this work in hand than it takes at once; the same request may be sent again."""

    status = 503
    title = "Service busy"


class VersionConflict(ServiceError):
    """The caller's copy is stale: someone else changed the node since it was read."""

    status = 412
    title = "Precondition failed"

    def __init__(self, node_id: str, expected: int, actual: int) -> None:
        self.node_id = node_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"node {node_id} is at version {actual}, not {expected}: it changed since you read it; re-read and retry"
        )


class InvalidInput(ServiceError):
    """Bad input, naming where it was wrong: a field, and a line when it came from a file."""

    status = 422
    title = "Invalid input"

    def __init__(self, message: str, field: str | None = None, line: int | None = None) -> None:
        self.field = field
        self.line = line
        where = []
        if line is not None:
            where.append(f"line {line}")
        if field:
            where.append(f"field '{field}'")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
