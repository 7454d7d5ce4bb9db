"""Who is acting and under which correlation id, carried into every event a service writes."""

from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass, field
from enum import IntEnum


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role '{value}'; expected viewer, operator or admin") from None

    @property
    def label(self) -> str:
        return self.name.lower()


def new_correlation_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Actor:
    """A caller. ``tenant_id`` set means the caller sees only that tenant's nodes."""

    name: str
    role: Role
    tenant_id: int | None = None
    correlation_id: str = field(default_factory=new_correlation_id)

    @property
    def tenant_scoped(self) -> bool:
        return self.tenant_id is not None


def cli_actor() -> Actor:
    """The local operator: the CLI works on the database directly, so it acts as an admin under the OS user."""
    try:
        user = getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry in some containers
        user = "unknown"
    return Actor(name=f"cli:{user}", role=Role.ADMIN)


SYSTEM = Actor(name="system", role=Role.ADMIN)
