"""A column of dates read as the file means them: ISO, day first or month first, decided by the data.

``01/02/2024`` is the 1st of February in Europe and the 2nd of January in
the US. Guessing is not an option: a guess that is wrong for one file puts
a third of its hours on other days, and nothing looks broken. So the order
is read off the data itself:

* year first (``2024-02-01 13:00``, ISO 8601, with or without a time zone
  offset) has one reading only;
* numbers with a separator (``01/02/2024``, ``01.02.2024``, ``1-2-24 1:00 PM``):
  a first number above 12 anywhere in the file proves the day comes first,
  a second number above 12 that the month does; a file in which every day
  is 12 or less (the first twelve days of each month) could be either, and
  is refused with both readings shown, until ``dayfirst=`` says which;
* anything else (``Feb 1, 2024``): each value is read on its own, as pandas
  reads it, with ``dayfirst`` if given;
* ``date_format=`` (``"%d/%m/%Y %H:%M"``, Python's ``strptime`` codes) reads
  every value with that format, and nothing else.

Each value is read once. For the usual export (every value the same width,
e.g. ``31/01/2024 13:00``) the numbers are sliced out of the text by
position with numpy, so two million rows take about a second.

A value that does not read as a date is never dropped: :func:`read_dates`
raises a :class:`~energy_flows.errors.DataError` that names its line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from energy_flows.errors import DataError

__all__ = ["read_dates"]

#: The resolution of the result: what pandas gives a date written as text.
_UNIT = pd.Timestamp("2024-01-01").unit

#: ``2024-02-01``, ``2024/02/01 13:00``, ``20240201T1300``: year first.
_YEAR_FIRST = re.compile(r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{8}T)")

#: Day and month as numbers, either order: ``01/02/2024 13:00:00``, ``1.2.24 1:00 pm``.
_NUMERIC = re.compile(
    r"^\s*(?P<a>\d{1,2})(?P<sep>[./\- ])(?P<b>\d{1,2})(?P=sep)(?P<year>\d{4}|\d{2})"
    r"(?:(?:\s+|T)(?P<hour>\d{1,2})[:.](?P<minute>\d{2})(?:[:.](?P<second>\d{2}))?"
    r"\s*(?P<half>[AaPp]\.?[Mm]\.?)?)?\s*$"
)

#: A time zone offset at the end of an ISO value: ``Z``, ``+01:00``, ``-0500``.
_OFFSET = r"(?<=\d)(?:Z|[+-]\d{2}:?\d{2})$"

#: Rows quoted in a message, at most.
_SHOWN = 3

LineOf = Callable[[Sequence[int]], list[int]]


def read_dates(
    text: pd.Series,
    *,
    what: str,
    line_of: LineOf,
    dayfirst: bool | None = None,
    date_format: str | None = None,
) -> pd.DatetimeIndex:
    """The dates written in ``text`` (strings, none missing), in local clock time without a zone.

    ``what`` names the column in messages ("column 'timestamp' of meter.csv");
    ``line_of`` turns row positions into the file's line numbers. A time zone
    offset is dropped (the clock time is kept as written: the package's
    convention, see :mod:`energy_flows.data`). Raises
    :class:`~energy_flows.errors.DataError` when the order of day and month
    cannot be told, when ``dayfirst`` contradicts the data, or when a value
    is not a date; the message quotes the lines and says what to pass.
    """
    values = text.to_numpy(dtype=object)
    stamps: pd.DatetimeIndex | pd.Series | np.ndarray
    if date_format is not None:
        stamps = _with_format(values, date_format, what)
        how = f"date_format={date_format!r}"
    else:
        first = values[0]
        if _YEAR_FIRST.match(first):
            stamps, how = _year_first(text), "as year-month-day (ISO 8601)"
        elif _NUMERIC.match(first):
            stamps, dayfirst = _numeric(values, what, line_of, dayfirst)
            how = "day first" if dayfirst else "month first"
        else:
            stamps, how = _one_by_one(text, bool(dayfirst), what), "one by one"
    stamps = pd.DatetimeIndex(stamps)
    if stamps.tz is not None:
        stamps = stamps.tz_localize(None)
    unread = np.flatnonzero(stamps.isna())
    if len(unread) == len(values) and date_format is not None:
        raise DataError(
            f"No value of the {what} reads with date_format={date_format!r} "
            f"({_quote(values, unread[:1], line_of)}). Pass the format they are written in, "
            "e.g. '%d/%m/%Y %H:%M' for 31/01/2024 13:00, or leave date_format out to let the "
            "data decide."
        )
    if len(unread) == len(values):
        raise DataError(
            f"The {what} holds no dates (first value: {values[0]!r}). Expected timestamps "
            "such as 2024-01-01 13:00; if the file writes them another way, pass "
            "date_format=..., e.g. date_format='%d/%m/%Y %H:%M'."
        )
    if len(unread):
        raise DataError(
            f"The {what} has values that are not dates when read {how}: "
            f"{_quote(values, unread, line_of)}"
            f"{'' if len(unread) <= _SHOWN else f' ({len(unread)} lines in all)'}. "
            "Correct or delete those lines"
            + ("" if date_format else ", or pass date_format=... for the way they are written")
            + "."
        )
    return stamps.as_unit(_UNIT)


def _quote(values: np.ndarray, rows: Sequence[int] | np.ndarray, line_of: LineOf) -> str:
    """``line 7: '31/02/2024 00:00', line 9: 'n/a'``: the first few of ``rows``."""
    shown = [int(r) for r in rows[:_SHOWN]]
    lines = line_of(shown)
    return ", ".join(f"line {n}: {values[r]!r}" for n, r in zip(lines, shown, strict=True))


def _with_format(values: np.ndarray, date_format: str, what: str) -> np.ndarray:
    try:
        return pd.to_datetime(values, format=date_format, errors="coerce").to_numpy()
    except ValueError as exc:  # a format pandas cannot use at all
        raise DataError(
            f"date_format={date_format!r} cannot read the {what} ({exc}). Use strptime codes, "
            "e.g. '%d/%m/%Y %H:%M' for 31/01/2024 13:00."
        ) from None


def _year_first(text: pd.Series) -> pd.DatetimeIndex:
    """ISO 8601 values; offsets that change within the file (summer time) are dropped first."""
    try:
        return pd.DatetimeIndex(pd.to_datetime(text, format="ISO8601", errors="coerce"))
    except ValueError:  # "Mixed timezones detected": keep each value's clock time
        local = text.str.replace(_OFFSET, "", regex=True)
        return pd.DatetimeIndex(pd.to_datetime(local, format="ISO8601", errors="coerce"))


def _one_by_one(text: pd.Series, dayfirst: bool, what: str) -> pd.DatetimeIndex:
    """Values of no numeric shape (``Feb 1, 2024 13:00``): each read on its own by pandas."""
    try:
        return pd.DatetimeIndex(
            pd.to_datetime(text, format="mixed", dayfirst=dayfirst, errors="coerce")
        )
    except ValueError as exc:  # e.g. different time zones on different lines
        raise DataError(
            f"The {what} cannot be read as dates ({exc}). Pass date_format=... for the way they "
            "are written, e.g. date_format='%b %d, %Y %H:%M' for Feb 01, 2024 13:00."
        ) from None


# --------------------------------------------------------------------------- day/month numbers


def _numeric(
    values: np.ndarray, what: str, line_of: LineOf, dayfirst: bool | None
) -> tuple[np.ndarray, bool]:
    """Values like ``31/01/2024 13:00``: find the order, then build the dates from their numbers.

    Returns the datetime64 values (NaT where a value has another shape or is
    no date, e.g. 31/02) and the order used (``dayfirst``).
    """
    parts = _parts(values)
    a, b = parts["a"], parts["b"]
    shaped = a >= 0
    if not shaped.any():  # not one value has the shape after all: no dates to order
        return np.full(len(values), np.datetime64("NaT"), dtype=f"M8[{_UNIT}]"), bool(dayfirst)
    # rows whose first (second) number can only be the day; 13/13 is no date either way
    a_day = np.flatnonzero(shaped & (a > 12) & (b <= 12))
    b_day = np.flatnonzero(shaped & (b > 12) & (a <= 12))
    if dayfirst is None:
        if len(a_day) and len(b_day):
            raise DataError(
                f"The {what} writes dates both ways: {_quote(values, a_day, line_of)} "
                f"(day first), but {_quote(values, b_day, line_of)} (month first). "
                "Correct the lines written the other way, then load the file again."
            )
        if not len(a_day) and not len(b_day):
            raise DataError(_ambiguous(values, parts, what, line_of))
        dayfirst = bool(len(a_day))
    else:
        against = b_day if dayfirst else a_day
        if len(against):
            raise DataError(
                f"dayfirst={dayfirst} reads the {what} "
                f"{'day' if dayfirst else 'month'} first, but its month would be above 12 "
                f"on {_quote(values, against, line_of)}: that file writes the "
                f"{'month' if dayfirst else 'day'} first. Pass dayfirst={not dayfirst}, "
                "or leave dayfirst out to let the data decide."
            )
    day, month = (a, b) if dayfirst else (b, a)
    return _assemble(parts, day, month, shaped), dayfirst


def _ambiguous(values: np.ndarray, parts: dict[str, np.ndarray], what: str, line_of: LineOf) -> str:
    """The refusal of a file whose dates read both ways, with both readings side by side."""
    shaped = parts["a"] >= 0
    both: dict[bool, np.ndarray] = {}
    for dayfirst in (True, False):
        day, month = (parts["a"], parts["b"]) if dayfirst else (parts["b"], parts["a"])
        both[dayfirst] = _assemble(parts, day, month, shaped)
    readings = {df: pd.DatetimeIndex(stamps).dropna() for df, stamps in both.items()}
    valid = np.flatnonzero(~np.isnat(both[True]) & ~np.isnat(both[False]))
    first = int(valid[0]) if len(valid) else int(np.flatnonzero(shaped)[0])
    (line,) = line_of([first])
    one = {df: pd.Timestamp(both[df][first]) for df in (True, False)}

    def summary(stamps: pd.DatetimeIndex) -> str:
        if stamps.empty:
            return "no value is a date"
        span = f"{stamps.min():%Y-%m-%d %H:%M} to {stamps.max():%Y-%m-%d %H:%M}"
        if stamps.nunique() < 2:
            return span
        largest = pd.Series(stamps.unique()).sort_values().diff().max()
        return f"{span}, largest gap between readings {_duration(largest)}"

    return (
        f"The {what} can be read day first or month first: no day or month in it is "
        f"above 12, so the file does not say which. Line {line}, {values[first]!r}, is "
        f"{_spelled(one[True])} day first (dd/mm/yyyy, as in Europe) or "
        f"{_spelled(one[False])} month first (mm/dd/yyyy, as in the US).\n"
        f"  dayfirst=True:  {summary(readings[True])}\n"
        f"  dayfirst=False: {summary(readings[False])}\n"
        "Say which one the meter writes: load_meter_csv(..., dayfirst=True) or "
        "dayfirst=False."
    )


def _duration(step: pd.Timedelta) -> str:
    """``1 hour``, ``15 minutes``, ``31 days``, ``2 days 3 hours``: a gap in words."""
    minutes = int(step.total_seconds() // 60)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    words = [(days, "day"), (hours, "hour"), (mins, "minute")]
    text = " ".join(f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in words if n)
    return text or f"{step.total_seconds():g} seconds"


def _spelled(stamp: pd.Timestamp) -> str:
    """``1 February 2024``: a date no reader can take the wrong way."""
    return "no date" if pd.isna(stamp) else f"{stamp.day} {stamp:%B %Y}"


def _assemble(
    parts: dict[str, np.ndarray], day: np.ndarray, month: np.ndarray, shaped: np.ndarray
) -> np.ndarray:
    """datetime64 values from their numbers; NaT where they make no date (31/02, 25:00)."""
    year, hour = parts["year"], parts["hour"]
    minute, second = parts["minute"], parts["second"]
    ok = (
        shaped
        & (month >= 1)
        & (month <= 12)
        & (day >= 1)
        & (day <= 31)
        & (hour >= 0)
        & (hour <= 23)
        & (minute >= 0)
        & (minute <= 59)
        & (second >= 0)
        & (second <= 59)
    )
    months = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype("M8[M]")
    dates = months.astype("M8[D]") + np.where(ok, day - 1, 0).astype("m8[D]")
    ok &= dates.astype("M8[M]") == months  # 31/02 would roll over into March
    seconds = (hour * 3600 + minute * 60 + second).astype("m8[s]")
    stamps = (dates.astype("M8[s]") + seconds).astype(f"M8[{_UNIT}]")
    stamps[~ok] = np.datetime64("NaT")
    return stamps


def _full_year(year: np.ndarray, digits: int) -> np.ndarray:
    """Two-digit years as strptime reads them: 69-99 → 1969-1999, 00-68 → 2000-2068."""
    if digits == 4:
        return year
    return np.where(year >= 69, 1900 + year, 2000 + year)


def _in_24_hours(hour: np.ndarray, half: np.ndarray) -> np.ndarray:
    """12-hour clock to 24: 12 AM is 0, 1 PM is 13; ``half`` is 0 (none), 1 (AM) or 2 (PM)."""
    twelve = hour % 12
    return np.where(half == 0, hour, np.where(half == 2, twelve + 12, twelve))


def _parts(values: np.ndarray) -> dict[str, np.ndarray]:
    """The numbers of each value (``a``, ``b``, ``year``, ``hour``, ``minute``, ``second``).

    ``a`` is -1 where a value does not have the shape at all. Values of the
    first value's width, with their separators in the same places (the usual
    export: ``31/01/2024 13:00`` on every line), are sliced by position with
    numpy; the others (``1/2/2024``, 12-hour clocks, other separators) are read
    with the regular expression, which is slower.
    """
    fast = _parts_by_position(values)
    if fast is None:
        return _parts_by_pattern(values)
    parts, fits = fast
    if not fits.all():
        others = np.flatnonzero(~fits)
        slow = _parts_by_pattern(values[others])
        for name, column in parts.items():
            column[others] = slow[name]
    return parts


def _parts_by_position(values: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
    """The numbers of the values shaped like the first one, and which values those are.

    None when the first value needs the regular expression (a 12-hour clock)
    or fewer than half the values share its shape.
    """
    first = _NUMERIC.match(values[0])
    if first is None or first["half"]:
        return None
    width = len(values[0])
    chars = np.asarray(values, dtype=str)  # as wide as the longest value
    codes = chars.view(np.uint32).reshape(len(values), -1)[:, :width]
    template = codes[0]
    digit = (template >= 48) & (template <= 57)
    same = np.where(digit, (codes >= 48) & (codes <= 57), codes == template)
    fits = (np.char.str_len(chars) == width) & same.all(axis=1)
    if fits.mean() < 0.5:
        return None

    def field(name: str) -> np.ndarray:
        out = np.zeros(len(values), dtype=np.int64)
        start, end = first.span(name)
        for i in range(max(start, 0), max(end, 0)):
            out = out * 10 + (codes[:, i].astype(np.int64) - 48)
        return out

    parts = {
        "a": np.where(fits, field("a"), -1),
        "b": field("b"),
        "year": _full_year(field("year"), len(first["year"])),
        "hour": field("hour"),
        "minute": field("minute"),
        "second": field("second"),
    }
    return parts, fits


def _parts_by_pattern(values: np.ndarray) -> dict[str, np.ndarray]:
    """The numbers of each value by regular expression: any widths, 12-hour clocks, mixed separators."""
    found = pd.Series(values, dtype=object).str.extract(_NUMERIC)
    shaped = found["a"].notna().to_numpy()

    def numbers(name: str) -> np.ndarray:
        return pd.to_numeric(found[name], errors="coerce").fillna(0).astype(np.int64).to_numpy()

    year_text = found["year"].fillna("")
    four = year_text.str.len().to_numpy() == 4
    year = numbers("year")
    year = np.where(four, year, _full_year(year, 2))
    half_text = found["half"].fillna("").str.lower().str[:1]
    half = np.select([half_text == "a", half_text == "p"], [1, 2], 0)
    hour = numbers("hour")
    bad_half = (half > 0) & ((hour < 1) | (hour > 12))  # "13:00 PM" is no time
    return {
        "a": np.where(shaped & ~bad_half, numbers("a"), -1),
        "b": numbers("b"),
        "year": year,
        "hour": _in_24_hours(hour, half),
        "minute": numbers("minute"),
        "second": numbers("second"),
    }
