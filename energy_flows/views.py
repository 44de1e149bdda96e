"""Figures and tables that show what the orchestrator did.

Every plotting function here takes plain DataFrames (or a flow result) and
returns a :class:`matplotlib.figure.Figure`; none of them talks to the Prefect
API, so they work on saved data, in tests, and without a server. The one
function that reads the API, :func:`runs_with_workers`, is kept apart and
says so.

* :func:`plot_run_timeline`: one row per worker, one bar per flow run,
  coloured by state. Runs that overlap on one worker get extra rows, so a
  queue's concurrency limit becomes visible: with a limit of 1 the bars never
  overlap.
* :func:`plot_forecast`: actual vs predicted energy use of one pipeline run,
  with the forecast horizon shaded.
* :func:`plot_queue_counts`: how many runs sat in each state over time, from
  :attr:`energy_flows.widgets.QueueMonitor.history`.
* :func:`style_runs`: a runs table with Late rows highlighted.

Figures are closed before they are returned: a notebook shows the figure a
cell returns, once, instead of once more from pyplot's list of open figures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pandas as pd
from matplotlib import dates as mdates
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch

#: One colour per Prefect state name, close to the Prefect UI's palette.
STATE_COLOURS: dict[str, str] = {
    "Scheduled": "#f5c542",
    "Late": "#e8710a",
    "Pending": "#a3a3a3",
    "Running": "#1e88e5",
    "Completed": "#2e7d32",
    "Failed": "#d32f2f",
    "Crashed": "#8e24aa",
    "Cancelled": "#616161",
    "Cancelling": "#9e9e9e",
    "Paused": "#fbc02d",
}

#: Count columns of :func:`energy_flows.orchestration.queue_status` in display order.
COUNT_COLUMNS = (
    "scheduled",
    "late",
    "pending",
    "running",
    "completed",
    "failed",
    "crashed",
    "cancelled",
)

#: The message a worker writes into a flow run's log when it takes the run.
_SUBMIT_MESSAGE = re.compile(r"Worker '(?P<worker>.+)' submitting flow run '(?P<id>[0-9a-f-]+)'")

_WAITING_ROW = "waiting in queue"


def state_colour(state: str) -> str:
    """The colour of a state name (grey for a state this module does not know)."""
    return STATE_COLOURS.get(str(state), "#bdbdbd")


# --------------------------------------------------------------------------- data helpers


def _utc(values: Any) -> pd.Series:
    """Timestamps as tz-aware UTC (naive values are taken to be UTC)."""
    series = pd.to_datetime(pd.Series(values), errors="coerce")
    if series.dt.tz is None:
        return series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC")


def _now_utc(now: Any = None) -> pd.Timestamp:
    stamp = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


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


def workers_from_logs(logs: pd.DataFrame) -> dict[str, str]:
    """Map flow run id -> worker name from the worker's "submitting" log lines.

    A Prefect 3 flow run has no field that names the worker which ran it, but
    the worker writes ``Worker 'NAME' submitting flow run 'ID'`` into the
    run's own log. ``logs`` needs a ``message`` column (and may have
    ``flow_run_id``, which is used when present).
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


def runs_with_workers(runs: pd.DataFrame) -> pd.DataFrame:
    """Add a ``worker`` column to a runs table by reading the runs' logs (reads the API).

    ``runs`` is a table from :func:`energy_flows.orchestration.queue_runs` (it
    needs an ``id`` column). One ``read_logs`` call fetches only the workers'
    "submitting flow run" lines of these runs.
    """
    if runs.empty:
        return attach_workers(runs, pd.DataFrame(columns=["message"]))
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
        LogFilterName,
    )

    from energy_flows.orchestration._common import client

    ids = [str(run_id) for run_id in runs["id"]]
    log_filter = LogFilter(
        flow_run_id=LogFilterFlowRunId(any_=ids),
        name=LogFilterName(any_=["prefect.flow_runs.worker"]),
    )
    logs: list[Any] = []
    flow_runs: list[Any] = []
    with client() as c:
        # The API returns at most 200 rows a call: read page by page.
        while True:
            page = c.read_logs(log_filter=log_filter, limit=200, offset=len(logs))
            logs.extend(page)
            if len(page) < 200:
                break
        for first in range(0, len(ids), 200):
            flow_runs += c.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[first : first + 200])),
                limit=200,
            )
    frame = pd.DataFrame(
        {
            "flow_run_id": [str(log.flow_run_id) for log in logs],
            "message": [log.message for log in logs],
        }
    )
    with_workers = attach_workers(runs, frame)
    # Runs tables show whole seconds; a lesson's runs last about a second, so
    # the timeline needs the exact times to show which runs overlapped.
    exact = {str(r.id): (r.start_time, r.end_time) for r in flow_runs}
    for column, index in (("started", 0), ("ended", 1)):
        if column in with_workers.columns:
            values = [
                exact[str(i)][index] if str(i) in exact else old
                for i, old in zip(with_workers["id"], with_workers[column], strict=True)
            ]
            with_workers[column] = pd.to_datetime(
                pd.Series(values, index=with_workers.index, dtype=object), utc=True
            )
    return with_workers


def style_runs(runs: pd.DataFrame) -> Any:
    """A pandas Styler of a runs table with Late rows highlighted in orange."""

    def highlight(row: pd.Series) -> list[str]:
        late = str(row.get("state", "")) == "Late"
        return ["background-color: #fde0c5" if late else "" for _ in row]

    return runs.style.apply(highlight, axis=1)


# --------------------------------------------------------------------------- figures


def _finish(fig: Figure) -> Figure:
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_run_timeline(
    runs: pd.DataFrame,
    by: str = "worker",
    *,
    now: Any = None,
    title: str | None = None,
    show_waiting: bool = True,
) -> Figure:
    """Draw flow runs as bars on a time axis, one row per worker (or per ``by`` value).

    ``runs`` has the columns of :func:`energy_flows.orchestration.queue_runs`
    (``name``, ``state``, ``started``, ``ended``, ``scheduled``) and, for
    ``by="worker"``, a ``worker`` column (see :func:`runs_with_workers`).
    ``by`` may name any other column (``"deployment"``, ``"queue"``) or be
    ``"lane"`` to put all runs on lanes of one queue.

    Each bar runs from the run's start to its end (or to ``now`` while it is
    running). Runs that overlap inside one row are spread over extra rows
    ("worker-1 #2"), so the number of rows of a worker is the most runs it had
    in flight at once: a queue's concurrency limit becomes visible. With
    ``show_waiting``, runs that have not started yet appear in a hatched
    "waiting in queue" row from their scheduled time to ``now``: that is their
    lateness.
    """
    now_ts = _now_utc(now)
    frame = runs.copy()
    for column in ("started", "ended", "scheduled"):
        frame[column] = _utc(frame[column]) if column in frame else pd.NaT
    if by != "lane" and by not in frame:
        raise ValueError(
            f"plot_run_timeline(by={by!r}) needs a {by!r} column; the table has "
            f"{list(frame.columns)}. For workers, add it with runs_with_workers(runs)."
        )
    group = pd.Series("all runs", index=frame.index) if by == "lane" else frame[by]
    frame["row_group"] = group.fillna("(unknown)").astype(str)

    started = frame[frame["started"].notna()].copy()
    started["end"] = started["ended"].fillna(now_ts)
    started.loc[started["end"] < started["started"], "end"] = started["started"]
    waiting = frame[frame["started"].isna() & frame["scheduled"].notna()].copy()
    waiting = waiting[waiting["scheduled"] <= now_ts]

    rows: list[str] = []
    bars: list[tuple[str, pd.Timestamp, pd.Timestamp, str, str]] = []
    for group_name, part in started.groupby("row_group", sort=True):
        lanes = assign_lanes(part["started"], part["end"])
        label_base = "lane" if by == "lane" else str(group_name)
        for lane, (_, run) in zip(lanes, part.iterrows(), strict=True):
            if by == "lane":
                label = f"{label_base} {lane + 1}"
            else:
                label = label_base if lane == 0 else f"{label_base} #{lane + 1}"
            if label not in rows:
                rows.append(label)
            bars.append((label, run["started"], run["end"], str(run["state"]), str(run["name"])))
    if by == "lane":
        rows.sort(key=lambda label: int(label.split()[-1]))
    if show_waiting and not waiting.empty:
        rows.insert(0, _WAITING_ROW)

    height = 1.2 + 0.45 * max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(9, height))
    position = {label: len(rows) - 1 - i for i, label in enumerate(rows)}
    # Names go inside bars wide enough to hold them (a tenth of the time shown).
    span_s = 0.0
    if bars:
        first = min(b[1] for b in bars)
        last = max(b[2] for b in bars)
        span_s = max((last - first).total_seconds(), 1.0)
    for label, start, end, state, name in bars:
        width = max((end - start).total_seconds(), 0.2) / 86400
        ax.barh(
            position[label],
            width,
            left=start.tz_convert(None),
            height=0.7,
            color=state_colour(state),
            edgecolor="white",
        )
        if len(bars) <= 20 and (end - start).total_seconds() >= span_s / 10:
            ax.text(
                start.tz_convert(None) + (end - start) / 2,
                position[label],
                name,
                ha="center",
                va="center",
                fontsize=7,
                color="white",
                clip_on=True,
            )
    if show_waiting:
        for _, run in waiting.iterrows():
            width = max((now_ts - run["scheduled"]).total_seconds(), 0.2) / 86400
            ax.barh(
                position[_WAITING_ROW],
                width,
                left=run["scheduled"].tz_convert(None),
                height=0.5,
                color="none",
                edgecolor=state_colour(str(run["state"])),
                hatch="///",
            )
    ax.set_yticks(list(position.values()), list(position.keys()))
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ax.set_xlabel("time (UTC)")
    ax.xaxis_date()
    if not bars and waiting.empty:
        ax.text(0.5, 0.5, "no runs yet", transform=ax.transAxes, ha="center", va="center")
    states = sorted({state for *_, state, _ in bars} | set(waiting.get("state", [])))
    handles = [Patch(color=state_colour(s), label=s) for s in states]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(title or f"Flow runs by {by}")
    ax.grid(axis="x", alpha=0.3)
    # Runs of a lesson last seconds: a concise formatter shows sub-second ticks
    # as "07.5" instead of the same "21:16:07" under every tick.
    locator = mdates.AutoDateLocator(minticks=4, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.margins(x=0.03)
    return _finish(fig)


def _forecast_frame(result: Any) -> pd.DataFrame:
    frame = getattr(result, "forecast", result)
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            "plot_forecast needs a pipeline result (with .forecast) or a DataFrame, "
            f"not {type(result).__name__}."
        )
    return frame


def _pick(frame: pd.DataFrame, *words: str) -> str | None:
    for word in words:
        for column in frame.columns:
            if word in str(column).lower():
                return str(column)
    return None


def plot_forecast(
    result: Any,
    *,
    actual: str | None = None,
    predicted: str | None = None,
    days: float | None = 7,
    title: str | None = None,
) -> Figure:
    """Plot actual against predicted energy use, then the forecast ahead, shaded.

    ``result`` is what :func:`energy_flows.energy_usage_pipeline` returns: its
    ``.forecast`` (the test hours: ``kwh_actual`` and ``kwh_predicted``) is
    drawn as two lines, and its ``.next_hours`` (the forecast after the last
    reading, when present) as a dashed line on a shaded span: the horizon.
    A DataFrame with a DatetimeIndex works too. Columns are found by name
    (``...actual...``, ``...predict...``) unless given. ``days`` keeps only the
    last days of the test period readable (``None`` shows all of it).
    """
    frame = _forecast_frame(result)
    actual = actual or _pick(frame, "actual", "observed")
    predicted = predicted or _pick(frame, "predict", "forecast", "yhat")
    if actual is None or predicted is None or actual == predicted:
        raise ValueError(
            "plot_forecast could not tell the actual and predicted columns apart in "
            f"{list(frame.columns)}; pass actual=... and predicted=..."
        )
    if days is not None and len(frame) and isinstance(frame.index, pd.DatetimeIndex):
        frame = frame[frame.index > frame.index.max() - pd.Timedelta(days=days)]
    ahead = getattr(result, "next_hours", None)
    if isinstance(ahead, pd.Series):
        ahead = ahead.to_frame()
    fig, ax = plt.subplots(figsize=(9, 3.5))
    unit = " (kWh)" if "kwh" in actual.lower() else ""
    ax.plot(frame.index, frame[actual], label="actual", color="#424242", linewidth=1.0)
    ax.plot(frame.index, frame[predicted], label="predicted", color="#1e88e5", linewidth=1.3)
    if isinstance(ahead, pd.DataFrame) and not ahead.empty:
        column = _pick(ahead, "predict", "forecast", "kwh") or ahead.columns[0]
        ax.plot(ahead.index, ahead[column], "--", color="#1e88e5", linewidth=1.5, label="ahead")
        ax.axvspan(
            ahead.index.min(), ahead.index.max(), color="#1e88e5", alpha=0.1, label="horizon"
        )
    elif len(frame):
        ax.axvspan(frame.index.min(), frame.index.max(), color="#1e88e5", alpha=0.05)
    ax.set_ylabel(f"energy{unit}")
    meter = getattr(result, "meter_id", None)
    ax.set_title(title or ("Forecast vs actual" + (f", {meter}" if meter else "")))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _finish(fig)


def plot_queue_counts(
    history: pd.DataFrame,
    *,
    states: Iterable[str] = ("scheduled", "late", "pending", "running", "completed", "failed"),
    title: str | None = None,
) -> Figure:
    """Plot how many runs each queue held in each state, over time.

    ``history`` is :attr:`energy_flows.widgets.QueueMonitor.history`: one row
    per queue and refresh, with a ``time`` column, a ``queue`` column and one
    count column per state. One panel per queue; Late is drawn thick, in
    orange, because it is the number to watch.
    """
    queues = list(dict.fromkeys(history["queue"])) if not history.empty else []
    fig, axes = plt.subplots(
        max(len(queues), 1), 1, figsize=(9, 2.6 * max(len(queues), 1)), sharex=True, squeeze=False
    )
    if not queues:
        axes[0][0].text(0.5, 0.5, "no refreshes yet", ha="center", va="center")
    for ax, queue in zip(axes[:, 0], queues, strict=False):
        part = history[history["queue"] == queue].sort_values("time")
        times = _utc(part["time"]).dt.tz_convert(None)
        for state in states:
            if state not in part:
                continue
            ax.step(
                times,
                part[state].to_numpy(),
                where="post",
                label=state.capitalize(),
                color=state_colour(state.capitalize()),
                linewidth=2.5 if state == "late" else 1.3,
            )
        ax.set_ylabel("runs")
        ax.set_title(f"queue {queue}", fontsize=10)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        ax.grid(alpha=0.3)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    axes[-1][0].set_xlabel("time (UTC)")
    fig.suptitle(title or "Runs per state over time")
    fig.autofmt_xdate()
    return _finish(fig)
