"""Live views in the notebook: what a learner looks at instead of switching to the UI.

* :class:`DeploymentBuilder`: a form that deploys the energy flow (name,
  parameters typed from the flow's signature, schedule, pool, queue, paused),
  checking every field as you type.
* :class:`QueueMonitor`: a live view of work queues: status, runs per state
  (Late highlighted), workers and their heartbeats, the next runs.
* :class:`LogTail`: the last lines of a server's or worker's log file, or of a
  flow run's Prefect logs.

Each widget works from code as well as with the mouse (set fields, call
``.deploy()``, ``.refresh()``, ``.start()``, ``.stop()``; buttons are
``.click()``-able), and each carries a static snapshot of what it shows: where
widgets cannot run (a notebook rendered on a website, nbval comparing stored
outputs) the ``text/plain`` and ``text/html`` parts of its display show the
same information, as it was when the widget was drawn.

Live widgets refresh in a daemon thread with its own synchronous Prefect
client: the kernel stays free to run cells while they update. ``stop()`` ends
the thread, and every thread is stopped when the kernel exits.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import html
import inspect
import json
import os
import threading
import types
import typing
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from energy_flows.errors import EnergyFlowsError, OrchestrationError, ServiceError

DEFAULT_POOL = "energy-pool"
DEFAULT_QUEUE = "energy_usage"

#: Count columns of ``orchestration.queue_status`` in the order a run goes through them.
STATE_COUNTS = (
    ("Scheduled", "scheduled"),
    ("Late", "late"),
    ("Pending", "pending"),
    ("Running", "running"),
    ("Completed", "completed"),
    ("Failed", "failed"),
    ("Crashed", "crashed"),
    ("Cancelled", "cancelled"),
)

_RESTART_HINT = (
    "start it again with `server = energy_flows.PrefectServer().start()`, "
    "then call `.start()` on this view"
)

_OK_STYLE = "color:#1b5e20"
_BAD_STYLE = "color:#b71c1c"
_LATE_CELL = "background:#fde0c5;color:#8a3b00;font-weight:bold"


# --------------------------------------------------------------------------- shared machinery

_LIVE: weakref.WeakSet[_LiveView] = weakref.WeakSet()


def stop_all_views() -> int:
    """Stop the refresh thread of every live view of this process; return how many ran.

    Registered with :mod:`atexit`, so a kernel that exits never leaves one behind.
    """
    count = 0
    for view in list(_LIVE):
        if view.running:
            count += 1
        with contextlib.suppress(Exception):
            view.stop()
    return count


atexit.register(stop_all_views)


def _esc(value: Any) -> str:
    return html.escape("—" if value is None or value is pd.NaT else str(value))


def _clock(value: Any) -> str:
    """``HH:MM:SS UTC`` of a timestamp ("—" when missing)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%H:%M:%S UTC")


@contextlib.contextmanager
def _api(api_url: str | None) -> Iterator[None]:
    """Point Prefect at ``api_url`` for this thread only (no change when None)."""
    if not api_url:
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        yield


def _current_api_url() -> str | None:
    try:
        from prefect.settings import get_current_settings

        url = get_current_settings().api.url
    except Exception:
        return os.environ.get("PREFECT_API_URL") or None
    return str(url) if url else None


def _server_answers(api_url: str | None) -> bool:
    if not api_url:
        return False
    from energy_flows.services.api import healthy

    return healthy(api_url, timeout=1.5)


class _SnapshotDisplay(w.VBox):
    """A widget box that also shows as its static snapshot.

    Jupyter gets the live widget plus ``snapshot_text()`` and
    ``snapshot_html()`` (what nbval compares, what a static page renders);
    ``repr()`` is the text snapshot. Subclasses define both snapshots.
    """

    def snapshot_text(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def snapshot_html(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = super()._repr_mimebundle_(**kwargs) if self.comm is not None else None
        data = dict(data or {})
        data["text/plain"] = self.snapshot_text()
        data["text/html"] = self.snapshot_html()
        return data

    def __repr__(self) -> str:
        return self.snapshot_text()


class _LiveView(_SnapshotDisplay):
    """A VBox that can refresh itself in a background thread and show a static snapshot."""

    def __init__(
        self,
        interval: float,
        start: tuple[str, str],
        stop_tip: str,
        refresh_tip: str,
        css_class: str,
        **kwargs: Any,
    ) -> None:
        """Build the control bar (start, stop, refresh, status) above the ``view``.

        ``start`` is the start button's label and tooltip ("Start"/"Follow");
        the buttons call :meth:`start`, :meth:`stop` and :meth:`refresh`.
        """
        label, tip = start
        self.start_button = _button(label, "play", tip)
        self.stop_button = _button("Stop", "stop", stop_tip)
        self.refresh_button = _button("Refresh", "refresh", refresh_tip)
        self.status = w.HTML()
        self.view = w.HTML()
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.refresh_button.on_click(lambda _: self.refresh())
        controls = w.HBox([self.start_button, self.stop_button, self.refresh_button, self.status])
        super().__init__(children=[controls, self.view], **kwargs)
        self.add_class(css_class)
        self.interval = float(interval)
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._lock = threading.RLock()
        _LIVE.add(self)

    # -- to be provided by subclasses
    def refresh(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _status_changed(self) -> None:
        """Called when the refresh thread starts or stops."""

    # -- refresh thread
    @property
    def running(self) -> bool:
        """True while the background refresh runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> _LiveView:
        """Refresh every ``interval`` seconds in a background thread (no-op if running)."""
        with self._lock:
            if self.running:
                return self
            self._stop_event = threading.Event()
            self._thread = threading.Thread(
                target=self._loop,
                args=(self._stop_event,),
                name=f"energy-flows {type(self).__name__}",
                daemon=True,
            )
            self._thread.start()
        self._status_changed()
        return self

    def stop(self, timeout: float = 10.0) -> _LiveView:
        """Stop the background refresh and wait for its thread to end."""
        if not hasattr(self, "_stop_event"):  # construction failed before the thread parts
            return self
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._status_changed()
        return self

    def _loop(self, stop_event: threading.Event) -> None:
        while not stop_event.wait(self.interval):
            try:
                self.refresh()
            except Exception as exc:  # a view must never kill its thread silently
                self._show_problem(f"refresh failed: {exc}")

    def _show_problem(self, message: str) -> None:
        """Show an unexpected error (subclasses put it in their view)."""

    def close(self) -> None:
        """Stop refreshing and close the widget and its children."""
        self.stop()
        for child in self._all_children():
            child.close()
        super().close()

    def _all_children(self) -> Iterator[w.Widget]:
        stack = list(self.children)
        while stack:
            child = stack.pop()
            yield child
            stack.extend(getattr(child, "children", ()))


def _button(description: str, icon: str, tooltip: str, style: str = "") -> w.Button:
    return w.Button(
        description=description,
        icon=icon,
        tooltip=tooltip,
        button_style=style,
        layout=w.Layout(width="auto"),
    )


# --------------------------------------------------------------------------- QueueMonitor


@dataclass(frozen=True)
class QueueSnapshot:
    """What a :class:`QueueMonitor` read in one refresh."""

    time: pd.Timestamp
    pool: str
    queues: pd.DataFrame
    workers: pd.DataFrame
    next_runs: pd.DataFrame
    problem: str | None = None
    server_stopped: bool = False

    def count(self, state: str, queue: str | None = None) -> int:
        """Runs in ``state`` ("Late", "late", ...) in one queue, or in all watched queues."""
        column = state.lower()
        if self.queues.empty or column not in self.queues:
            return 0
        rows = self.queues if queue is None else self.queues[self.queues["queue"] == queue]
        return int(pd.to_numeric(rows[column], errors="coerce").fillna(0).sum())

    @property
    def workers_online(self) -> list[str]:
        """Names of the pool's ONLINE workers."""
        if self.workers.empty:
            return []
        online = self.workers[self.workers["status"].astype(str).str.upper() == "ONLINE"]
        return [str(name) for name in online["name"]]


def _empty_snapshot(pool: str, problem: str | None = None) -> QueueSnapshot:
    return QueueSnapshot(
        time=pd.Timestamp.now(tz="UTC").floor("s"),
        pool=pool,
        queues=pd.DataFrame(),
        workers=pd.DataFrame(columns=["name", "status", "last_heartbeat"]),
        next_runs=pd.DataFrame(),
        problem=problem,
    )


class QueueMonitor(_LiveView):
    """A live view of one or more work queues of a pool.

    It shows, for each queue, its status (NOT_READY until a worker polls it,
    READY, PAUSED), its concurrency limit, and how many runs are in each state,
    with Late highlighted: runs whose start time passed while no worker took
    them. Below: the pool's workers with their last heartbeat, and the next
    runs waiting in the queues. This is the Prefect UI's work-queue page,
    inside the notebook.

    Args:
        queues: one queue name or several (default ``"energy_usage"``).
        pool: the work pool (default ``"energy-pool"``).
        interval: seconds between refreshes.
        next_runs: how many waiting runs to list.
        stable: show counts as ``0`` / ``≥1`` and leave out clock times in the
            static snapshot (``text/plain`` and ``text/html``), so that a stored
            notebook output compares equal under nbval from run to run.
        autostart: start refreshing at once (the first refresh always happens
            in the constructor, so the view is never empty).
        server: a :class:`~energy_flows.PrefectServer` (or anything with an
            ``api_url``) to read from; by default the server this kernel uses.
        api_url: the API address, instead of ``server``.
        max_failures: refreshes in a row that find the server gone before the
            monitor stops and says so.

    From code: ``refresh()`` reads once and returns a :class:`QueueSnapshot`;
    ``snapshot`` is the latest one; ``history`` is a DataFrame of counts over
    time (for :func:`energy_flows.views.plot_queue_counts`); ``start()`` and
    ``stop()`` control the background refresh.
    """

    def __init__(
        self,
        queues: str | Iterable[str] = DEFAULT_QUEUE,
        pool: str = DEFAULT_POOL,
        *,
        interval: float = 2.0,
        next_runs: int = 5,
        stable: bool = False,
        autostart: bool = True,
        server: Any = None,
        api_url: str | None = None,
        max_failures: int = 3,
    ) -> None:
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        self.pool = pool
        self.next_runs_shown = next_runs
        self.stable = stable
        self.max_failures = max_failures
        self._api_url = api_url or getattr(server, "api_url", None)
        self._failures = 0
        self._history: list[dict[str, Any]] = []
        self._snapshot = _empty_snapshot(pool)
        super().__init__(
            interval,
            start=("Start", "Refresh every few seconds"),
            stop_tip="Stop refreshing",
            refresh_tip="Read the queues once now",
            css_class="energy-flows-queue-monitor",
        )
        self.refresh()
        if autostart and not self._snapshot.server_stopped:
            self.start()
        else:
            self._status_changed()

    # -- data
    @property
    def api_url(self) -> str | None:
        """The API this monitor reads."""
        return self._api_url or _current_api_url()

    @property
    def snapshot(self) -> QueueSnapshot:
        """The latest refresh."""
        return self._snapshot

    @property
    def history(self) -> pd.DataFrame:
        """Counts per queue and state at each refresh: ``time, queue, scheduled, late, ...``."""
        columns = ["time", "queue", *(c for _, c in STATE_COUNTS)]
        with self._lock:
            return pd.DataFrame(list(self._history), columns=columns)

    def _read(self) -> QueueSnapshot:
        from energy_flows import orchestration as orch

        with _api(self._api_url):
            status = orch.queue_status(self.pool, self.queues)
            workers = orch.workers(self.pool)
            waiting = [
                orch.queue_runs(queue, self.pool, states=["Scheduled", "Late"]).assign(queue=queue)
                for queue in self.queues
            ]
        runs = pd.concat([part for part in waiting if not part.empty] or [pd.DataFrame()])
        if not runs.empty:
            runs = runs.sort_values("scheduled").head(self.next_runs_shown)
            runs = runs.reset_index(drop=True)
        return QueueSnapshot(
            time=pd.Timestamp.now(tz="UTC").floor("s"),
            pool=self.pool,
            queues=status.reset_index(drop=True),
            workers=workers,
            next_runs=runs,
        )

    def refresh(self) -> QueueSnapshot:
        """Read the queues once, update the view, and return what was read.

        Never raises for a server that is gone: the view says so instead, and
        after ``max_failures`` refreshes in a row the monitor stops.
        """
        url = self.api_url
        # Ask the health endpoint first: it answers at once, where a client
        # call to a server that is gone waits through Prefect's retries.
        if not _server_answers(url):
            snap = self._server_gone_snapshot(url)
        else:
            try:
                snap = self._read()
            except Exception as exc:
                if not _server_answers(url):
                    snap = self._server_gone_snapshot(url)
                else:
                    message = str(exc) if isinstance(exc, EnergyFlowsError) else repr(exc)
                    snap = _empty_snapshot(self.pool, problem=message)
            else:
                self._failures = 0
                self._record(snap)
        self._snapshot = snap
        self.view.value = self.snapshot_html()
        if snap.server_stopped:
            self._stop_event.set()
            self._status_changed()
        return snap

    def start(self) -> QueueMonitor:
        """Refresh every ``interval`` seconds in a background thread (again after a stop)."""
        if self._snapshot.server_stopped:
            self._failures = 0
            self._snapshot = dataclasses.replace(self._snapshot, server_stopped=False)
        super().start()
        return self

    def _server_gone_snapshot(self, url: str | None) -> QueueSnapshot:
        self._failures += 1
        gone = self._failures >= self.max_failures
        where = url or "(no PREFECT_API_URL set)"
        if gone:
            problem = (
                f"server stopped — the Prefect server at {where} does not answer, "
                f"so this monitor stopped; {_RESTART_HINT}."
            )
        else:
            problem = (
                f"the Prefect server at {where} does not answer "
                f"(try {self._failures} of {self.max_failures})."
            )
        return QueueSnapshot(
            time=pd.Timestamp.now(tz="UTC").floor("s"),
            pool=self.pool,
            queues=self._snapshot.queues,
            workers=self._snapshot.workers,
            next_runs=self._snapshot.next_runs,
            problem=problem,
            server_stopped=gone,
        )

    def _record(self, snap: QueueSnapshot) -> None:
        if snap.queues.empty:
            return
        with self._lock:
            for _, row in snap.queues.iterrows():
                entry = {"time": snap.time, "queue": row.get("queue")}
                for _, column in STATE_COUNTS:
                    entry[column] = int(row.get(column, 0) or 0)
                self._history.append(entry)
            del self._history[:-5000]

    def _show_problem(self, message: str) -> None:
        self._snapshot = _empty_snapshot(self.pool, problem=message)
        self.view.value = self.snapshot_html()

    def _status_changed(self) -> None:
        if self._snapshot.server_stopped:
            text = f"<span style='{_BAD_STYLE}'>■ server stopped</span>"
        elif self.running and not self._stop_event.is_set():
            text = f"<span style='{_OK_STYLE}'>● live, every {self.interval:g} s</span>"
        else:
            text = "<span style='color:#616161'>■ stopped</span>"
        self.status.value = text
        self.start_button.disabled = self.running and not self._stop_event.is_set()
        self.stop_button.disabled = not self.start_button.disabled

    # -- snapshot
    def _n(self, value: Any) -> str:
        number = int(value or 0) if not pd.isna(value) else 0
        if self.stable:
            return "≥1" if number > 0 else "0"
        return str(number)

    def snapshot_text(self) -> str:
        """The monitor as text: one line per queue, then workers and waiting runs."""
        snap = self._snapshot
        lines = []
        if snap.queues.empty:
            names = ", ".join(self.queues)
            lines.append(f"QueueMonitor {snap.pool}/{names}: no data")
        for _, row in snap.queues.iterrows():
            counts = ", ".join(
                f"{label} {self._n(row.get(column, 0))}"
                for label, column in (STATE_COUNTS[1], *STATE_COUNTS[:1], *STATE_COUNTS[2:])
            )
            limit = row.get("concurrency_limit")
            limit_text = "none" if limit is None or pd.isna(limit) else f"{int(limit)}"
            lines.append(
                f"QueueMonitor {snap.pool}/{row['queue']}: status {row.get('status')}, "
                f"{counts}; concurrency limit {limit_text}"
            )
        online = snap.workers_online
        if self.stable or snap.workers.empty:
            workers = ", ".join(online) if online else "none"
        else:
            workers = ", ".join(
                f"{r['name']} ({r['status']}, heartbeat {_clock(r.get('last_heartbeat'))})"
                for _, r in snap.workers.iterrows()
            )
        lines.append(f"  workers online: {len(online)}" + (f" — {workers}" if online else ""))
        if not self.stable:
            if snap.next_runs.empty:
                lines.append("  next runs: none waiting")
            else:
                waiting = "; ".join(
                    f"{r.get('name')} ({r.get('state')}, {_clock(r.get('scheduled'))})"
                    for _, r in snap.next_runs.iterrows()
                )
                lines.append(f"  next runs: {waiting}")
            lines.append(f"  snapshot at {_clock(snap.time)}")
        if snap.problem:
            lines.append(f"  ! {snap.problem}")
        return "\n".join(lines)

    def snapshot_html(self) -> str:
        """The monitor as an HTML table (what the live view shows, too)."""
        snap = self._snapshot
        parts = [
            "<div class='energy-flows-monitor' style='font-size:0.92em'><style>"
            ".energy-flows-monitor td{padding:2px 8px;text-align:left}</style>"
        ]
        title = f"Work pool <b>{_esc(snap.pool)}</b>"
        if not self.stable:
            title += f" · snapshot at {_clock(snap.time)}"
        parts.append(f"<div>{title}</div>")
        if snap.problem:
            parts.append(f"<div style='{_BAD_STYLE};margin:4px 0'>⚠ {_esc(snap.problem)}</div>")
        head = ["queue", "status", "limit", *(label for label, _ in STATE_COUNTS)]
        if not self.stable:
            head.append("last polled")
        parts.append(_table_head(head))
        for _, row in snap.queues.iterrows():
            limit = row.get("concurrency_limit")
            cells = [
                f"<td><b>{_esc(row['queue'])}</b></td>",
                f"<td>{_esc(row.get('status'))}{' (paused)' if row.get('paused') else ''}</td>",
                f"<td>{'none' if limit is None or pd.isna(limit) else int(limit)}</td>",
            ]
            for label, column in STATE_COUNTS:
                value = row.get(column, 0)
                style = _LATE_CELL if label == "Late" and (value or 0) > 0 else ""
                cells.append(f"<td style='{style}'>{self._n(value)}</td>")
            if not self.stable:
                cells.append(f"<td>{_clock(row.get('last_polled'))}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        if snap.queues.empty:
            parts.append(f"<tr><td colspan='{len(head)}'>no data</td></tr>")
        parts.append("</table>")

        online = snap.workers_online
        parts.append(f"<div style='margin-top:6px'><b>Workers online: {len(online)}</b></div>")
        if not snap.workers.empty:
            head = ["worker", "status"] + ([] if self.stable else ["last heartbeat"])
            parts.append(_table_head(head))
            for _, r in snap.workers.iterrows():
                heartbeat = "" if self.stable else f"<td>{_clock(r.get('last_heartbeat'))}</td>"
                parts.append(
                    f"<tr><td>{_esc(r['name'])}</td><td>{_esc(r['status'])}</td>{heartbeat}</tr>"
                )
            parts.append("</table>")
        if not self.stable:
            parts.append("<div style='margin-top:6px'><b>Next runs</b></div>")
            if snap.next_runs.empty:
                parts.append("<div>none waiting</div>")
            else:
                parts.append(_table_head(["run", "state", "deployment", "queue", "scheduled"]))
                for _, r in snap.next_runs.iterrows():
                    style = _LATE_CELL if r.get("state") == "Late" else ""
                    parts.append(
                        f"<tr><td>{_esc(r.get('name'))}</td><td style='{style}'>"
                        f"{_esc(r.get('state'))}</td><td>{_esc(r.get('deployment'))}</td>"
                        f"<td>{_esc(r.get('queue'))}</td><td>{_clock(r.get('scheduled'))}</td></tr>"
                    )
                parts.append("</table>")
        parts.append("</div>")
        return "".join(parts)


def _table_head(columns: Iterable[str]) -> str:
    cells = "".join(f"<th style='text-align:left;padding:2px 8px'>{_esc(c)}</th>" for c in columns)
    return f"<table style='border-collapse:collapse'><tr>{cells}</tr>"


# --------------------------------------------------------------------------- LogTail


def _log_path_of(source: Any) -> Path | None:
    for attribute in ("log_path", "log_file", "logfile"):
        value = getattr(source, attribute, None)
        if value:
            return Path(value)
    return None


def _run_id_of(source: Any) -> uuid.UUID | None:
    if isinstance(source, uuid.UUID):
        return source
    if isinstance(source, str):
        with contextlib.suppress(ValueError):
            return uuid.UUID(source)
        return None
    for attribute in ("id", "flow_run_id", "run_id"):
        value = getattr(source, attribute, None)
        if value is not None:
            with contextlib.suppress(ValueError, TypeError):
                return uuid.UUID(str(value))
    return None


class LogTail(_LiveView):
    """The last lines of a log: a server's or worker's log file, or one flow run's logs.

    ``source`` is a :class:`~energy_flows.PrefectServer` or
    :class:`~energy_flows.Worker` (their log file), a path to a log file, or a
    flow run (its id, or an object with ``.id`` such as what
    :func:`energy_flows.orchestration.trigger` returns): then the lines are
    the run's Prefect logs, the ones the UI shows on the run's page.

    ``follow=True`` (or ``.start()``) re-reads every ``interval`` seconds in a
    background thread; ``.lines`` is the latest list of lines.
    """

    def __init__(
        self,
        source: Any,
        *,
        lines: int = 20,
        interval: float = 1.0,
        follow: bool = False,
        title: str | None = None,
        api_url: str | None = None,
    ) -> None:
        self.source = source
        self.max_lines = lines
        self._api_url = api_url
        self.path = _log_path_of(source)
        self.run_id = None if self.path else _run_id_of(source)
        if self.path is None and self.run_id is None:
            if isinstance(source, str | os.PathLike):
                self.path = Path(source)
            else:
                raise TypeError(
                    "LogTail needs a PrefectServer or Worker, a log file path, or a flow run "
                    f"(its id or an object with .id); got {type(source).__name__}."
                )
        self.title = title or self._default_title()
        self.lines: list[str] = []
        self.problem: str | None = None
        super().__init__(
            interval,
            start=("Follow", "Show new lines as they come"),
            stop_tip="Stop following",
            refresh_tip="Read the log once now",
            css_class="energy-flows-log-tail",
        )
        self.follow_button = self.start_button  # the name a log viewer's reader looks for
        self.refresh()
        if follow:
            self.start()
        else:
            self._status_changed()

    def _default_title(self) -> str:
        if self.run_id is not None:
            name = getattr(self.source, "name", None)
            return f"logs of flow run {name or self.run_id}"
        kind = type(self.source).__name__
        if kind in ("PrefectServer", "Worker"):
            name = getattr(self.source, "name", None)
            label = "Prefect server" if kind == "PrefectServer" else f"worker {name or ''}".strip()
            return f"log of the {label} ({self.path})"
        return f"log file {self.path}"

    def _read(self) -> list[str]:
        if self.path is not None:
            from energy_flows.services.process import tail

            if not self.path.exists():
                raise FileNotFoundError(f"{self.path} does not exist (yet)")
            text = tail(self.path, self.max_lines)
            return text.splitlines()
        return self._read_run_logs()

    def _read_run_logs(self) -> list[str]:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
        from prefect.client.schemas.sorting import LogSort

        from energy_flows.orchestration._common import client

        with _api(self._api_url), client() as c:
            logs = c.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[self.run_id])),
                sort=LogSort.TIMESTAMP_DESC,
                limit=self.max_lines,
            )
        return [format_log_line(log.timestamp, log.level, log.message) for log in reversed(logs)]

    def refresh(self) -> list[str]:
        """Read the log once, update the view, and return the lines."""
        try:
            lines = self._read()
        except Exception as exc:
            self.problem = str(exc)
            if isinstance(exc, ServiceError):
                self._stop_event.set()
                self._status_changed()
        else:
            self.problem = None
            self.lines = lines
        self.view.value = self.snapshot_html()
        return self.lines

    def _status_changed(self) -> None:
        following = self.running and not self._stop_event.is_set()
        self.status.value = (
            f"<span style='{_OK_STYLE}'>● following, every {self.interval:g} s</span>"
            if following
            else "<span style='color:#616161'>■ not following</span>"
        )
        self.follow_button.disabled = following
        self.stop_button.disabled = not following

    def snapshot_text(self) -> str:
        """The title and the last lines, as text."""
        head = f"LogTail: {self.title}, last {len(self.lines)} lines"
        body = [f"  ! {self.problem}"] if self.problem else []
        return "\n".join([head, *body, *self.lines])

    def snapshot_html(self) -> str:
        """The title and the last lines in a scrollable monospace block."""
        problem = f"<div style='{_BAD_STYLE}'>⚠ {_esc(self.problem)}</div>" if self.problem else ""
        text = html.escape("\n".join(self.lines)) or "(empty)"
        return (
            f"<div class='energy-flows-log'><div><b>{_esc(self.title)}</b>"
            f" · last {len(self.lines)} lines</div>{problem}"
            "<pre style='max-height:22em;overflow:auto;font-size:0.85em;margin:2px 0;"
            f"white-space:pre-wrap'>{text}</pre></div>"
        )


def format_log_line(timestamp: Any, level: int | str, message: str) -> str:
    """One Prefect log record as ``HH:MM:SS LEVEL message``."""
    import logging

    name = logging.getLevelName(level) if isinstance(level, int) else str(level)
    return f"{_clock(timestamp).removesuffix(' UTC')} {name:<7} {message}"


# --------------------------------------------------------------------------- DeploymentBuilder

_CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_CRON_NAMES = {
    "month": "jan feb mar apr may jun jul aug sep oct nov dec".split(),
    "day of week": "sun mon tue wed thu fri sat".split(),
}


def explain_cron(expression: str) -> str | None:
    """Why a cron expression is not valid, in words; ``None`` when it is valid.

    A cron has five fields: minute, hour, day of month, month, day of week
    (``"*/5 * * * *"`` is every five minutes). The explanation names the
    field that is wrong and its allowed range, then Prefect's own validator
    (the one deployments use) has the last word.
    """
    text = (expression or "").strip()
    if not text:
        return "the cron is empty; e.g. '*/5 * * * *' runs every five minutes."
    parts = text.split()
    if len(parts) != 5:
        return (
            f"a cron has 5 fields (minute hour day-of-month month day-of-week), "
            f"'{text}' has {len(parts)}; e.g. '*/5 * * * *' runs every five minutes."
        )
    for part, (name, low, high) in zip(parts, _CRON_FIELDS, strict=True):
        problem = _explain_cron_field(part, name, low, high)
        if problem:
            return problem
    from energy_flows.orchestration.deployments import validate_cron

    try:
        validate_cron(text)
    except OrchestrationError as exc:
        return str(exc)
    return None


def _explain_cron_field(part: str, name: str, low: int, high: int) -> str | None:
    for item in part.split(","):
        base, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return f"the {name} field '{part}' has step '/{step}'; a step is a whole number ≥ 1."
        if base in ("*", "?"):
            continue
        for bound in base.split("-"):
            if bound.lower() in _CRON_NAMES.get(name, ()):
                continue
            if not bound.isdigit():
                return (
                    f"the {name} field '{part}' contains '{bound}', which is not a number "
                    f"({low}-{high}), '*', a range 'a-b', a list 'a,b' or a step '*/n'."
                )
            if not low <= int(bound) <= high:
                return f"the {name} field is {bound}, outside its range {low}-{high}."
    return None


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


@dataclass
class ParameterField:
    """One flow parameter in the form: its widget and how to read a value from it."""

    name: str
    annotation: Any
    default: Any
    widget: w.Widget
    kind: str  # "bool", "int", "float", "str", "choice", "json"
    optional: bool = False
    doc: str = ""

    def value(self) -> Any:
        """The parameter value the widget holds (raises ValueError for bad JSON)."""
        raw = self.widget.value
        if self.kind == "json":
            text = str(raw).strip()
            if not text:
                return None if self.optional or self.default is None else self.default
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"parameter '{self.name}': {text!r} is not valid JSON ({exc.msg})"
                ) from exc
        if self.kind == "str" and self.optional and raw == "":
            return None
        return raw

    def set(self, value: Any) -> None:
        if self.kind == "json":
            self.widget.value = "" if value is None else json.dumps(value, default=str)
        elif self.kind == "str":
            self.widget.value = "" if value is None else str(value)
        else:
            self.widget.value = value


def parameter_fields(fn: Callable[..., Any]) -> dict[str, ParameterField]:
    """Form fields typed from a function's signature (a flow's ``.fn``).

    ``bool`` → checkbox, ``int`` → integer box, ``float`` → number box,
    ``str`` → text, ``Literal[...]`` → dropdown; anything else (lists,
    dates, optional numbers) → a text box that takes JSON.
    """
    fn = getattr(fn, "fn", fn)
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError):
        signature = inspect.signature(fn)
    fields: dict[str, ParameterField] = {}
    for name, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation, optional = _unwrap_optional(param.annotation)
        default = None if param.default is inspect.Parameter.empty else param.default
        description = name.replace("_", " ")
        style = {"description_width": "10em"}
        layout = w.Layout(width="28em")
        common = {"description": description, "style": style, "layout": layout}
        kind = "json"
        if annotation is bool and default is not None:
            widget: w.Widget = w.Checkbox(value=bool(default), indent=False, **common)
            kind = "bool"
        elif annotation is int and not optional:
            widget = w.IntText(value=int(default or 0), **common)
            kind = "int"
        elif annotation is float and not optional:
            widget = w.FloatText(value=float(default or 0.0), **common)
            kind = "float"
        elif annotation is str:
            widget = w.Text(value="" if default is None else str(default), **common)
            kind = "str"
        elif typing.get_origin(annotation) is typing.Literal:
            options = list(typing.get_args(annotation))
            widget = w.Dropdown(
                options=options, value=default if default in options else options[0], **common
            )
            kind = "choice"
        else:
            text = "" if default is None else json.dumps(default, default=str)
            widget = w.Text(value=text, placeholder="JSON, empty = default", **common)
        fields[name] = ParameterField(name, annotation, default, widget, kind, optional)
    return fields


class DeploymentBuilder(_SnapshotDisplay):
    """A form that deploys the energy flow, checking every field as you type.

    Fields: the deployment name; the flow's parameters (typed from its
    signature); the schedule (an interval in seconds, a cron, or none); the
    work pool and queue; paused. The message under the form says what is
    wrong (a bad cron says why) before anyone clicks Deploy; Deploy calls
    :func:`energy_flows.orchestration.deploy_energy_flow` (or ``deploy`` for
    another flow) and shows the deployment or the error in place.

    The form judges its fields with the very checks Deploy runs
    (:func:`energy_flows.orchestration.deployments.deployment_problems`,
    which includes the flow's own parameter rules): "ready to deploy" means
    the deployment would be created, and ``days = -5`` is refused here as it
    would be there. Only what the server knows (does the work pool exist?)
    waits for the click. Changing any field clears the result or error of
    the previous Deploy: it described another form.

    From code (what tests do)::

        b = DeploymentBuilder()
        b.set(name="every-5-min", schedule="cron", cron="*/5 * * * *",
              parameters={"days": 7})
        b.errors            # [] when everything is valid
        info = b.deploy()   # raises OrchestrationError when not

    ``b.deploy_button.click()`` does the same as the button.
    """

    def __init__(
        self,
        flow: Any = None,
        *,
        name: str = "energy-usage",
        schedule: str = "interval",
        interval: float = 60,
        cron: str = "*/5 * * * *",
        work_pool: str = DEFAULT_POOL,
        work_queue: str = DEFAULT_QUEUE,
        paused: bool = False,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        if flow is None:
            from energy_flows.flows import energy_usage_pipeline

            flow = energy_usage_pipeline
            self._uses_default_flow = True
        else:
            self._uses_default_flow = False
        self.flow = flow
        self.result: Any = None
        self.last_error: str | None = None
        style = {"description_width": "10em"}

        def wide() -> w.Layout:
            return w.Layout(width="28em")

        self.name_field = w.Text(
            value=name, description="deployment name", style=style, layout=wide()
        )
        self.parameter_fields = parameter_fields(flow)
        self.schedule_field = w.ToggleButtons(
            options=[("interval", "interval"), ("cron", "cron"), ("none", "none")],
            value=schedule,
            description="schedule",
            style={"description_width": "10em", "button_width": "6em"},
        )
        self.interval_field = w.FloatText(
            value=interval, description="every (seconds)", style=style, layout=wide()
        )
        self.cron_field = w.Text(
            value=cron, description="cron", placeholder="*/5 * * * *", style=style, layout=wide()
        )
        self.pool_field = w.Text(
            value=work_pool, description="work pool", style=style, layout=wide()
        )
        self.queue_field = w.Text(
            value=work_queue, description="work queue", style=style, layout=wide()
        )
        self.paused_field = w.Checkbox(value=paused, description="paused", indent=False)
        self.deploy_button = _button(
            "Deploy", "rocket", "Create or update the deployment", "primary"
        )
        self.message = w.HTML()
        self.output = w.HTML()
        self.deploy_button.on_click(lambda _: self._on_click())
        flow_name = getattr(flow, "name", getattr(flow, "__name__", "flow"))
        params_box = w.VBox(
            [f.widget for f in self.parameter_fields.values()],
            layout=w.Layout(margin="0 0 0 2em"),
        )
        super().__init__(
            [
                w.HTML(f"<b>Deploy the flow <code>{_esc(flow_name)}</code></b>"),
                self.name_field,
                w.HTML("<i>parameters</i>") if self.parameter_fields else w.HTML(""),
                params_box,
                self.schedule_field,
                self.interval_field,
                self.cron_field,
                self.pool_field,
                self.queue_field,
                self.paused_field,
                w.HBox([self.deploy_button, self.message]),
                self.output,
            ]
        )
        self.add_class("energy-flows-deployment-builder")
        for widget in self._inputs():
            widget.observe(lambda _change: self._on_form_change(), names="value")
        if parameters:
            self.set(parameters=parameters)
        self._validate_and_show()

    def _inputs(self) -> list[w.Widget]:
        return [
            self.name_field,
            self.schedule_field,
            self.interval_field,
            self.cron_field,
            self.pool_field,
            self.queue_field,
            self.paused_field,
            *(f.widget for f in self.parameter_fields.values()),
        ]

    # -- from code
    def set(
        self,
        *,
        name: str | None = None,
        schedule: str | None = None,
        interval: float | None = None,
        cron: str | None = None,
        work_pool: str | None = None,
        work_queue: str | None = None,
        paused: bool | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> DeploymentBuilder:
        """Set fields as a learner would type them (validation runs as it would)."""
        if name is not None:
            self.name_field.value = name
        if schedule is not None:
            if schedule not in ("interval", "cron", "none"):
                raise OrchestrationError(
                    f"schedule must be 'interval', 'cron' or 'none', not {schedule!r}."
                )
            self.schedule_field.value = schedule
        if interval is not None:
            self.interval_field.value = float(interval)
        if cron is not None:
            self.cron_field.value = cron
        if work_pool is not None:
            self.pool_field.value = work_pool
        if work_queue is not None:
            self.queue_field.value = work_queue
        if paused is not None:
            self.paused_field.value = bool(paused)
        for key, value in (parameters or {}).items():
            if key not in self.parameter_fields:
                raise OrchestrationError(
                    f"The flow has no parameter {key!r}; its parameters are "
                    f"{', '.join(self.parameter_fields) or 'none'}."
                )
            self.parameter_fields[key].set(value)
        return self

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameters that differ from the flow's defaults (what the deployment stores).

        Raises ValueError when a field cannot be read (JSON that does not parse).
        """
        values, unreadable = self._readable_parameters()
        if unreadable:
            raise ValueError(unreadable[0])
        return values

    def _readable_parameters(self) -> tuple[dict[str, Any], list[str]]:
        """Like :attr:`parameters`, but skipping fields that cannot be read (and saying why)."""
        values: dict[str, Any] = {}
        unreadable: list[str] = []
        for name, f in self.parameter_fields.items():
            try:
                value = f.value()
            except ValueError as exc:
                unreadable.append(str(exc))
                continue
            if value != f.default:
                values[name] = value
        return values, unreadable

    def _deploy_arguments(self, parameters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The deployment name and the keyword arguments Deploy passes on, read from the fields."""
        kind = self.schedule_field.value
        schedule: dict[str, Any] = {}
        if kind == "interval":
            schedule["interval"] = self.interval_field.value
        elif kind == "cron":
            schedule["cron"] = self.cron_field.value.strip()
        options = dict(
            parameters=parameters,
            work_pool=self.pool_field.value.strip(),
            work_queue=self.queue_field.value.strip(),
            paused=self.paused_field.value,
            **schedule,
        )
        return self.name_field.value.strip(), options

    @property
    def errors(self) -> list[str]:
        """What is wrong with the fields now, one sentence each ([] when ready).

        The sentences are those of
        :func:`~energy_flows.orchestration.deployments.deployment_problems`,
        the checks Deploy runs; a bad cron is explained field by field
        (:func:`explain_cron`), and a parameter whose JSON cannot be read
        says so.
        """
        from energy_flows.orchestration.deployments import deployment_problems

        parameters, unreadable = self._readable_parameters()
        name, options = self._deploy_arguments(parameters)
        problems = []
        for key, error in deployment_problems(self.flow, name, **options).items():
            text = str(error)
            if key == "schedule" and "cron" in options:
                text = explain_cron(options["cron"]) or text
            problems.append(text)
        return problems + unreadable

    def describe(self) -> str:
        """One line: what Deploy would create."""
        kind = self.schedule_field.value
        if kind == "interval":
            schedule = f"every {self.interval_field.value:g} s"
        elif kind == "cron":
            schedule = f"cron '{self.cron_field.value}'"
        else:
            schedule = "no schedule (runs start only when triggered)"
        try:
            params = json.dumps(self.parameters, default=str, sort_keys=True)
        except ValueError:
            params = "(invalid)"
        return (
            f"deployment '{self.name_field.value}': {schedule}, pool '{self.pool_field.value}', "
            f"queue '{self.queue_field.value}', paused {'yes' if self.paused_field.value else 'no'}"
            f", parameters {params}"
        )

    def deploy(self) -> Any:
        """Create or update the deployment from the fields and return its info.

        Raises :class:`~energy_flows.errors.OrchestrationError` (and shows it
        under the form) when a field is invalid or Prefect refuses.
        """
        problems = self.errors
        if problems:
            error = OrchestrationError(
                "The deployment was not created: "
                + " ".join(problems)
                + " Fix the field, then deploy again."
            )
            self._show_failure(error)
            raise error
        from energy_flows import orchestration as orch

        name, options = self._deploy_arguments(self.parameters)
        self.output.value = "<i>deploying…</i>"
        try:
            if self._uses_default_flow:
                info = orch.deploy_energy_flow(name, **options)
            else:
                info = orch.deploy(self.flow, name, **options)
        except Exception as exc:
            self._show_failure(exc)
            raise
        self.result = info
        self.last_error = None
        shown = info._repr_html_() if hasattr(info, "_repr_html_") else _esc(info)
        self.output.value = f"<div style='{_OK_STYLE}'>✓ deployed</div>{shown}"
        return info

    def _on_click(self) -> None:
        with contextlib.suppress(Exception):  # shown in place by deploy()
            self.deploy()

    def _show_failure(self, exc: BaseException) -> None:
        self.result = None
        self.last_error = str(exc)
        self.output.value = f"<div style='{_BAD_STYLE}'>✗ {_esc(exc)}</div>"

    def _on_form_change(self) -> None:
        """A field changed: forget the last Deploy's result or error, then check the form."""
        self.result = None
        self.last_error = None
        self.output.value = ""
        self._validate_and_show()

    def _validate_and_show(self) -> None:
        kind = self.schedule_field.value
        self.interval_field.layout.display = None if kind == "interval" else "none"
        self.cron_field.layout.display = None if kind == "cron" else "none"
        problems = self.errors
        if problems:
            items = "".join(f"<li>{_esc(p)}</li>" for p in problems)
            self.message.value = (
                f"<div style='{_BAD_STYLE}'><ul style='margin:0'>{items}</ul></div>"
            )
        else:
            self.message.value = f"<span style='{_OK_STYLE}'>✓ ready to deploy</span>"

    # -- display
    def snapshot_text(self) -> str:
        """The form as text: what it would deploy, and its problems or result."""
        line = f"DeploymentBuilder {self.describe()}"
        problems = self.errors
        if problems:
            return line + "\n" + "\n".join(f"  ✗ {p}" for p in problems)
        if self.last_error:
            return line + f"\n  ✗ {self.last_error}"
        if self.result is not None:
            return line + "\n  ✓ deployed"
        return line + "\n  ✓ ready to deploy"

    def snapshot_html(self) -> str:
        """The form as HTML: a table of its fields, then its message."""
        rows = {
            "deployment name": self.name_field.value,
            **{f"parameter {n}": v for n, v in _safe_parameters(self).items()},
            "schedule": self.describe().split(": ", 1)[1].split(", pool")[0],
            "work pool": self.pool_field.value,
            "work queue": self.queue_field.value,
            "paused": "yes" if self.paused_field.value else "no",
        }
        body = "".join(
            f"<tr><th style='text-align:left'>{_esc(k)}</th><td>{_esc(v)}</td></tr>"
            for k, v in rows.items()
        )
        status = self.snapshot_text().split("\n", 1)[1]
        return f"<div><b>DeploymentBuilder</b><table>{body}</table><pre>{_esc(status)}</pre></div>"


def _safe_parameters(builder: DeploymentBuilder) -> dict[str, Any]:
    try:
        return builder.parameters
    except ValueError:
        return {}


def _name_problem(value: str, what: str) -> str | None:
    text = (value or "").strip()
    if not text:
        return f"the {what} needs a name."
    bad = "".join(sorted(set("/%&><") & set(text)))
    if bad:
        return f"the {what} name '{text}' contains {bad!r}; use letters, digits, '-' and '_'."
    return None


__all__ = [
    "DeploymentBuilder",
    "LogTail",
    "ParameterField",
    "QueueMonitor",
    "QueueSnapshot",
    "explain_cron",
    "format_log_line",
    "parameter_fields",
    "stop_all_views",
]
