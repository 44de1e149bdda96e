"""Figures of what a flow computed and how a queue filled, and a runs table with Late marked.

* :func:`plot_forecast`: actual vs predicted energy use of one pipeline run,
  with the forecast horizon shaded.
* :func:`plot_queue_counts`: how many runs sat in each state over time, from
  :attr:`energy_flows.widgets.QueueMonitor.history`.
* :func:`style_runs`: a runs table with Late rows highlighted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from energy_flows.views.common import as_utc, clock_axis, finish
from energy_flows.vocabulary import COUNT_COLUMNS, LATE_BACKGROUND, state_colour

__all__ = [
    "ACTUAL_COLOUR",
    "LATE_BACKGROUND",
    "PREDICTED_COLOUR",
    "QUEUE_COUNT_STATES",
    "plot_forecast",
    "plot_queue_counts",
    "style_runs",
]

#: The colours of :func:`plot_forecast`: what the meter read, and what the model predicted.
ACTUAL_COLOUR = "#424242"
PREDICTED_COLOUR = "#1e88e5"
#: The states :func:`plot_queue_counts` draws: all but Crashed and Cancelled, rare in a lesson.
QUEUE_COUNT_STATES = tuple(c for c in COUNT_COLUMNS if c not in ("crashed", "cancelled"))


def style_runs(runs: pd.DataFrame) -> Any:
    """A pandas Styler of a runs table with Late rows highlighted in orange."""

    def highlight(row: pd.Series) -> list[str]:
        late = str(row.get("state", "")) == "Late"
        return [f"background-color: {LATE_BACKGROUND}" if late else "" for _ in row]

    return runs.style.apply(highlight, axis=1)


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
    ax.plot(frame.index, frame[actual], label="actual", color=ACTUAL_COLOUR, linewidth=1.0)
    ax.plot(frame.index, frame[predicted], label="predicted", color=PREDICTED_COLOUR, linewidth=1.3)
    if isinstance(ahead, pd.DataFrame) and not ahead.empty:
        column = _pick(ahead, "predict", "forecast", "kwh") or ahead.columns[0]
        ax.plot(
            ahead.index, ahead[column], "--", color=PREDICTED_COLOUR, linewidth=1.5, label="ahead"
        )
        ax.axvspan(
            ahead.index.min(), ahead.index.max(), color=PREDICTED_COLOUR, alpha=0.1, label="horizon"
        )
    elif len(frame):
        ax.axvspan(frame.index.min(), frame.index.max(), color=PREDICTED_COLOUR, alpha=0.05)
    ax.set_ylabel(f"energy{unit}")
    meter = getattr(result, "meter_id", None)
    ax.set_title(title or ("Forecast vs actual" + (f", {meter}" if meter else "")))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return finish(fig)


def plot_queue_counts(
    history: pd.DataFrame,
    *,
    states: Iterable[str] = QUEUE_COUNT_STATES,
    title: str | None = None,
) -> Figure:
    """Plot how many runs each queue held in each state, over time.

    ``history`` is :attr:`energy_flows.widgets.QueueMonitor.history`: one row
    per queue and refresh, with a ``time`` column, a ``queue`` column and one
    count column per state. Each queue gets two panels on one time axis: Late
    alone on top, thick and orange, on its own scale, because it is the number
    to watch and a schedule's stock of future runs (dozens of Scheduled runs)
    would flatten one or two Late runs to the bottom of a shared axis; below,
    every other state.
    """
    queues = list(dict.fromkeys(history["queue"])) if not history.empty else []
    states = list(states)
    rows = max(len(queues), 1)
    fig, axes = plt.subplots(
        2 * rows,
        1,
        figsize=(9, 3.4 * rows),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [1, 2] * rows},
    )
    if not queues:
        axes[0][0].text(0.5, 0.5, "no refreshes yet", ha="center", va="center")
        axes[1][0].set_visible(False)
    for i, queue in enumerate(queues):
        part = history[history["queue"] == queue].sort_values("time")
        times = as_utc(part["time"]).dt.tz_convert(None)
        late_ax, others_ax = axes[2 * i][0], axes[2 * i + 1][0]
        _draw_counts(late_ax, times, part, [s for s in states if s == "late"])
        _draw_counts(others_ax, times, part, [s for s in states if s != "late"])
        # Never a flat line at the top: whole runs, with room for one more.
        late = pd.to_numeric(part.get("late", pd.Series([0])), errors="coerce").fillna(0)
        late_ax.set_ylim(0, max(1, int(late.max())) + 0.5)
        late_ax.set_ylabel("Late runs")
        late_ax.set_title(f"queue {queue}: Late runs (their own scale)", fontsize=10)
        others_ax.set_ylabel("runs")
        others_ax.set_title(f"queue {queue}: runs per state", fontsize=10)
    if queues:
        clock_axis(axes[-1][0])  # the panels share their x axis, and so its ticks
    axes[-1][0].set_xlabel("clock time (UTC)")
    fig.suptitle(title or "Runs per state over time")
    fig.autofmt_xdate()
    return finish(fig)


def _draw_counts(ax: Any, times: pd.Series, part: pd.DataFrame, states: list[str]) -> None:
    """Step lines of the count columns ``states`` of one queue's history on ``ax``."""
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
    if ax.get_lines():
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(alpha=0.3)
    ax.yaxis.get_major_locator().set_params(integer=True)
