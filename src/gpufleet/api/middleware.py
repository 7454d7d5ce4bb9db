"""Request plumbing that every route relies on: a correlation id, and a cap on what a client may upload.

Both are plain ASGI middleware (no per-request task or body buffering), so they cost next to nothing on the hot
list endpoint.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpufleet.api.problems import PROBLEM_JSON, TYPE_PREFIX
from gpufleet.platform.context import new_correlation_id

CORRELATION_HEADER = "x-correlation-id"
CORRELATION_KEY = "gpufleet.correlation_id"
_CORRELATION = re.compile(r"^[A-Za-z0-9._:@/-]{1,64}$")

MIB = 1024 * 1024
JSON_BODY_LIMIT = 1 * MIB
UPLOAD_BODY_LIMIT = 64 * MIB


class CorrelationIdMiddleware:
    """Take the caller's ``X-Correlation-ID`` (or make one), expose it to routes and echo it on the response.

    A malformed id is replaced rather than refused: tracing must never be the reason a request fails.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == b"x-correlation-id":
                given = value.decode("latin-1").strip()
                break
        correlation_id = given if given and _CORRELATION.match(given) else new_correlation_id()
        scope[CORRELATION_KEY] = correlation_id
        header = (b"x-correlation-id", correlation_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the {limit // MIB} MiB this endpoint accepts")


class BodyLimitMiddleware:
    """Refuse bodies over the endpoint's limit: at once by ``Content-Length``, or as soon as the stream passes it.

    A client can lie about (or omit) ``Content-Length`` with chunked uploads, so the bytes are counted as they
    arrive too; the overflow raises an HTTP 413 that the problem handlers render like any other error.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await _refuse(scope, send, BodyTooLarge(limit).detail)
                    return
                break
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


async def _refuse(scope: Scope, send: Send, detail: str) -> None:
    body: dict[str, object] = {
        "type": TYPE_PREFIX + "content-too-large",
        "title": "Content Too Large",
        "status": 413,
        "detail": detail,
        "instance": scope["path"],
    }
    if CORRELATION_KEY in scope:
        body["correlation_id"] = scope[CORRELATION_KEY]
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
