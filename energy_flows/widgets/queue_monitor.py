"""QueueMonitor: the Prefect UI's work-queue page, live inside the notebook."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from energy_flows.errors import EnergyFlowsError
from energy_flows.markup import (
    LATE_CELL_STYLE,
    Markup,
    bad,
    cell,
    clock,
    element,
    table,
)
from energy_flows.vocabulary import COUNT_COLUMNS, DEFAULT_POOL, DEFAULT_QUEUE, RUN_STATES
from energy_flows.widgets.base import (
    Controls,
    LiveView,
    current_api_url,
    prefect_api,
    server_answers,
)

__all__ = ["QueueMonitor", "QueueSnapshot"]

_RESTART_HINT = (
    "start it again with `server = energy_flows.PrefectServer().start()`, "
    "then call `.start()` on this view"
)

#: The run states with their count column of ``queue_status()``: ("Late", "late"), ...
_COUNTS = tuple(zip(RUN_STATES, COUNT_COLUMNS, strict=True))
#: The states of the runs the monitor lists (and counts from that list).
_WAITING = ["Scheduled", "Late"]
#: At most this many waiting runs are read per queue and refresh: far more than a
#: schedule keeps in stock (Prefect schedules up to 100 runs ahead per deployment).
_WAITING_LIMIT = 1000
#: The order of the text snapshot: Late first, because it is the number to watch.
_TEXT_ORDER = sorted(_COUNTS, key=lambda pair: pair[0] != "Late")


@dataclass(frozen=True)
class QueueSnapshot:
    """What a :class:`QueueMonitor` read in one refresh.

    ``time`` is exact (when the refresh read the queues); the views show it
    to the second. ``queues`` has the columns of
    :func:`energy_flows.orchestration.queue_status`, ``workers`` those of
    :func:`energy_flows.orchestration.workers`, ``next_runs`` those of
    :func:`energy_flows.orchestration.queue_runs` plus ``queue``.
    """

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
        time=pd.Timestamp.now(tz="UTC"),
        pool=pool,
        queues=pd.DataFrame(),
        workers=pd.DataFrame(columns=["name", "status", "last_heartbeat"]),
        next_runs=pd.DataFrame(),
        problem=problem,
    )


def _number(value: Any) -> int:
    """A count as an int (0 for a missing one)."""
    return 0 if value is None or pd.isna(value) else int(value)


def _limit(value: Any) -> str:
    return "none" if value is None or pd.isna(value) else str(int(value))


class QueueMonitor(LiveView):
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
        autostart: bool = True,
        server: Any = None,
        api_url: str | None = None,
        max_failures: int = 3,
    ) -> None:
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        self.pool = pool
        self.next_runs_shown = next_runs
        self.max_failures = max_failures
        self._api_url = api_url or getattr(server, "api_url", None)
        self._failures = 0
        self._history: list[dict[str, Any]] = []
        self._snapshot = _empty_snapshot(pool)
        controls = Controls(refresh_tip="Read the queues once now")
        super().__init__(interval, controls, "energy-flows-queue-monitor")
        self.refresh()
        if autostart and not self._snapshot.server_stopped:
            self.start()
        else:
            self._status_changed()

    # -- data
    @property
    def api_url(self) -> str | None:
        """The API this monitor reads."""
        return self._api_url or current_api_url()

    @property
    def snapshot(self) -> QueueSnapshot:
        """The latest refresh."""
        return self._snapshot

    @property
    def history(self) -> pd.DataFrame:
        """Counts per queue and state at each refresh: ``time, queue, scheduled, late, ...``."""
        with self._lock:
            return pd.DataFrame(list(self._history), columns=["time", "queue", *COUNT_COLUMNS])

    def _read(self) -> QueueSnapshot:
        """One snapshot: the queues, the pool's workers, and the waiting runs.

        The Scheduled and Late counts are counted from the very runs the list
        shows (one read per queue), not asked for separately: a run that turns
        Late between two requests would otherwise be counted Scheduled while
        the list shows it Late.
        """
        from energy_flows import orchestration as orch

        with prefect_api(self._api_url):
            status = orch.queue_status(self.pool, self.queues).reset_index(drop=True)
            workers = orch.workers(self.pool)
            waiting = {
                queue: orch.queue_runs(queue, self.pool, states=_WAITING, limit=_WAITING_LIMIT)
                for queue in self.queues
            }
        for queue, part in waiting.items():
            late = int((part["state"] == "Late").sum())
            rows = status["queue"] == queue
            status.loc[rows, "late"] = late
            status.loc[rows, "scheduled"] = len(part) - late
        parts = [part.assign(queue=queue) for queue, part in waiting.items() if not part.empty]
        runs = pd.concat(parts) if parts else pd.DataFrame()
        if not runs.empty:
            runs = runs.sort_values("scheduled").head(self.next_runs_shown)
            runs = runs.reset_index(drop=True)
        return QueueSnapshot(
            time=pd.Timestamp.now(tz="UTC"),
            pool=self.pool,
            queues=status,
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
        if not server_answers(url):
            snap = self._server_gone_snapshot(url)
        else:
            try:
                snap = self._read()
            except Exception as exc:
                if not server_answers(url):
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
            self._halt()
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
            time=pd.Timestamp.now(tz="UTC"),
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
                for column in COUNT_COLUMNS:
                    entry[column] = _number(row.get(column, 0))
                self._history.append(entry)
            del self._history[:-5000]

    def _show_problem(self, message: str) -> None:
        self._snapshot = _empty_snapshot(self.pool, problem=message)
        self.view.value = self.snapshot_html()

    def status_html(self) -> str:
        """The status line: "server stopped" when the monitor gave up, else live or stopped."""
        if self._snapshot.server_stopped:
            return bad("■ server stopped", tag="span")
        return super().status_html()

    # -- snapshots
    def snapshot_text(self) -> str:
        """The monitor as text: one line per queue, then workers and waiting runs.

        Clock times are shown to the second (``12:00:07 UTC``); a stored
        notebook output compares equal under nbval because the lessons'
        sanitizer (``tests/notebooks/sanitize.cfg``) replaces clock times.
        """
        snap = self._snapshot
        lines = []
        if snap.queues.empty:
            lines.append(f"QueueMonitor {snap.pool}/{', '.join(self.queues)}: no data")
        for _, row in snap.queues.iterrows():
            counts = ", ".join(
                f"{state} {_number(row.get(column, 0))}" for state, column in _TEXT_ORDER
            )
            lines.append(
                f"QueueMonitor {snap.pool}/{row['queue']}: status {row.get('status')}, "
                f"{counts}; concurrency limit {_limit(row.get('concurrency_limit'))}"
            )
        online = snap.workers_online
        workers = ", ".join(
            f"{r['name']} ({r['status']}, heartbeat {clock(r.get('last_heartbeat'))})"
            for _, r in snap.workers.iterrows()
        )
        lines.append(f"  workers online: {len(online)}" + (f" — {workers}" if online else ""))
        if snap.next_runs.empty:
            lines.append("  next runs: none waiting")
        else:
            waiting = "; ".join(
                f"{r.get('name')} ({r.get('state')}, {clock(r.get('scheduled'))})"
                for _, r in snap.next_runs.iterrows()
            )
            lines.append(f"  next runs: {waiting}")
        lines.append(f"  snapshot at {clock(snap.time)}")
        if snap.problem:
            lines.append(f"  ! {snap.problem}")
        return "\n".join(lines)

    def snapshot_html(self) -> str:
        """The monitor as HTML tables (what the live view shows, too)."""
        snap = self._snapshot
        online = snap.workers_online
        return element(
            "div",
            element("style", ".energy-flows-monitor td{padding:2px 8px;text-align:left}"),
            element(
                "div", "Work pool ", element("b", snap.pool), f" · snapshot at {clock(snap.time)}"
            ),
            snap.problem and bad("⚠ ", snap.problem, style="margin:4px 0"),
            table(
                ["queue", "status", "limit", *RUN_STATES, "last polled"],
                [_queue_row(row) for _, row in snap.queues.iterrows()],
                empty="no data",
            ),
            element("div", element("b", f"Workers online: {len(online)}"), style="margin-top:6px"),
            None if snap.workers.empty else _workers_table(snap.workers),
            element("div", element("b", "Next runs"), style="margin-top:6px"),
            element("div", "none waiting")
            if snap.next_runs.empty
            else _next_runs_table(snap.next_runs),
            class_="energy-flows-monitor",
            style="font-size:0.92em",
        )


def _queue_row(row: pd.Series) -> list[Any]:
    """One queue: name, status, limit, a count per state (Late stands out), last poll."""
    counts = [_count_cell(state, row.get(column, 0)) for state, column in _COUNTS]
    status = f"{row.get('status')}{' (paused)' if row.get('paused') else ''}"
    return [
        cell(row["queue"], bold=True),
        status,
        _limit(row.get("concurrency_limit")),
        *counts,
        clock(row.get("last_polled")),
    ]


def _count_cell(state: str, value: Any) -> Markup:
    """A count; a Late count above 0 is highlighted."""
    number = _number(value)
    return cell(number, style=LATE_CELL_STYLE if state == "Late" and number > 0 else None)


def _workers_table(workers: pd.DataFrame) -> Markup:
    rows = [[r["name"], r["status"], clock(r.get("last_heartbeat"))] for _, r in workers.iterrows()]
    return table(["worker", "status", "last heartbeat"], rows)


def _next_runs_table(runs: pd.DataFrame) -> Markup:
    rows = [
        [
            r.get("name"),
            cell(r.get("state"), style=LATE_CELL_STYLE if r.get("state") == "Late" else None),
            r.get("deployment"),
            r.get("queue"),
            clock(r.get("scheduled")),
        ]
        for _, r in runs.iterrows()
    ]
    return table(["run", "state", "deployment", "queue", "scheduled"], rows)
