"""The run timeline: which worker ran which flow run, when, and how many at once.

* :func:`runs_with_workers` adds a ``worker`` column to a runs table (it
  reads the API: the one function of :mod:`energy_flows.views` that does).
* :func:`plot_run_timeline` draws one row per worker and one bar per run, on
  an axis of clock times (``HH:MM:SS``, UTC).
* :func:`assign_lanes` is how overlapping runs get extra rows: the number of
  rows of a worker is the most runs it had in flight at once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from energy_flows.views.common import as_utc, clock_axis, finish, utc_now
from energy_flows.vocabulary import state_colour

__all__ = [
    "WORKER_LABEL",
    "assign_lanes",
    "attach_workers",
    "plot_run_timeline",
    "read_flow_runs",
    "runs_with_workers",
    "worker_of",
    "workers_from_logs",
    "workers_from_run_logs",
]

#: The label a Prefect 3 worker puts on every flow run it takes: its own name.
WORKER_LABEL = "prefect.worker.name"

#: The message a worker writes into a flow run's log when it takes the run.
_SUBMIT_MESSAGE = re.compile(r"Worker '(?P<worker>.+)' submitting flow run '(?P<id>[0-9a-f-]+)'")
#: The most rows the API returns in one call.
_PAGE = 200

_WAITING_ROW = "waiting in queue"


# --------------------------------------------------------------------------- lanes


def assign_lanes(starts: Iterable[Any], ends: Iterable[Any]) -> list[int]:
    """Give each interval the lowest lane (0, 1, ...) that is free at its start.

    This is how many runs were in flight at once: with a concurrency limit of
    ``n`` a worker never needs more than ``n`` lanes. Intervals are
    ``(start, end)`` pairs, in any order; the result is in the input order.
    """
    pairs = list(zip(starts, ends, strict=True))
    order = sorted(range(len(pairs)), key=lambda i: pairs[i][0])
    lane_free_at: list[Any] = []
    lanes = [0] * len(pairs)
    for i in order:
        start, end = pairs[i]
        for lane, free_at in enumerate(lane_free_at):
            if free_at <= start:
                lanes[i] = lane
                lane_free_at[lane] = end
                break
        else:
            lanes[i] = len(lane_free_at)
            lane_free_at.append(end)
    return lanes


# --------------------------------------------------------------------------- which worker


def worker_of(flow_run: Any) -> str | None:
    """The name of the worker that took a flow run, from its label ``prefect.worker.name``.

    A Prefect 3 worker labels each run it takes with its name (and its type
    and work pool) before it starts the run; the UI shows these labels on the
    run's page. ``None`` when the run has no such label: no worker took it yet.
    """
    labels = getattr(flow_run, "labels", None) or {}
    name = labels.get(WORKER_LABEL)
    return str(name) if name else None


def workers_from_logs(logs: pd.DataFrame) -> dict[str, str]:
    """Map flow run id -> worker name from the worker's "submitting" log lines.

    The worker writes ``Worker 'NAME' submitting flow run 'ID'`` into the
    run's own log. ``logs`` needs a ``message`` column. This is the fallback
    of :func:`runs_with_workers` for runs without the worker label.
    """
    found: dict[str, str] = {}
    if logs is None or logs.empty or "message" not in logs:
        return found
    for message in logs["message"].astype(str):
        match = _SUBMIT_MESSAGE.search(message)
        if match:
            found[match["id"]] = match["worker"]
    return found


def attach_workers(runs: pd.DataFrame, logs: pd.DataFrame) -> pd.DataFrame:
    """Return ``runs`` with a ``worker`` column filled from :func:`workers_from_logs`.

    Runs no worker has taken yet (Scheduled, Late) get a missing value.
    """
    mapping = workers_from_logs(logs)
    out = runs.copy()
    out["worker"] = [mapping.get(str(run_id)) for run_id in out.get("id", pd.Series(dtype=str))]
    return out


def read_flow_runs(ids: Sequence[str]) -> dict[str, Any]:
    """The flow runs with these ids, by id (reads the API; ids it does not know are left out)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from energy_flows.orchestration.common import client

    found: dict[str, Any] = {}
    with client() as c:
        for first in range(0, len(ids), _PAGE):
            some = [uuid.UUID(str(run_id)) for run_id in ids[first : first + _PAGE]]
            page = FlowRunFilter(id=FlowRunFilterId(any_=some))
            for run in c.read_flow_runs(flow_run_filter=page, limit=_PAGE):
                found[str(run.id)] = run
    return found


def workers_from_run_logs(ids: Sequence[str]) -> dict[str, str]:
    """Map flow run id -> worker name from these runs' "submitting" log lines (reads the API).

    The runs' logs are read whole and matched here, not searched by the server:
    Prefect's log text search needs SQLite's ``concat()`` before Prefect 3.9,
    which the SQLite of many Pythons (3.11 with SQLite 3.40) lacks. This is a
    fallback for runs without the worker label (see :func:`runs_with_workers`),
    so it reads only the logs of those few runs.
    """
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from energy_flows.orchestration.common import client

    log_filter = LogFilter(
        flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(str(run_id)) for run_id in ids])
    )
    messages: list[str] = []
    read = 0
    with client() as c:
        while True:  # the API returns at most 200 rows a call: read page by page
            page = c.read_logs(log_filter=log_filter, limit=_PAGE, offset=read)
            read += len(page)
            messages.extend(log.message for log in page if _SUBMIT_MESSAGE.search(log.message))
            if len(page) < _PAGE:
                break
    return workers_from_logs(pd.DataFrame({"message": messages}))


def runs_with_workers(runs: pd.DataFrame) -> pd.DataFrame:
    """Add a ``worker`` column to a runs table: who ran each run (reads the API).

    ``runs`` is a table from :func:`energy_flows.orchestration.queue_runs`
    (it needs an ``id`` column). The worker of each run is the run's label
    ``prefect.worker.name`` (:func:`worker_of`); runs no worker took yet get
    a missing value.
    """
    out = runs.copy()
    if runs.empty:
        out["worker"] = pd.Series(dtype=object)
        return out
    ids = [str(run_id) for run_id in runs["id"]]
    flow_runs = read_flow_runs(ids)
    workers = {run_id: worker_of(run) for run_id, run in flow_runs.items()}
    # Fallback, for a run that started without the worker label (taken by a worker of
    # an older Prefect, from before workers labelled their runs): its worker is found
    # by the line that worker wrote into the run's log. Only those runs' logs are read.
    unlabelled = [
        run_id
        for run_id, run in flow_runs.items()
        if workers[run_id] is None and run.start_time is not None
    ]
    if unlabelled:
        workers.update(workers_from_run_logs(unlabelled))
    out["worker"] = [workers.get(run_id) for run_id in ids]
    return out


# --------------------------------------------------------------------------- the figure

#: One bar of the timeline: row label, start, end, state, run name.
_Bar = tuple[str, pd.Timestamp, pd.Timestamp, str, str]


def _timeline_frame(runs: pd.DataFrame, by: str) -> pd.DataFrame:
    """The runs with UTC times and a ``row_group`` column (the worker, or what ``by`` names)."""
    frame = runs.copy()
    for column in ("started", "ended", "scheduled"):
        frame[column] = as_utc(frame[column]) if column in frame else pd.NaT
    if by != "lane" and by not in frame:
        raise ValueError(
            f"plot_run_timeline(by={by!r}) needs a {by!r} column; the table has "
            f"{list(frame.columns)}. For workers, add it with runs_with_workers(runs)."
        )
    group = pd.Series("all runs", index=frame.index) if by == "lane" else frame[by]
    frame["row_group"] = group.fillna("(unknown)").astype(str)
    return frame


def _bars(started: pd.DataFrame, by: str) -> tuple[list[str], list[_Bar]]:
    """Rows (labelled by worker, "w1 #2" for its second lane) and one bar per started run."""
    rows: list[str] = []
    bars: list[_Bar] = []
    for group_name, part in started.groupby("row_group", sort=True):
        lanes = assign_lanes(part["started"], part["end"])
        for lane, (_, run) in zip(lanes, part.iterrows(), strict=True):
            if by == "lane":
                label = f"lane {lane + 1}"
            else:
                label = str(group_name) if lane == 0 else f"{group_name} #{lane + 1}"
            if label not in rows:
                rows.append(label)
            bars.append((label, run["started"], run["end"], str(run["state"]), str(run["name"])))
    if by == "lane":
        rows.sort(key=lambda label: int(label.split()[-1]))
    return rows, bars


def _draw_bars(ax: Any, bars: list[_Bar], position: dict[str, int]) -> None:
    """Draw the bars; names go inside bars wide enough to hold them (a tenth of the time shown)."""
    if not bars:
        return
    span_s = max((max(b[2] for b in bars) - min(b[1] for b in bars)).total_seconds(), 1.0)
    for label, start, end, state, name in bars:
        width = max((end - start).total_seconds(), 0.2) / 86400
        left = start.tz_convert(None)
        ax.barh(
            position[label],
            width,
            left=left,
            height=0.7,
            color=state_colour(state),
            edgecolor="white",
        )
        if len(bars) <= 20 and (end - start).total_seconds() >= span_s / 10:
            ax.text(
                left + (end - start) / 2,
                position[label],
                name,
                ha="center",
                va="center",
                fontsize=7,
                color="white",
                clip_on=True,
            )


def _draw_waiting(ax: Any, waiting: pd.DataFrame, row: int, now: pd.Timestamp) -> None:
    """Hatched bars from each waiting run's scheduled time to now: its lateness."""
    for _, run in waiting.iterrows():
        width = max((now - run["scheduled"]).total_seconds(), 0.2) / 86400
        ax.barh(
            row,
            width,
            left=run["scheduled"].tz_convert(None),
            height=0.5,
            color="none",
            edgecolor=state_colour(str(run["state"])),
            hatch="///",
        )


def _day_label(bars: list[_Bar], waiting: pd.DataFrame) -> str:
    """The x axis label: "clock time (UTC)", with the day the runs happened on."""
    times = [b[1] for b in bars] + [b[2] for b in bars] + list(waiting.get("scheduled", []))
    days = sorted({t.strftime("%Y-%m-%d") for t in times})
    if not days:
        return "clock time (UTC)"
    return f"clock time (UTC), {days[0]}" + (f" to {days[-1]}" if len(days) > 1 else "")


def plot_run_timeline(
    runs: pd.DataFrame,
    by: str = "worker",
    *,
    now: Any = None,
    title: str | None = None,
    show_waiting: bool = True,
) -> Figure:
    """Draw flow runs as bars on a clock-time axis, one row per worker (or per ``by`` value).

    ``runs`` has the columns of :func:`energy_flows.orchestration.queue_runs`
    (``name``, ``state``, ``started``, ``ended``, ``scheduled``) and, for
    ``by="worker"``, a ``worker`` column (see :func:`runs_with_workers`).
    ``by`` may name any other column (``"deployment"``, ``"queue"``) or be
    ``"lane"`` to put all runs on lanes of one queue.

    Each row is labelled with the worker's name; each bar runs from the run's
    start to its end (or to ``now`` while it is running), coloured by state.
    Runs that overlap inside one row are spread over extra rows ("agent-1
    #2"), so the number of rows of a worker is the most runs it had in flight
    at once: a queue's concurrency limit becomes visible. With
    ``show_waiting``, runs that have not started yet appear in a hatched
    "waiting in queue" row from their scheduled time to ``now``: that is their
    lateness. The x axis reads clock times, ``HH:MM:SS`` in UTC.
    """
    now_ts = utc_now(now)
    frame = _timeline_frame(runs, by)
    started = frame[frame["started"].notna()].copy()
    started["end"] = started["ended"].fillna(now_ts)
    started.loc[started["end"] < started["started"], "end"] = started["started"]
    waiting = frame[frame["started"].isna() & frame["scheduled"].notna()]
    waiting = waiting[waiting["scheduled"] <= now_ts] if show_waiting else waiting[:0]

    rows, bars = _bars(started, by)
    if not waiting.empty:
        rows.insert(0, _WAITING_ROW)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * max(len(rows), 1)))
    position = {label: len(rows) - 1 - i for i, label in enumerate(rows)}
    _draw_bars(ax, bars, position)
    if not waiting.empty:
        _draw_waiting(ax, waiting, position[_WAITING_ROW], now_ts)
    ax.set_yticks(list(position.values()), list(position.keys()))
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ax.set_title(title or f"Flow runs by {by}")
    if not bars and waiting.empty:
        ax.text(0.5, 0.5, "no runs yet", transform=ax.transAxes, ha="center", va="center")
        ax.set_xticks([])
        return finish(fig)
    states = sorted({bar[3] for bar in bars} | set(waiting["state"].astype(str)))
    handles = [Patch(color=state_colour(s), label=s) for s in states]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.use_sticky_edges = False  # bars would pin the first start to the frame's edge
    ax.margins(x=0.03)
    ax.xaxis_date()
    clock_axis(ax)
    ax.set_xlabel(_day_label(bars, waiting))
    return finish(fig)
