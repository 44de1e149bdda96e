"""A few Prefect REST calls over plain HTTP (urllib).

Checking that a server is healthy, or that a worker is online, must not
cost ``import prefect`` (2-3 s): ``energy-flows up`` answers "already
running" in a fraction of a second thanks to these.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ApiError(Exception):
    """An HTTP error from the Prefect API (status and body in the message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def call(method: str, url: str, body: Any = None, timeout: float = 5.0) -> Any:
    """Send one JSON request and return the decoded JSON answer (or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise ApiError(exc.code, exc.read().decode(errors="replace")[:500]) from exc
    return json.loads(raw) if raw else None


def healthy(api_url: str, timeout: float = 1.0) -> bool:
    """True when ``GET {api_url}/health`` answers 200 (no database access)."""
    try:
        req = urllib.request.Request(f"{api_url}/health", method="GET")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, ValueError):
        return False
