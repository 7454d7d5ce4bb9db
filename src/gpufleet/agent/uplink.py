"""Talking to the gpufleet server: post a buffered entry, take the work asked of this node.

Every answer is sorted into what the agent should do next: ``sent``; ``retry`` later (the server is unreachable,
overloaded or failing: 5xx, 408, 429); ``refused`` for good (another 4xx: the entry is set aside); ``unauthorized``
(401/403: nothing will get through until the token is fixed, so the buffer is kept). The token goes only into the
Authorization header; messages name the server and the failure, never the request headers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import httpx

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    REFUSED = "refused"
    UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    detail: str = ""
    body: Any = None


class Uplink:
    def __init__(self, server: str, token: str, timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.server = server.rstrip("/")
        self._client = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "gpufleet-agent"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Answer:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            return Answer(Outcome.RETRY, f"{self.server} unreachable: {type(exc).__name__}")
        if response.status_code < 300:
            try:
                return Answer(Outcome.SENT, body=response.json())
            except ValueError:
                return Answer(Outcome.SENT)
        detail = _problem_detail(response)
        if response.status_code in (401, 403):
            return Answer(Outcome.UNAUTHORIZED, f"{response.status_code}: {detail}")
        if response.status_code in RETRY_STATUSES:
            return Answer(Outcome.RETRY, f"{response.status_code}: {detail}")
        return Answer(Outcome.REFUSED, f"{response.status_code}: {detail}")

    def post_entry(self, entry: dict[str, Any]) -> Answer:
        params: dict[str, Any] = {
            "node": entry["node"],
            "delivery": entry["delivery"],
            "source": f"agent:{entry['node']}",
        }
        if entry.get("request") is not None:
            params["request"] = entry["request"]
        content_type = (
            "application/xml"
            if entry["format"] == "nvidia-smi"
            else ("text/plain" if entry["format"] == "xid" else "application/json")
        )
        return self._call(
            "POST",
            f"/api/v1/events/{entry['format']}",
            params=params,
            content=entry["body"].encode("utf-8"),
            headers={"Content-Type": content_type},
        )

    def claim(self, node: str) -> Answer:
        return self._call("POST", "/api/v1/agent/requests/claim", json={"node": node})


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or "")[:300]
    return ""
