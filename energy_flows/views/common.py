"""What the figures share: UTC times, a clock-time axis, and closing a figure before it is shown."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib import dates as mdates
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["as_utc", "clock_axis", "finish", "utc_now"]

#: Tick spacings a clock axis may use, in seconds: each divides the next unit evenly.
_SECOND_STEPS = (1, 2, 5, 10, 15, 30)
_MINUTE_STEPS = (1, 2, 5, 10, 15, 30)
_HOUR_STEPS = (1, 2, 3, 6, 12)
#: The narrowest time a clock axis shows: wide enough for a tick at a whole second or two.
MIN_SPAN_S = 4.0


def as_utc(values: Any) -> pd.Series:
    """Timestamps as tz-aware UTC (naive values are taken to be UTC; bad ones become NaT)."""
    series = pd.to_datetime(pd.Series(values), errors="coerce")
    if series.dt.tz is None:
        return series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC")


def utc_now(now: Any = None) -> pd.Timestamp:
    """``now`` as a UTC Timestamp (the current time when None)."""
    stamp = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _clock_locator(span_s: float, max_ticks: int) -> mdates.DateLocator | None:
    """Ticks at whole seconds, minutes or hours, at most ``max_ticks`` of them over ``span_s``."""
    for step in _SECOND_STEPS:
        if span_s / step <= max_ticks:
            return mdates.SecondLocator(bysecond=range(0, 60, step))
    for step in _MINUTE_STEPS:
        if span_s / (60 * step) <= max_ticks:
            return mdates.MinuteLocator(byminute=range(0, 60, step))
    for step in _HOUR_STEPS:
        if span_s / (3600 * step) <= max_ticks:
            return mdates.HourLocator(byhour=range(0, 24, step))
    return None


def clock_axis(ax: Axes, *, max_ticks: int = 8) -> None:
    """Label the x axis of dates with clock times, ``HH:MM:SS``, at whole seconds or more.

    A lesson's runs last a second or two: matplotlib's own date ticks would
    then fall between seconds and read "10.1, 10.2". Here the axis is widened
    to at least :data:`MIN_SPAN_S` seconds and ticks sit at whole seconds,
    minutes or hours, whichever gives at most ``max_ticks`` of them. Call it
    after the data is drawn. Spans of days keep dates in their labels.
    """
    left, right = ax.get_xlim()
    span_s = (right - left) * 86400
    if span_s < MIN_SPAN_S:
        middle = (left + right) / 2
        half = MIN_SPAN_S / 2 / 86400
        ax.set_xlim(middle - half, middle + half)
        span_s = MIN_SPAN_S
    locator = _clock_locator(span_s, max_ticks)
    if locator is None:
        locator = mdates.AutoDateLocator(minticks=3, maxticks=max_ticks)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %H:%M"))
    else:
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.xaxis.set_major_locator(locator)


def finish(fig: Figure) -> Figure:
    """Lay the figure out and close it, so a notebook shows it once: as the cell's value."""
    fig.tight_layout()
    plt.close(fig)
    return fig
