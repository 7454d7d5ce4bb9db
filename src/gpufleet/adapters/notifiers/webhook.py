"""The generic webhook notifier: one JSON POST per message, with the message's idempotency key in a header.

Receivers see the same ``Idempotency-Key`` on every retry of one message, so a retry after a timeout whose request
did arrive is recognisable. Any 2xx is delivery; 408, 425, 429 and 5xx (and network errors) are worth retrying;
other 4xx mean the receiver will never take this message.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

RETRYABLE_STATUS = frozenset({408, 425, 429})
USER_AGENT = "gpufleet-notifier/1"


class DeliveryError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        self.retryable = retryable
        super().__init__(message)


class WebhookNotifier:
    def __init__(self, timeout_seconds: float = 10.0, client: httpx.Client | None = None) -> None:
        self._client = client or httpx.Client(timeout=timeout_seconds, follow_redirects=False)

    def send(self, url: str, payload: dict[str, Any], key: str, topic: str) -> None:
        body = json.dumps(payload, default=str).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "X-Gpufleet-Topic": topic,
            "User-Agent": USER_AGENT,
        }
        try:
            response = self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if 200 <= response.status_code < 300:
            return
        retryable = response.status_code >= 500 or response.status_code in RETRYABLE_STATUS
        raise DeliveryError(f"HTTP {response.status_code} from {url}: {response.text[:200]}", retryable)

    def close(self) -> None:
        self._client.close()
