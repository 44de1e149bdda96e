"""Checking and cleaning raw readings: what is wrong with them, and a regular hourly grid.

:func:`validate_readings` reports the problems of raw readings (gaps,
duplicated hours around the daylight saving changes, zeros that are really
missing, spikes, a wrong unit) as a table; :func:`clean_readings` turns raw
readings into a regular hourly grid the forecasting step can trust.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from energy_flows.errors import DataError

__all__ = [
    "MAX_FILL_HOURS",
    "MAX_PLAUSIBLE_KWH",
    "check_readings",
    "clean_readings",
    "validate_readings",
]

#: A household with a 36 kVA connection (the largest residential one in
#: France) cannot use more than 36 kWh in an hour: anything above is a glitch.
MAX_PLAUSIBLE_KWH = 36.0

#: Gaps up to this many hours are filled by interpolation when cleaning;
#: longer outages stay missing (inventing days of data would fool the model).
MAX_FILL_HOURS = 3


def check_readings(df: object) -> pd.DataFrame:
    """Raise a :class:`DataError` that says what was expected, or return ``df``."""
    expected = (
        "Expected a DataFrame with a DatetimeIndex of hourly timestamps and a numeric 'kwh' "
        "column, e.g. the output of simulate_meter() or load_meter_csv()."
    )
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"Got a {type(df).__name__}. {expected}")
    if df.empty:
        raise DataError(f"The readings are empty (no rows). {expected}")
    if "kwh" not in df.columns:
        raise DataError(f"No 'kwh' column; the columns are {list(df.columns)}. {expected}")
    if not isinstance(df.index, pd.DatetimeIndex):
        hint = " Try df.set_index('timestamp')." if "timestamp" in df.columns else ""
        raise DataError(f"The index is a {type(df.index).__name__}, not dates.{hint} {expected}")
    if not (pd.api.types.is_numeric_dtype(df["kwh"]) and not pd.api.types.is_bool_dtype(df["kwh"])):
        raise DataError(
            f"The 'kwh' column holds {df['kwh'].dtype} values, not numbers (first: "
            f"{df['kwh'].iloc[0]!r}). Convert it with pd.to_numeric. {expected}"
        )
    if df["kwh"].isna().all():
        raise DataError(f"Every 'kwh' reading is missing ({len(df)} rows, all NaN). {expected}")
    return df


#: One row of :func:`validate_readings`: check, status, hours, detail.
Row = tuple[str, str, int, str]


@dataclass(frozen=True)
class _Readings:
    """What the checks of :func:`validate_readings` look at."""

    kwh: pd.Series
    index: pd.DatetimeIndex
    grid: pd.DatetimeIndex  # every hour from the first reading to the last
    max_kwh: float
    temperature: pd.Series | None


def _counted(check: str, count: int, bad: str, fine: str, problem: str) -> Row:
    """A check that counts offending hours: ``ok`` with ``fine`` when none, else ``bad``."""
    return (check, "ok", 0, fine) if count == 0 else (check, bad, int(count), problem)


def _rows(r: _Readings) -> Row:
    first, last = r.index.min(), r.index.max()
    return ("rows", "ok", len(r.kwh), f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}")


def _in_order(r: _Readings) -> Row:
    unsorted = int((np.diff(r.index.asi8) < 0).sum())
    problem = f"{unsorted} steps go back in time; sort the index"
    return _counted("timestamps in order", unsorted, "warning", "sorted", problem)


def _duplicated(r: _Readings) -> Row:
    twice = r.index[r.index.duplicated()]
    problem = (
        "e.g. "
        + ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in twice[:3])
        + " (the autumn daylight saving change writes 02:00 twice); "
        "clean_readings averages each duplicated hour"
    )
    return _counted("duplicated timestamps", len(twice), "warning", "none", problem)


def _on_the_hour(r: _Readings) -> Row:
    off_grid = int((r.index != r.index.floor("h")).sum())
    problem = "some readings are not at the start of an hour"
    return _counted("timestamps on the hour", off_grid, "warning", "all on the hour", problem)


def _missing(r: _Readings) -> Row:
    absent = int((~r.grid.isin(r.index.floor("h"))).sum())
    empty = int(r.kwh.isna().sum())
    share = 100 * (absent + empty) / max(len(r.grid), 1)
    detail = (
        f"{absent} hours absent from the index, {empty} readings empty "
        f"({share:.2f} % of {len(r.grid)} hours)"
    )
    return ("missing hours", "ok" if absent + empty == 0 else "warning", absent + empty, detail)


def _longest_gap(r: _Readings) -> Row:
    full = pd.Series(r.kwh.notna().to_numpy(), index=r.index)
    full = full[~full.index.duplicated()].reindex(r.grid, fill_value=False)
    runs = (~full).astype(int).groupby(full.cumsum()).sum()
    longest = int(runs.max()) if len(runs) else 0
    too_long = longest > MAX_FILL_HOURS
    detail = f"{longest} hours in a row without a reading" + (
        f" (longer than {MAX_FILL_HOURS} h: not filled)" if too_long else ""
    )
    return ("longest gap", "warning" if too_long else "ok", longest, detail)


def _negative(r: _Readings) -> Row:
    problem = "a consumption meter cannot go below zero"
    return _counted("negative values", int((r.kwh < 0).sum()), "error", "none", problem)


def _zeros(r: _Readings) -> Row:
    problem = "a home always uses some energy: probably missing readings"
    return _counted("exact zeros", int((r.kwh == 0).sum()), "warning", "none", problem)


def _implausible(r: _Readings) -> Row:
    limit = f"{r.max_kwh:g} kWh in an hour"
    problem = f"above {limit} (max {r.kwh.max():.1f}): meter glitches"
    count = int((r.kwh > r.max_kwh).sum())
    return _counted("implausible values", count, "error", f"none above {limit}", problem)


def _unit(r: _Readings) -> Row:
    median = float(r.kwh[r.kwh > 0].median()) if (r.kwh > 0).any() else 0.0
    if median > 50:
        return (
            "unit",
            "error",
            len(r.kwh),
            f"median {median:.0f} per hour: looks like Wh, not kWh",
        )
    if 0 < median < 0.01:
        return (
            "unit",
            "error",
            len(r.kwh),
            f"median {median:.4f} per hour: looks like MWh, not kWh",
        )
    return ("unit", "ok", 0, f"median {median:.2f} kWh per hour: plausible for a home")


def _temperature(r: _Readings) -> Row | None:
    if r.temperature is None:
        return None
    temp = r.temperature
    odd = int(((temp < -50) | (temp > 55)).sum())
    return (
        "temperature range",
        "ok" if odd == 0 else "warning",
        odd,
        f"{temp.min():.1f} to {temp.max():.1f} °C",
    )


#: The checks of :func:`validate_readings`, in the order of its rows.
_CHECKS: tuple[Callable[[_Readings], Row | None], ...] = (
    _rows,
    _in_order,
    _duplicated,
    _on_the_hour,
    _missing,
    _longest_gap,
    _negative,
    _zeros,
    _implausible,
    _unit,
    _temperature,
)


def validate_readings(df: pd.DataFrame, max_kwh: float = MAX_PLAUSIBLE_KWH) -> pd.DataFrame:
    """Check raw readings and report what a cleaning step will have to fix.

    Returns one row per check with its ``status`` (``ok``, ``warning`` or
    ``error``), how many hours it concerns and a ``detail`` a learner can act
    on. The report is data: filter it, show it, or stop a pipeline on errors
    (``(report.status == "error").any()``).

    Raises :class:`~energy_flows.errors.DataError` when the input cannot be
    checked at all: not a DataFrame, empty, no ``kwh`` column, no
    DatetimeIndex, non-numeric values, or nothing but missing values.
    """
    check_readings(df)
    index = df.index
    grid = pd.date_range(index.min().floor("h"), index.max().floor("h"), freq="h")
    temperature = None
    if "temperature_c" in df.columns:
        temperature = pd.to_numeric(df["temperature_c"], errors="coerce")
    readings = _Readings(df["kwh"].astype(float), index, grid, max_kwh, temperature)
    rows = [row for check in _CHECKS if (row := check(readings)) is not None]
    return pd.DataFrame(rows, columns=["check", "status", "hours", "detail"]).set_index("check")


def clean_readings(
    df: pd.DataFrame,
    max_fill_hours: int = MAX_FILL_HOURS,
    max_kwh: float = MAX_PLAUSIBLE_KWH,
) -> pd.DataFrame:
    """Turn raw readings into a regular hourly grid a model can trust.

    In order:

    1. sort by time and put every reading at the start of its hour;
    2. mark as missing what cannot be true: exact zeros (a home always uses
       some energy), negative values, values above ``max_kwh``;
    3. merge duplicated hours into one by averaging their readings (a reading
       marked missing in step 2 does not count). The autumn daylight saving
       change writes the local hour 02:00 twice: each holds one real hour, so
       the mean is the energy of a typical hour. :func:`validate_readings`
       reports how many duplicates there were; here they are merged on
       purpose, so that every hour appears once;
    4. put the readings on a complete hourly grid (the hour the spring change
       skips becomes an ordinary one-hour gap);
    5. fill gaps up to ``max_fill_hours`` by linear interpolation, leave longer
       outages missing (inventing days would fool the model).

    Returns ``kwh`` (and ``temperature_c`` if given, filled the same way) plus
    ``imputed``: True where ``kwh`` was filled in. The index stays naive local
    clock time, like the input, and holds every hour once.
    """
    check_readings(df)
    frame = df.sort_index(kind="stable")
    frame.index = frame.index.floor("h")
    numeric = [c for c in ("kwh", "temperature_c") if c in frame.columns]
    frame = frame[numeric].astype(float)
    kwh = frame["kwh"]
    frame["kwh"] = kwh.where((kwh > 0) & (kwh <= max_kwh))
    if frame["kwh"].isna().all():
        raise DataError(
            f"No usable reading is left after cleaning: all {len(kwh)} readings are missing, "
            f"zero, negative or above {max_kwh:g} kWh. Check the unit and the value column."
        )
    # Duplicated hours: one row per hour, the mean of its usable readings.
    frame = frame.groupby(level=0).mean()
    grid = pd.date_range(frame.index.min(), frame.index.max(), freq="h", name="timestamp")
    frame = frame.reindex(grid)
    was_missing = frame["kwh"].isna()
    # Fill only gaps no longer than max_fill_hours: label each gap by its length.
    gap_id = (~was_missing).cumsum()
    gap_length = was_missing.groupby(gap_id).transform("sum")
    fillable = was_missing & (gap_length <= max_fill_hours)
    interpolated = frame["kwh"].interpolate(method="linear", limit_area="inside")
    frame["kwh"] = frame["kwh"].where(~fillable, interpolated)
    frame["imputed"] = was_missing & frame["kwh"].notna()
    if "temperature_c" in frame.columns:
        frame["temperature_c"] = frame["temperature_c"].interpolate(limit_area="inside")
    return frame
