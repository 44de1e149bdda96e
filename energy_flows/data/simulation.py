"""Simulated household meters: hourly readings with a real household's habits, and its defects.

:func:`simulate_meter` makes the readings the lessons use offline: a year of
hourly kWh whose daily routine, weekend habits, seasons, heating and noise
were calibrated on the real household of the UCI data set
(``tests/test_calibration.py`` compares them number by number), with the
defects a cleaning step must handle written over the true values.
:func:`meter_traits` says what makes one simulated household different from
another.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from energy_flows.data.arguments import (
    check_date,
    check_flag,
    check_text,
    check_timezone,
    check_whole_number,
    message_prefix,
)
from energy_flows.errors import DataError

__all__ = ["MAX_SIMULATED_DAYS", "MeterTraits", "meter_traits", "simulate_meter"]

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
    check_text(meter_id, "meter_id", where=where, example="meter_id='home-001'")
    start_ts = check_date(start, "start", where=where, example="2024-01-01").normalize()
    if end is None:
        n_days = check_whole_number(
            days, "days", where=where, example="days=7", minimum=1, maximum=MAX_SIMULATED_DAYS
        )
        end_ts = start_ts + pd.Timedelta(days=n_days)
    else:
        end_ts = check_date(end, "end", where=where, example="2024-02-01")
    seed = check_whole_number(seed, "seed", where=where, example="seed=42", minimum=0)
    flags = {
        "daylight_saving": daylight_saving,
        "dropouts": dropouts,
        "outages": outages,
        "false_zeros": false_zeros,
        "spikes": spikes,
    }
    for name, value in flags.items():
        check_flag(value, name, where=where)
    clock_zone = check_timezone(timezone, where=where)
    n_hours = _hours_between(start_ts, end_ts, where=where)
    traits = meter_traits(meter_id)
    rng = np.random.default_rng([_stable_int(meter_id), seed])
    index = _hours_local(start_ts, n_hours, clock_zone if daylight_saving else None)
    kwh, temperature = _true_use(traits, rng, index, start_ts)
    values = _with_defects(
        kwh, rng, outages=outages, dropouts=dropouts, false_zeros=false_zeros, spikes=spikes
    )
    return pd.DataFrame(
        {"kwh": values, "temperature_c": np.round(temperature, 1)},
        index=index,
    )


def _hours_between(start: pd.Timestamp, end: pd.Timestamp, *, where: str) -> int:
    """How many hours simulate_meter makes from ``start`` to ``end``; refuses none and too many."""
    n_hours = int((end - start) / pd.Timedelta(hours=1))
    if n_hours < 1:
        raise DataError(
            f"simulate_meter needs a period of at least one hour; got start={start} and "
            f"end={end}. Give a later `end` or a positive `days`."
        )
    if n_hours > 24 * MAX_SIMULATED_DAYS:
        raise DataError(
            f"{message_prefix(where)}the period from start={start:%Y-%m-%d} to end={end:%Y-%m-%d} is "
            f"longer than {MAX_SIMULATED_DAYS} days (100 years). Give an earlier end."
        )
    return n_hours


def _true_use(
    traits: MeterTraits, rng: np.random.Generator, index: pd.DatetimeIndex, start: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray]:
    """The household's true use in kWh at each hour of ``index``, and the outdoor temperature.

    ``kwh = routine x season x habits x noise + heating`` (see :func:`simulate_meter`).
    """
    n_hours = len(index)
    # Human habits follow the wall clock: use the local labels.
    hour = index.hour.to_numpy()
    dow = index.day_of_week.to_numpy()
    doy = index.day_of_year.to_numpy()
    day_number = ((index - start) // pd.Timedelta(days=1)).to_numpy()
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

    return kwh, temperature


def _with_defects(
    kwh: np.ndarray,
    rng: np.random.Generator,
    *,
    outages: bool,
    dropouts: bool,
    false_zeros: bool,
    spikes: bool,
) -> np.ndarray:
    """The readings a meter writes: ``kwh`` with the defects that are switched on written over it."""
    n_hours = len(kwh)
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

    return values
