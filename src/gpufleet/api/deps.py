"""Per-request access to the application's database handle and HTTP preconditions."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Request

from gpufleet.api.problems import Problem
from gpufleet.platform.database import Database

_ETAG = re.compile(r'^(?:W/)?"(\d{1,18})"$|^(\d{1,18})$')


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


Db = Annotated[Database, Depends(get_db)]


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='The node version you read, as its ETag (`"3"`); the change is refused with 412 if it moved.',
        ),
    ] = None,
) -> int | None:
    """The version named by ``If-Match``, ``None`` when absent or ``*`` (any version)."""
    if if_match is None or if_match.strip() == "*":
        return None
    match = _ETAG.match(if_match.strip())
    if not match:
        raise Problem(
            400,
            f'If-Match must be one ETag as the API returned it, such as "3"; got {if_match!r}',
            "bad-precondition",
            field="If-Match",
        )
    return int(match.group(1) or match.group(2))


IfMatch = Annotated[int | None, Depends(expected_version)]
