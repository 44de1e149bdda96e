"""A few Prefect REST calls over plain HTTP (urllib), without ``import prefect`` (2-3 s).

So ``energy-flows up`` answers "already running" in a fraction of a second,
and a worker's runs are finished seconds after it ended.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

from energy_flows import settings


class ApiError(Exception):
    """An HTTP error from the Prefect API (status and body in the message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


#: HTTP statuses that mean "busy, ask again" (SQLite's "database is locked" is a 503),
#: as Prefect's own client retries them.
RETRY_STATUSES = (429, 502, 503)
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)


def auth_header(secret: str | None = None) -> str | None:
    """``Basic ...`` from ``PREFECT_API_AUTH_STRING`` ("user:password"), as Prefect's client sends."""
    # A terminal (`energy-flows down`) has not adopted the home's settings: read its file.
    secret = secret or os.environ.get("PREFECT_API_AUTH_STRING") or settings.auth_string()
    if not secret:
        return None
    return "Basic " + base64.b64encode(secret.encode()).decode()


def call(
    method: str, url: str, body: Any = None, timeout: float = 5.0, auth: str | None = None
) -> Any:
    """Send one JSON request and return the decoded JSON answer (or None); a busy server
    (HTTP 429/502/503) is asked again for about 4 s before :class:`ApiError` is raised.
    ``auth`` ("user:password") replaces the password this process would send."""
    data = None if body is None else json.dumps(body).encode()
    for delay in (*RETRY_DELAYS, None):
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        header = auth_header(auth)
        if header:
            req.add_header("Authorization", header)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code in RETRY_STATUSES and delay is not None:
                time.sleep(delay)
                continue
            raise ApiError(exc.code, exc.read().decode(errors="replace")[:500]) from exc
        return json.loads(raw) if raw else None
    raise AssertionError("unreachable")


def healthy(api_url: str, timeout: float = 1.0) -> bool:
    """True when ``GET {api_url}/health`` answers 200 (no database access)."""
    try:
        req = urllib.request.Request(f"{api_url}/health", method="GET")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, ValueError):
        return False


def quote(name: str) -> str:
    """A name as one segment of an API path (``/work_pools/<name>/...``)."""
    return urllib.parse.quote(name, safe="")


def timestamp(value: str | None) -> float | None:
    """Seconds since the epoch of a time the API gives (ISO 8601), or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
