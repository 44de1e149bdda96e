"""The one place where energy-flows reaches past Prefect's public API, each use guarded.

Everything else in the package uses Prefect's public API only. What is here
has no public equivalent in Prefect 3; each use is guarded, so a Prefect
release that moves or renames it costs a feature its speed or tidiness, never
a lesson. ``docs/prefect-versions.md`` lists these uses; ``make compat``
checks them on another Prefect.

* :func:`flush_to_server`: send the run logs and events this process has
  queued (``APILogWorker`` and ``EventsWorker``, Prefect's background
  senders, have ``drain_all`` but no public wrapper).
* :func:`restart_senders`: the same ``drain_all`` stops those senders, so
  the next log or event starts new ones that read the current settings (the
  event sender keeps the server address it started with: a kernel re-pointed
  at another server would send its task runs' events to the old one).
* :func:`dashboard_api_url`: the API address a server's dashboard calls,
  read from ``GET /ui-settings``, the route the dashboard itself reads at
  start (lesson 08 checks that a server started with ``--port`` calls its
  own port, not 4200).
* ``energy_flows.services.launch`` preloads the private server helpers of
  ``prefect.cli`` with the server's modules (an import that may fail: it is
  only a preload; ``tests/test_layout.py`` lists it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import urllib.error
import urllib.request

__all__ = ["dashboard_api_url", "flush_to_server", "restart_senders"]


def flush_to_server(timeout: float = 10.0) -> bool:
    """Send the run logs and events this process still has queued; True if it could.

    Prefect ships a flow run's logs and events from background threads, in
    batches. Left queued when the server stops, they are retried against a
    stopped server when the process exits, which adds up to a minute to its
    exit and loses them anyway. Call this while the server still runs: before
    stopping it, or at the end of a test. Does nothing when Prefect was never
    imported here; waits at most ``timeout`` seconds for each sender.
    """
    if "prefect" not in sys.modules:
        return True
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker
    except ImportError:  # moved in a later Prefect: nothing is flushed early
        return False
    drains = [getattr(sender, "drain_all", None) for sender in (APILogWorker, EventsWorker)]
    available = [drain for drain in drains if drain is not None]

    def drain() -> None:
        for drain_all in available:
            drain_all(timeout=timeout)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        drain()
    else:
        # In a notebook kernel an event loop runs in this thread, and there
        # drain_all() only returns a coroutine. In a thread of its own, without
        # a loop, it waits for the senders as it should.
        helper = threading.Thread(target=drain, name="flush-to-server", daemon=True)
        helper.start()
        helper.join(len(available) * timeout + 1)
    return len(available) == len(drains)


def restart_senders(timeout: float = 2.0) -> bool:
    """Make Prefect's log and event senders of this process follow its current settings.

    ``EventsWorker`` (task runs are recorded on the server from their events)
    and ``APILogWorker`` are started once and kept: the event sender keeps the
    API address and password it started with, whatever the settings say later.
    ``drain_all`` stops every sender after sending what it has queued (waiting
    at most ``timeout`` seconds: to a stopped server nothing can be sent); the
    next event or log line starts a new sender with the settings of that
    moment. Call it after re-pointing the process at another server (see
    ``settings.apply_to_current_process``). True if both could be stopped.
    """
    return flush_to_server(timeout=timeout)


def dashboard_api_url(ui_url: str, timeout: float = 3.0) -> str | None:
    """The API address the dashboard served at ``ui_url`` calls; None when it cannot be read.

    Prefect's server serves its dashboard's settings at ``/ui-settings``
    (``api_url``: ``PREFECT_UI_API_URL`` if set, else ``PREFECT_API_URL``,
    else the server's host and ``PREFECT_SERVER_API_PORT``). The route is the
    dashboard's, not part of the REST API: a release that changes it makes
    this answer None, and the check that uses it says nothing.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{ui_url.rstrip('/')}/ui-settings", timeout=timeout) as response:
            value = json.loads(response.read()).get("api_url")
    except (OSError, ValueError, AttributeError, urllib.error.URLError):
        return None
    return str(value) if isinstance(value, str) and value else None
