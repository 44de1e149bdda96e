"""Meter readings: simulate them, load them, check them, clean them.

This is the *energy core*: numpy, pandas and the standard library only, no
Prefect and no Jupyter, so every function here runs (and is tested) in
milliseconds and can be read on its own.

The shape of the data, everywhere in the package
-------------------------------------------------
A table of *readings* is a :class:`pandas.DataFrame` with

* a :class:`~pandas.DatetimeIndex` named ``timestamp``: the **start of each
  hour in local clock time, without a time zone** (the way a household meter
  and the real UCI file label their hours);
* a float column ``kwh``: the energy used during that hour, ``NaN`` where the
  reading is missing;
* optionally ``temperature_c``: the outdoor temperature in degrees Celsius.

Raw readings may be irregular (gaps, duplicated hours around the daylight
saving changes, zeros that are really missing, spikes). :func:`validate_readings`
reports those problems; :func:`clean_readings` turns raw readings into a
regular hourly grid that the forecasting step can trust.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
import numbers
import os
import sys
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from energy_flows.errors import DataError

__all__ = [
    "MeterTraits",
    "clean_readings",
    "load_meter_csv",
    "load_readings",
    "load_uci_household",
    "meter_statistics",
    "meter_traits",
    "simulate_meter",
    "validate_readings",
]

#: A household with a 36 kVA connection (the largest residential one in
#: France) cannot use more than 36 kWh in an hour: anything above is a glitch.
MAX_PLAUSIBLE_KWH = 36.0

#: Gaps up to this many hours are filled by interpolation when cleaning;
#: longer outages stay missing (inventing days of data would fool the model).
MAX_FILL_HOURS = 3

# --------------------------------------------------------------------------
# Calibration: hourly profiles of the real household (the UCI data set named
# in the README's "Data and citation"): the ratio of each hour to the day's
# mean, hours 0..23.
_WEEKDAY_PROFILE = np.array(
    [0.55, 0.45, 0.42, 0.40, 0.41, 0.42, 0.85, 1.66, 1.53, 1.32, 1.18, 1.12,
     1.07, 0.98, 0.88, 0.81, 0.78, 0.86, 1.10, 1.55, 1.78, 1.79, 1.32, 0.78]
)  # fmt: skip
_WEEKEND_PROFILE = np.array(
    [0.72, 0.58, 0.48, 0.43, 0.40, 0.42, 0.47, 0.78, 0.94, 1.01, 1.11, 1.19,
     1.18, 1.20, 1.23, 1.11, 1.07, 1.21, 1.45, 1.66, 1.66, 1.57, 1.23, 0.92]
)  # fmt: skip


@dataclass(frozen=True)
class MeterTraits:
    """What makes one simulated household different from another.

    Drawn from the meter id (see :func:`meter_traits`), so ``"home-001"`` is
    the same household in every run and on every machine.
    """

    #: Mean use in kWh per hour of the non-heating part (the real household: ~0.85).
    level_kwh: float
    #: Hours by which the household's routine is later (+) or earlier (-).
    routine_shift_h: float
    #: How pronounced the morning and evening peaks are (1 = the real household).
    peakiness: float
    #: Weekend days use this many times a weekday (the real household: 1.19).
    weekend_ratio: float
    #: Extra kWh per hour for each degree below 15.5 °C (electric heating).
    heating_kwh_per_degree: float
    #: Day of the year the summer holiday starts, and its length in days.
    holiday_start_doy: int
    holiday_days: int
    #: (day of week, hour) of the weekly chores (laundry, big cooking): the
    #: habits that make this hour last week a good guess.
    chores: tuple[tuple[int, int], ...]


def _stable_int(text: str) -> int:
    """A hash of ``text`` that is the same in every process (unlike ``hash``)."""
    return zlib.crc32(text.encode("utf-8"))


def meter_traits(meter_id: str) -> MeterTraits:
    """The household behind ``meter_id``: level, habits and heating.

    The traits vary around the real household of the UCI data set, so every
    simulated meter looks plausible and no two look the same.
    """
    rng = np.random.default_rng([_stable_int(meter_id), 20240101])
    n_chores = int(rng.integers(2, 5))
    chores = tuple(
        (int(d), int(h))
        for d, h in zip(rng.integers(0, 7, n_chores), rng.integers(8, 21, n_chores), strict=True)
    )
    return MeterTraits(
        level_kwh=float(0.80 * np.exp(rng.normal(0.0, 0.25))),
        routine_shift_h=float(rng.uniform(-1.0, 1.0)),
        peakiness=float(rng.uniform(0.85, 1.15)),
        weekend_ratio=float(1.19 * np.exp(rng.normal(0.0, 0.05))),
        heating_kwh_per_degree=float(0.045 * np.exp(rng.normal(0.0, 0.2))),
        holiday_start_doy=int(rng.integers(205, 225)),
        holiday_days=int(rng.integers(10, 22)),
        chores=chores,
    )


def _shifted_profile(profile: np.ndarray, shift_h: float, peakiness: float) -> np.ndarray:
    """The 24-hour profile moved later by ``shift_h`` hours (circularly), peaks scaled."""
    hours = np.arange(24)
    extended = np.concatenate([profile, profile[:1]])
    source = (hours - shift_h) % 24
    moved = np.interp(source, np.arange(25), extended)
    moved = 1.0 + peakiness * (moved - 1.0)
    return moved / moved.mean()


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """Autocorrelated noise x[t] = phi * x[t-1] + e[t] with stationary sd ``sd``.

    Vectorised with pandas' exponentially weighted mean, which is exactly
    this recursion: y[t] = (1 - alpha) * y[t-1] + alpha * x[t] with alpha = 1 - phi.
    """
    innovations = rng.normal(0.0, sd * np.sqrt(1.0 - phi**2), n)
    innovations[0] = rng.normal(0.0, sd)
    scaled = innovations / (1.0 - phi)
    scaled[0] = innovations[0]
    return pd.Series(scaled).ewm(alpha=1.0 - phi, adjust=False).mean().to_numpy()


def _hours_local(start: pd.Timestamp, n_hours: int, tz: str | None) -> pd.DatetimeIndex:
    """The local-clock labels a meter writes for ``n_hours`` consecutive hours.

    With a time zone the meter follows the daylight saving clock: in spring
    the label 02:00 never appears, in autumn 02:00 appears twice.
    """
    if tz is None:
        return pd.date_range(start, periods=n_hours, freq="h", name="timestamp")
    first = start.tz_localize(tz, ambiguous=True, nonexistent="shift_forward")
    utc = pd.date_range(first.tz_convert("UTC"), periods=n_hours, freq="h")
    return pd.DatetimeIndex(utc.tz_convert(tz).tz_localize(None), name="timestamp")


# --------------------------------------------------------------------------
# Checking arguments: one sentence that names the argument, what was given,
# and a value that works.


def _prefix(where: str) -> str:
    """``"simulate_meter: "``: which function speaks, when it helps to say so."""
    return f"{where}: " if where else ""


def _given(value: object) -> str:
    """How an argument appears in an error: its repr and its type."""
    return f"{value!r} of type {type(value).__name__}"


def _whole_number(
    value: object,
    name: str,
    *,
    where: str,
    example: str,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """``value`` as an ``int``, or a :class:`DataError` naming ``name`` and a valid ``example``.

    Accepts Python and numpy integers and floats without a fraction (``7.0``);
    refuses booleans, text ("7"), NaN, infinity and fractions, which would
    otherwise be silently converted (or fail deep inside numpy).
    """
    number: int | None = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        number = int(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        if math.isfinite(float(value)) and float(value).is_integer():
            number = int(value)
    if number is None:
        raise DataError(
            f"{_prefix(where)}{name} must be a whole number, got {_given(value)}. Example: {example}."
        )
    if minimum is not None and number < minimum:
        raise DataError(
            f"{_prefix(where)}{name} must be at least {minimum}, got {number}. Example: {example}."
        )
    if maximum is not None and number > maximum:
        raise DataError(
            f"{_prefix(where)}{name} must be at most {maximum}, got {number}. Example: {example}."
        )
    return number


#: The resolution pandas gives a date written as text (microseconds in pandas 3).
_TEXT_DATE_UNIT = pd.Timestamp("2024-01-01").unit


def _date(value: object, name: str, *, where: str, example: str) -> pd.Timestamp:
    """``value`` as a naive :class:`~pandas.Timestamp`, or a :class:`DataError` saying why not.

    Takes text such as ``"2024-01-01"``, a ``datetime.date``/``datetime`` or a
    Timestamp. Numbers are refused: ``pd.Timestamp(2024)`` is 2024 nanoseconds
    after 1970, not the year 2024.
    """
    accepted = (str, dt.date, np.datetime64)
    stamp: pd.Timestamp | None = None
    if isinstance(value, accepted) and not (isinstance(value, str) and not value.strip()):
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            stamp = None
    if stamp is None or pd.isna(stamp):
        raise DataError(
            f"{_prefix(where)}{name} must be a date such as {example}, got {_given(value)}. "
            f"Write it as YYYY-MM-DD, e.g. {name}={example!r}."
        )
    # Dates and datetimes parse to other resolutions than text: one resolution
    # for all, so the index does not depend on how the date was spelled.
    stamp = stamp.as_unit(_TEXT_DATE_UNIT)
    if stamp.tzinfo is not None:
        raise DataError(
            f"{_prefix(where)}{name} must be local clock time without a time zone, got {stamp}. "
            f"Drop the zone (e.g. {name}={f'{stamp:%Y-%m-%d}'!r}); pass the zone as timezone=."
        )
    return stamp


def _flag(value: object, name: str, *, where: str) -> bool:
    """``value`` if it is True or False: the text "no" would otherwise count as True."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise DataError(
        f"{_prefix(where)}{name} must be True or False, got {_given(value)}. Example: {name}=False."
    )


def _timezone(value: object, *, where: str) -> str | None:
    """An IANA time zone name (or None), checked the way pandas will use it."""
    if value is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if isinstance(value, str) and value.strip():
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            pass
        else:
            return value
    raise DataError(
        f"{_prefix(where)}timezone must be an IANA time zone name, got {_given(value)}. "
        "Example: timezone='Europe/Paris' (or timezone='UTC')."
    )


#: The longest period, in days, simulate_meter makes and load_readings selects
#: (100 years; pandas dates end in 2262).
MAX_SIMULATED_DAYS = 36_525


def simulate_meter(
    meter_id: str = "home-001",
    start: str | pd.Timestamp = "2024-01-01",
    end: str | pd.Timestamp | None = None,
    *,
    days: int = 365,
    seed: int = 42,
    daylight_saving: bool = True,
    dropouts: bool = True,
    outages: bool = True,
    false_zeros: bool = True,
    spikes: bool = False,
    timezone: str = "Europe/Paris",
) -> pd.DataFrame:
    """Simulate the hourly readings of one household meter, defects included.

    Parameters
    ----------
    meter_id:
        Which household. The id fixes the household's traits (level, daily
        routine, weekend habits, electric heating, holidays): see
        :func:`meter_traits`.
    start, end:
        The period, as dates such as ``"2024-01-01"`` (``end`` excluded), local
        clock time without a time zone. Without ``end``, ``days`` days.
    days:
        The length of the period when there is no ``end``: a whole number
        from 1 to 36525 (100 years).
    seed:
        Fixes the randomness (weather, noise, defects): same seed, same data.
        A whole number ≥ 0.
    daylight_saving, dropouts, outages, false_zeros, spikes:
        Switch each defect on or off (``True`` or ``False``). A perfect meter is
        ``simulate_meter(daylight_saving=False, dropouts=False, outages=False,
        false_zeros=False)``.
    timezone:
        The IANA time zone whose daylight saving clock the meter follows
        (only used with ``daylight_saving=True``).

    Raises
    ------
    DataError
        When an argument cannot be used: the message names the argument, what
        was given, and a value that works (``days='7'`` says "days must be a
        whole number, got '7' of type str. Example: days=7.").

    Returns
    -------
    DataFrame
        Index ``timestamp`` (local clock, no time zone), columns ``kwh``
        (NaN where the reading is missing) and ``temperature_c``.

    How the numbers are made
    ------------------------
    ``kwh = routine x season x habits x noise + heating``, where the routine is
    the real household's weekday or weekend profile (moved and sharpened by
    the household's traits), the season adds winter lighting and a summer
    holiday, heating grows with each degree below 15.5 °C, and the noise is
    autocorrelated (a busy hour tends to follow a busy hour). The defects a
    cleaning step must handle are then written over the true values:

    * ``daylight_saving``: the meter writes local clock time, so the spring
      change skips 02:00 and the autumn change writes 02:00 twice;
    * ``dropouts``: about six short losses of 1-3 hours a year (radio glitches);
    * ``outages``: one or two long outages a year (12 hours to 5 days), as in the
      real household (8 outages of 1 to 119 hours in 4 years, 1.2 % of hours);
    * ``false_zeros``: some missing readings arrive as ``0.0`` instead of empty;
    * ``spikes`` (off by default): a few absurd values (meter glitches).
    """
    where = "simulate_meter"
    if not isinstance(meter_id, str):
        raise DataError(
            f"{_prefix(where)}meter_id must be text, got {_given(meter_id)}. Example: meter_id='home-001'."
        )
    start_ts = _date(start, "start", where=where, example="2024-01-01").normalize()
    if end is None:
        n_days = _whole_number(
            days, "days", where=where, example="days=7", minimum=1, maximum=MAX_SIMULATED_DAYS
        )
        end_ts = start_ts + pd.Timedelta(days=n_days)
    else:
        end_ts = _date(end, "end", where=where, example="2024-02-01")
    seed = _whole_number(seed, "seed", where=where, example="seed=42", minimum=0)
    flags = {
        "daylight_saving": daylight_saving,
        "dropouts": dropouts,
        "outages": outages,
        "false_zeros": false_zeros,
        "spikes": spikes,
    }
    for name, value in flags.items():
        _flag(value, name, where=where)
    clock_zone = _timezone(timezone, where=where)
    n_hours = int((end_ts - start_ts) / pd.Timedelta(hours=1))
    if n_hours < 1:
        raise DataError(
            f"simulate_meter needs a period of at least one hour; got start={start_ts} and "
            f"end={end_ts}. Give a later `end` or a positive `days`."
        )
    if n_hours > 24 * MAX_SIMULATED_DAYS:
        raise DataError(
            f"{_prefix(where)}the period from start={start_ts:%Y-%m-%d} to end={end_ts:%Y-%m-%d} is "
            f"longer than {MAX_SIMULATED_DAYS} days (100 years). Give an earlier end."
        )
    traits = meter_traits(meter_id)
    rng = np.random.default_rng([_stable_int(meter_id), seed])

    index = _hours_local(start_ts, n_hours, clock_zone if daylight_saving else None)
    # Human habits follow the wall clock: use the local labels.
    hour = index.hour.to_numpy()
    dow = index.day_of_week.to_numpy()
    doy = index.day_of_year.to_numpy()
    day_number = ((index - start_ts) // pd.Timedelta(days=1)).to_numpy()
    n_days = int(day_number.max()) + 1
    weekend = dow >= 5

    # Weather: Paris-like seasons, a daily cycle, and weather systems lasting days.
    season_cos = np.cos(2 * np.pi * (doy - 15) / 365.25)
    weather = _ar1(rng, n_days + 1, phi=0.8, sd=3.0)
    weather_hourly = np.interp(day_number + hour / 24.0, np.arange(n_days + 1), weather)
    temperature = (
        12.5 - 7.5 * season_cos + 4.0 * np.cos(2 * np.pi * (hour - 15) / 24) + weather_hourly
    )

    # Routine: the real household's profiles, moved and sharpened by the traits.
    weekday_shape = _shifted_profile(_WEEKDAY_PROFILE, traits.routine_shift_h, traits.peakiness)
    weekend_shape = _shifted_profile(
        _WEEKEND_PROFILE, traits.routine_shift_h + 0.5, traits.peakiness
    )
    shape = np.where(weekend, weekend_shape[hour], weekday_shape[hour])
    day_factor = np.where(weekend, traits.weekend_ratio, 1.0)
    # Winter evenings need light; in the summer holiday only the fridge runs.
    season = 1.0 + 0.12 * season_cos
    holiday = (doy >= traits.holiday_start_doy) & (
        doy < traits.holiday_start_doy + traits.holiday_days
    )
    season = np.where(holiday, 0.35, season)

    # Noise: a day-to-day mood (guests, home office) and hour-to-hour bursts.
    day_mood = _ar1(rng, n_days, phi=0.85, sd=0.28)[day_number]
    bursts = _ar1(rng, n_hours, phi=0.58, sd=0.56)
    noise = np.exp(day_mood + bursts - 0.5 * (0.28**2 + 0.56**2))

    expected = traits.level_kwh * shape * day_factor * season
    base = 0.15 * traits.level_kwh / 0.80  # fridge, standby: always on
    kwh = base + np.maximum(expected - base, 0.02) * noise

    # Weekly chores: a washing machine or oven at the same slot most weeks.
    # The slot moves by up to an hour from week to week.
    week = day_number // 7
    n_weeks = int(week.max()) + 1
    for chore_dow, chore_hour in traits.chores:
        begins = chore_hour + rng.integers(-1, 2, n_weeks)[week]
        slot = (dow == chore_dow) & (hour >= begins) & (hour < begins + 3)
        done = rng.random(n_weeks) < 0.85
        kwh = kwh + np.where(slot & done[week] & ~holiday, 1.0 * traits.level_kwh / 0.80, 0.0)

    # Heating follows a slowly reacting indoor need: smooth the temperature.
    felt = pd.Series(temperature).rolling(12, min_periods=1).mean().to_numpy()
    heating_shape = np.where((hour >= 6) & (hour <= 22), 1.3, 0.45)
    heating = traits.heating_kwh_per_degree * np.maximum(15.5 - felt, 0.0) * heating_shape
    kwh = kwh + heating * np.exp(0.5 * bursts - 0.125 * 0.56**2)
    kwh = np.round(kwh, 4)

    # ---- defects ----------------------------------------------------------
    missing = np.zeros(n_hours, dtype=bool)
    years = n_hours / 8766.0
    if outages:
        for _ in range(rng.poisson(1.5 * years)):
            length = int(np.clip(rng.lognormal(np.log(45), 0.6), 12, 120))
            first = int(rng.integers(0, n_hours))
            missing[first : first + length] = True
    if dropouts:
        for _ in range(rng.poisson(6.0 * years)):
            first = int(rng.integers(0, n_hours))
            missing[first : first + int(rng.integers(1, 4))] = True
    values = np.where(missing, np.nan, kwh)
    if false_zeros:
        zeros = rng.random(n_hours) < 0.001
        values = np.where(zeros, 0.0, values)
    if spikes:
        n_spikes = max(1, rng.poisson(3.0 * years))
        where = rng.integers(0, n_hours, n_spikes)
        values[where] = np.round(rng.uniform(60.0, 999.0, n_spikes), 1)

    return pd.DataFrame(
        {"kwh": values, "temperature_c": np.round(temperature, 1)},
        index=index,
    )


# --------------------------------------------------------------------------
# Loading real data

_ENERGY_UNITS = {"kwh": 1.0, "wh": 1e-3, "mwh": 1e3}
_POWER_UNITS = {"kw": 1.0, "w": 1e-3}


def _to_hourly_kwh(
    values: pd.Series, unit: str, temperature: pd.Series | None = None
) -> pd.DataFrame:
    """Readings of any interval and unit -> hourly kWh, with partial hours counted.

    Energy per interval is turned into mean power per hour (so an hour with
    only half of its readings is scaled up, not halved) and then into kWh.

    A timestamp that appears twice (the autumn clock change writes 02:00 twice)
    opens a second occurrence of its hour, which becomes a row of its own: the
    result keeps the duplicated hour, as the meter wrote it, for
    :func:`validate_readings` to report and :func:`clean_readings` to merge.
    ``temperature`` (same index as ``values``), if given, is averaged the same way.
    """
    unit_key = unit.lower().replace(" ", "") if isinstance(unit, str) else ""
    if unit_key not in _ENERGY_UNITS and unit_key not in _POWER_UNITS:
        raise DataError(
            f"Unknown unit {unit!r}. Use one of kwh, wh, mwh (energy per reading) or kw, w "
            "(mean power per reading)."
        )
    order = np.argsort(values.index.asi8, kind="stable")  # equal stamps keep the file's order
    values = values.iloc[order]
    steps = values.index.to_series().diff().dropna()
    step = steps[steps > pd.Timedelta(0)].median() if len(steps) else pd.Timedelta(hours=1)
    if pd.isna(step):
        step = pd.Timedelta(hours=1)
    step_h = step / pd.Timedelta(hours=1)
    if unit_key in _ENERGY_UNITS:
        mean_kw = values * _ENERGY_UNITS[unit_key] / step_h
    else:
        mean_kw = values * _POWER_UNITS[unit_key]
    # The n-th reading at a timestamp belongs to the n-th occurrence of its hour.
    keys = [values.index.floor("h"), values.groupby(level=0).cumcount().to_numpy()]
    grouped = mean_kw.groupby(keys)
    readings_per_hour = max(1, round(1.0 / step_h)) if step_h < 1 else 1
    out = pd.DataFrame(
        {
            "kwh": grouped.mean(),  # mean kW over the observed part x 1 h
            "readings_observed": grouped.count(),
        }
    )
    out["partial_hour"] = (out["readings_observed"] > 0) & (
        out["readings_observed"] < readings_per_hour
    )
    if temperature is not None:
        out["temperature_c"] = temperature.iloc[order].groupby(keys).mean()
    out.index = pd.DatetimeIndex(out.index.get_level_values(0), name="timestamp")
    return out


def _csv_example(timestamp_col: str, value_col: str, temperature_col: str | None, sep: str) -> str:
    """A three-line CSV file with the given column names: what a valid file looks like."""
    columns = [timestamp_col, value_col, *([temperature_col] if temperature_col else [])]
    rows = [["2024-01-01 00:00", "0.65", "3.1"], ["2024-01-01 01:00", "0.74", "2.8"]]
    lines = [sep.join(columns), *(sep.join(row[: len(columns)]) for row in rows)]
    return "\n".join(f"    {line}" for line in lines)


def _csv_files_in(folder: Path) -> list[str]:
    """The names of the CSV files directly inside ``folder``, sorted."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return sorted(
        p.name for p in entries if p.is_file() and p.name.lower().endswith((".csv", ".csv.gz"))
    )


def load_meter_csv(
    path: str | os.PathLike[str],
    timestamp_col: str = "timestamp",
    value_col: str = "kwh",
    unit: str = "kwh",
    *,
    temperature_col: str | None = None,
    sep: str = ",",
) -> pd.DataFrame:
    """Load a meter export from a CSV file, as hourly kWh readings.

    The file has a header line, then one line per reading::

        timestamp,kwh
        2024-01-01 00:00,0.65
        2024-01-01 01:00,0.74

    ``unit`` says what ``value_col`` holds: ``kwh``, ``wh`` or ``mwh`` (energy
    used during each reading's interval) or ``kw``, ``w`` (mean power during
    it). Readings finer than an hour (e.g. every 15 minutes) are summed into
    hours; an hour with some readings missing is scaled up and flagged in
    ``partial_hour``. Duplicated timestamps are kept as they are (the autumn
    clock change writes the hour 02:00 twice: the result has two 02:00 rows):
    that is for :func:`validate_readings` to report and :func:`clean_readings`
    to merge.

    Raises :class:`~energy_flows.errors.DataError` when the path is missing
    or a folder, or the file is empty, has no rows, lacks a column, or holds
    no dates or no numbers; the message says what to change.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"No file at {path}. Check the path (relative to {Path.cwd()}).")
    example = _csv_example(timestamp_col, value_col, temperature_col, sep)
    if path.is_dir():
        found = _csv_files_in(path)
        if found:
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            hint = (
                f"It holds these CSV files: {shown}. Pass one of them, e.g. "
                f"load_meter_csv({str(path / found[0])!r})."
            )
        else:
            hint = "It holds no .csv file. Pass the path of the CSV file itself, not its folder."
        raise DataError(f"{path} is a folder, not a CSV file. {hint}")
    try:
        raw = pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{path} is empty: not even a header line. A valid meter file looks like:\n{example}"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable CSV file ({exc}).") from exc
    except OSError as exc:
        raise DataError(
            f"{path} cannot be read ({exc.strerror or exc}). Check that it is a file you may "
            "read, or copy it somewhere you can."
        ) from exc
    if raw.empty:
        raise DataError(
            f"{path} has a header ({sep.join(map(str, raw.columns))}) but no rows: there is no "
            "reading to load. Add one line per reading under the header, like:\n" + example
        )
    missing = [c for c in (timestamp_col, value_col, temperature_col) if c and c not in raw]
    if missing:
        raise DataError(
            f"{path} has no column {missing}; its columns are {list(raw.columns)}. "
            "Pass timestamp_col=... and value_col=... with the names your file uses."
        )
    stamps = pd.to_datetime(raw[timestamp_col], format="ISO8601", errors="coerce")
    if stamps.isna().mean() > 0.5:  # not ISO 8601: let pandas guess each value
        stamps = pd.to_datetime(raw[timestamp_col], format="mixed", errors="coerce")
    if stamps.isna().all():
        raise DataError(
            f"Column {timestamp_col!r} of {path} holds no dates (first value: "
            f"{raw[timestamp_col].iloc[0]!r}). Expected timestamps such as 2024-01-01 13:00."
        )
    if getattr(stamps.dt, "tz", None) is not None:
        # Keep the convention of the package: local clock time, no time zone.
        stamps = stamps.dt.tz_localize(None)
    values = pd.to_numeric(raw[value_col], errors="coerce")
    if values.isna().all() and raw[value_col].notna().any():
        first = raw[value_col][raw[value_col].notna()].iloc[0]
        raise DataError(
            f"Column {value_col!r} of {path} holds no numbers (first value: {first!r}). "
            "Expected numbers with a decimal point, such as 0.65; if this is not the value "
            "column, pass value_col=... with the name of the one that is."
        )
    index = pd.DatetimeIndex(stamps, name="timestamp")
    dated = index.notna()
    values.index = index
    temperature = None
    if temperature_col:
        temperature = pd.to_numeric(raw[temperature_col], errors="coerce")
        temperature.index = index
        temperature = temperature[dated]
    return _to_hourly_kwh(values[dated], unit, temperature)


def _cache_path_for(url: str, cache_dir: Path | None) -> Path:
    if cache_dir is None:
        from energy_flows.settings import ensure_home

        cache_dir = ensure_home() / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:10]
    return cache_dir / f"{digest}-{name}"


def _download(url: str, target: Path, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``target`` once, with a text progress bar on stderr."""
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    _print_progress(target.name, done, total)
        if progress:
            sys.stderr.write("\n")
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"Could not download {url} ({exc}). Check the address and your network, or "
            "download the file yourself and pass its path."
        ) from exc
    partial.replace(target)
    return target


def _print_progress(name: str, done: int, total: int) -> None:
    width = 30
    if total:
        filled = int(width * done / total)
        bar = "#" * filled + "-" * (width - filled)
        text = f"\rdownloading {name} [{bar}] {done / 1e6:.1f}/{total / 1e6:.1f} MB"
    else:
        text = f"\rdownloading {name} {done / 1e6:.1f} MB"
    sys.stderr.write(text)
    sys.stderr.flush()


def _open_uci_text(path: Path) -> io.TextIOBase | Path:
    """The UCI file is distributed as a zip holding one .txt: read through it."""
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        names = [n for n in archive.namelist() if n.endswith((".txt", ".csv"))]
        if not names:
            raise DataError(f"The zip file {path} holds no .txt file; got {archive.namelist()}.")
        return io.TextIOWrapper(archive.open(names[0]), encoding="utf-8")
    return path


def load_uci_household(
    path_or_url: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Load the UCI "Individual household electric power consumption" data, as hourly kWh.

    The raw file (``household_power_consumption.txt``, or the ``.zip`` it is
    published in) has one line per minute::

        Date;Time;Global_active_power;Global_reactive_power;Voltage;...
        16/12/2006;17:24:00;4.216;0.418;234.840;...

    separated by ``;``, with ``?`` for a missing minute and the power in kW.
    Each hour's energy is the mean power over its observed minutes x 1 h;
    ``minutes_observed`` says how many minutes there were and ``partial_hour``
    flags hours that were only partly observed. Hours without any minute are
    ``NaN``.

    Given an ``http(s)://`` address the file is downloaded once into
    ``<home>/cache`` (see :func:`energy_flows.settings.home_dir`), with a
    progress bar, and read from there the next time.
    """
    text = str(path_or_url)
    if text.startswith(("http://", "https://")):
        target = _cache_path_for(text, Path(cache_dir) if cache_dir else None)
        if not target.exists():
            _download(text, target, progress=progress)
        path = target
    else:
        path = Path(text)
        if not path.exists():
            raise DataError(
                f"No UCI file at {path}. Pass the path of household_power_consumption.txt "
                "(or its .zip), or an http(s) address to download it from."
            )
    source = _open_uci_text(path)
    try:
        raw = pd.read_csv(
            source,
            sep=";",
            na_values=["?", ""],
            usecols=["Date", "Time", "Global_active_power"],
            dtype={"Date": str, "Time": str, "Global_active_power": float},
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(
            f"{path} is not in the UCI household format (expected a header "
            "'Date;Time;Global_active_power;...' and ';' separators): {exc}"
        ) from exc
    finally:
        if not isinstance(source, Path):
            source.close()
    stamps = pd.to_datetime(raw["Date"] + " " + raw["Time"], format="%d/%m/%Y %H:%M:%S")
    power_kw = pd.Series(raw["Global_active_power"].to_numpy(), index=stamps)
    hour = stamps.dt.floor("h").to_numpy()
    grouped = power_kw.groupby(hour)
    out = pd.DataFrame(
        {
            "kwh": grouped.mean(),
            "minutes_observed": grouped.count().astype("int64"),
            "minutes_in_file": grouped.size().astype("int64"),
        }
    )
    out.index = pd.DatetimeIndex(out.index, name="timestamp")
    # A regular grid: hours that are absent from the file are missing too.
    out = out.asfreq("h")
    out["minutes_observed"] = out["minutes_observed"].fillna(0).astype("int64")
    out["minutes_in_file"] = out["minutes_in_file"].fillna(0).astype("int64")
    out["partial_hour"] = (out["minutes_observed"] > 0) & (out["minutes_observed"] < 60)
    return out


def load_readings(
    source: str = "simulated",
    meter_id: str = "home-001",
    start: str | None = "2024-01-01",
    days: int = 365,
    seed: int = 42,
) -> pd.DataFrame:
    """One entry point for every source: what the pipeline's ingest step calls.

    ``source`` is ``"simulated"``, the path of a CSV file (columns
    ``timestamp`` and ``kwh``), or the path or http(s) address of a UCI raw
    file (``.txt`` or ``.zip``). For a file, ``start`` and ``days`` select the
    period; an empty ``start`` takes the last ``days`` days of the file.
    """
    where = "load_readings"
    days = _whole_number(
        days, "days", where=where, example="days=365", minimum=1, maximum=MAX_SIMULATED_DAYS
    )
    if source == "simulated":
        return simulate_meter(meter_id, start=start or "2024-01-01", days=days, seed=seed)
    first = _date(start, "start", where=where, example="2024-01-01") if start else None
    text = str(source)
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")) or lowered.endswith((".txt", ".zip")):
        readings = load_uci_household(text)
    elif lowered.endswith((".csv", ".csv.gz")):
        readings = load_meter_csv(text)
    else:
        raise DataError(
            f"Unknown source {source!r}. Use 'simulated', the path of a .csv file "
            "(columns timestamp, kwh), or the path or http(s) address of a UCI raw "
            "file (.txt or .zip)."
        )
    if readings.empty:
        raise DataError(f"The source {source!r} holds no readings.")
    if first is None:
        first = readings.index.max().normalize() - pd.Timedelta(days=days - 1)
    period = readings.loc[first : first + pd.Timedelta(days=days) - pd.Timedelta(seconds=1)]
    if period.empty:
        raise DataError(
            f"The source {source!r} has no readings from {first:%Y-%m-%d} for {days} days: it "
            f"covers {readings.index.min():%Y-%m-%d} to {readings.index.max():%Y-%m-%d}. "
            "Pick a start inside that range, or an empty start for the last days."
        )
    return period


# --------------------------------------------------------------------------
# Validation and cleaning


def _check_readings(df: object) -> pd.DataFrame:
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
    _check_readings(df)
    kwh = df["kwh"].astype(float)
    index = df.index
    rows: list[tuple[str, str, int, str]] = []

    def add(check: str, status: str, count: int, detail: str) -> None:
        rows.append((check, status, int(count), detail))

    n = len(df)
    first, last = index.min(), index.max()
    grid = pd.date_range(first.floor("h"), last.floor("h"), freq="h")
    add("rows", "ok", n, f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}")

    unsorted = int((np.diff(index.asi8) < 0).sum())
    add(
        "timestamps in order",
        "ok" if unsorted == 0 else "warning",
        unsorted,
        "sorted" if unsorted == 0 else f"{unsorted} steps go back in time; sort the index",
    )
    duplicated = int(index.duplicated().sum())
    add(
        "duplicated timestamps",
        "ok" if duplicated == 0 else "warning",
        duplicated,
        "none"
        if duplicated == 0
        else "e.g. "
        + ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in index[index.duplicated()][:3])
        + " (the autumn daylight saving change writes 02:00 twice); "
        "clean_readings averages each duplicated hour",
    )
    off_grid = int((index != index.floor("h")).sum())
    add(
        "timestamps on the hour",
        "ok" if off_grid == 0 else "warning",
        off_grid,
        "all on the hour" if off_grid == 0 else "some readings are not at the start of an hour",
    )
    absent = int((~grid.isin(index.floor("h"))).sum())
    empty = int(kwh.isna().sum())
    add(
        "missing hours",
        "ok" if absent + empty == 0 else "warning",
        absent + empty,
        f"{absent} hours absent from the index, {empty} readings empty "
        f"({100 * (absent + empty) / max(len(grid), 1):.2f} % of {len(grid)} hours)",
    )
    present = kwh.notna()
    full = pd.Series(present.to_numpy(), index=index)
    full = full[~full.index.duplicated()].reindex(grid, fill_value=False)
    runs = (~full).astype(int).groupby((full).cumsum()).sum()
    longest = int(runs.max()) if len(runs) else 0
    add(
        "longest gap",
        "ok" if longest <= MAX_FILL_HOURS else "warning",
        longest,
        f"{longest} hours in a row without a reading"
        + ("" if longest <= MAX_FILL_HOURS else f" (longer than {MAX_FILL_HOURS} h: not filled)"),
    )
    negative = int((kwh < 0).sum())
    add(
        "negative values",
        "ok" if negative == 0 else "error",
        negative,
        "none" if negative == 0 else "a consumption meter cannot go below zero",
    )
    zeros = int((kwh == 0).sum())
    add(
        "exact zeros",
        "ok" if zeros == 0 else "warning",
        zeros,
        "none" if zeros == 0 else "a home always uses some energy: probably missing readings",
    )
    implausible = int((kwh > max_kwh).sum())
    add(
        "implausible values",
        "ok" if implausible == 0 else "error",
        implausible,
        f"none above {max_kwh:g} kWh in an hour"
        if implausible == 0
        else f"above {max_kwh:g} kWh in an hour (max {kwh.max():.1f}): meter glitches",
    )
    median = float(kwh[kwh > 0].median()) if (kwh > 0).any() else 0.0
    if median > 50:
        unit_status, unit_detail = "error", f"median {median:.0f} per hour: looks like Wh, not kWh"
    elif 0 < median < 0.01:
        unit_status, unit_detail = "error", f"median {median:.4f} per hour: looks like MWh, not kWh"
    else:
        unit_status, unit_detail = "ok", f"median {median:.2f} kWh per hour: plausible for a home"
    add("unit", unit_status, 0 if unit_status == "ok" else n, unit_detail)
    if "temperature_c" in df.columns:
        temp = pd.to_numeric(df["temperature_c"], errors="coerce")
        odd = int(((temp < -50) | (temp > 55)).sum())
        add(
            "temperature range",
            "ok" if odd == 0 else "warning",
            odd,
            f"{temp.min():.1f} to {temp.max():.1f} °C",
        )
    report = pd.DataFrame(rows, columns=["check", "status", "hours", "detail"]).set_index("check")
    return report


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
    _check_readings(df)
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


# --------------------------------------------------------------------------
# Statistics used to compare a meter (simulated or real) with the real household


def meter_statistics(readings: pd.DataFrame) -> dict[str, float | list[float]]:
    """The statistics that describe a household's hourly use.

    The same function describes the real UCI household and a simulated meter,
    so the two can be compared number by number (the calibration test does).
    ``readings`` must be on a regular hourly grid (missing hours as NaN), e.g.
    raw readings without daylight saving defects or the output of
    :func:`clean_readings` with ``max_fill_hours=0``.
    """
    _check_readings(readings)
    kwh = readings["kwh"].astype(float)
    kwh = kwh[~kwh.index.duplicated()].asfreq("h")
    present = kwh.dropna()
    index = present.index
    weekend = index.day_of_week >= 5
    weekday_mean = present[~weekend].groupby(index[~weekend].hour).mean()
    weekend_mean = present[weekend].groupby(index[weekend].hour).mean()
    month_mean = present.groupby(index.month).mean()
    winter = month_mean.reindex([12, 1, 2]).mean()
    summer = month_mean.reindex([6, 7, 8]).mean()
    p50 = float(present.quantile(0.5))
    return {
        "mean_kwh": float(present.mean()),
        "missing_fraction": float(kwh.isna().mean()),
        "weekday_profile": (weekday_mean / weekday_mean.mean()).round(3).tolist(),
        "weekend_profile": (weekend_mean / weekend_mean.mean()).round(3).tolist(),
        "weekend_over_weekday": float(present[weekend].mean() / present[~weekend].mean()),
        "winter_over_summer": float(winter / summer),
        "acf_1": float(kwh.autocorr(1)),
        "acf_24": float(kwh.autocorr(24)),
        "acf_168": float(kwh.autocorr(168)),
        "p99_over_p50": float(present.quantile(0.99) / p50),
        "cv": float(present.std() / present.mean()),
        "p1_kwh": float(present.quantile(0.01)),
    }
