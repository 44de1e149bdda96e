"""Shared pieces of the orchestration layer: names, the sync client, times, small HTML.

Everything here is synchronous. A notebook kernel runs an asyncio event loop,
and Prefect's "dual" functions (``flow.deploy``, ``run_deployment``,
``state.result`` ...) return an un-awaited coroutine when they notice that
loop. We therefore talk to the server through ``get_client(sync_client=True)``
(plain HTTP, no event loop involved) or call Prefect with ``_sync=True``, and
never use ``asyncio.run``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pandas as pd

from energy_flows.errors import (
    DiskFullError,
    ServiceError,
    disk_full,
    disk_is_full,
    is_disk_full,
)
from energy_flows.markup import field_table
from energy_flows.settings import flow_run_command, home_dir

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

__all__ = [
    "BUSY_STATUSES",
    "api_url",
    "client",
    "flow_run_command",
    "html_table",
    "now_utc",
    "seconds",
    "timestamp",
    "ui_url",
]


def api_url() -> str | None:
    """The Prefect API this process talks to (None when none is configured)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def ui_url() -> str | None:
    """The Prefect UI address that belongs to :func:`api_url` (None when unknown)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().ui_url
    return str(url).rstrip("/") if url else None


_NO_SERVER = (
    "No Prefect server is configured for this process (PREFECT_API_URL is not set), "
    "so there is nothing to deploy to or read from. Start the classroom server first: "
    "`server = energy_flows.PrefectServer().start()`, then run this cell again."
)


#: What a server answers when it is too busy to do a request now (SQLite: "database is
#: locked"): it did nothing, so the request can be sent again.
BUSY_STATUSES = (429, 502, 503)


def _busy_retries(patience: float) -> Any:
    """An httpx transport that sends a request again soon while the server answers busy.

    Prefect's client waits 2, 4, 8 ... s between tries (with jitter); a busy SQLite
    is free again within moments, so a request it refused slept long after the database
    could take it. This transport asks again after 0.05 s, doubling to 0.5 s at most, for
    up to ``patience`` seconds, and only then hands the busy answer to Prefect's client.
    """
    import random
    import time

    import httpx

    class BusyRetries(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            deadline = time.monotonic() + patience
            wait = 0.05
            while True:
                response = super().handle_request(request)
                if response.status_code not in BUSY_STATUSES or time.monotonic() > deadline:
                    return response
                response.close()
                time.sleep(wait * random.uniform(0.5, 1.5))  # apart from other writers
                wait = min(2 * wait, 0.5)

    return BusyRetries(retries=3)  # and 3 tries to connect, as Prefect's own transport


@contextmanager
def client(*, busy_patience: float | None = None) -> Iterator[SyncPrefectClient]:
    """A synchronous Prefect client for the classroom server.

    Refuses to start Prefect's throw-away "ephemeral" server (what Prefect does
    when PREFECT_API_URL is unset), and turns "connection refused" into an
    error that says which server is missing and how to start it.

    ``busy_patience`` (seconds): a request the server refuses as busy (HTTP
    429/502/503) is sent again after moments, not after Prefect's growing
    waits, for that long (:func:`_busy_retries`).
    """
    import httpx
    from prefect.client.orchestration import get_client

    url = api_url()
    if not url:
        raise ServiceError(_NO_SERVER)
    if not url.startswith(("http://", "https://")):
        raise ServiceError(
            f"PREFECT_API_URL is {url!r}, which is not a web address: it must start with "
            "http:// or https://, e.g. http://127.0.0.1:4200/api. Unset it "
            "(`del os.environ['PREFECT_API_URL']` here, `unset PREFECT_API_URL` in a terminal) "
            "and run `server = energy_flows.PrefectServer().start()`, which sets it for you."
        )
    options = None if busy_patience is None else {"transport": _busy_retries(busy_patience)}
    try:
        with get_client(sync_client=True, httpx_settings=options) as c:
            yield c
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise ServiceError(
            f"The Prefect server at {url} does not answer ({exc.__class__.__name__}). "
            "It may have stopped: start it again with `energy_flows.PrefectServer().start()` "
            "(or `energy-flows up` in a terminal), then run this cell again."
        ) from exc


def timestamp(value: dt.datetime | None) -> pd.Timestamp:
    """The exact time as a UTC pandas Timestamp (NaT for None).

    Tables keep the fractions of a second (a lesson's runs last about one);
    how a time is shown is the display's business.
    """
    if value is None:
        return pd.NaT
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def seconds(value: dt.timedelta | None, ndigits: int = 1) -> float | None:
    if value is None:
        return None
    return round(value.total_seconds(), ndigits)


def html_table(title: str, rows: dict[str, Any], note: str | None = None) -> str:
    """The ``_repr_html_`` of the info objects: a title over one row per field."""
    return field_table(
        title,
        [(name, _fmt(value)) for name, value in rows.items()],
        note=note,
        title_tag="strong",
        name_style="text-align:left;padding-right:1em",
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value)) if value else "—"
    return str(value)


def disk_full_behind(status: int | None, detail: str, what: str) -> DiskFullError | None:
    """The full-disk error when that is why the server failed ``what``, else None.

    A server that cannot write its SQLite file answers HTTP 500 "Internal Server
    Error" (Prefect keeps SQLite's "database or disk is full" in its log, which the
    same full disk may have lost): the server's words, or the home's disk, say it.
    """
    said = is_disk_full(detail)
    if not said and not ((status or 0) >= 500 and disk_is_full(home_dir())):
        return None
    answer = f"HTTP {status}: {detail}" if status else detail
    return disk_full(
        home_dir() / "prefect" / "prefect.db", f"{what} (the server answered {answer})"
    )


def disk_full_note(what: str) -> str:
    """The full-disk message when the home's disk is full ("" otherwise): why ``what``
    cannot happen, said before anything else a wait suggests."""
    if not disk_is_full(home_dir()):
        return ""
    return str(disk_full(home_dir() / "prefect" / "prefect.db", what)) + " "


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the answer behind an error (its causes included), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        status = getattr(getattr(current, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
        current = current.__cause__ or current.__context__
    return None
