"""Loading real readings: a meter's CSV export, or any source by name (:func:`load_readings`).

Whatever the file's interval and unit, the result is hourly kWh on the
package's convention: a ``timestamp`` index in local clock time without a
time zone, duplicated hours kept as the meter wrote them (for
:func:`~energy_flows.data.validate_readings` to report and
:func:`~energy_flows.data.clean_readings` to merge).
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from energy_flows.data.arguments import check_date, check_whole_number
from energy_flows.data.dates import read_dates
from energy_flows.data.simulation import MAX_SIMULATED_DAYS, simulate_meter
from energy_flows.data.uci import HOUSEHOLD_SOURCE, check_household_period, load_uci_household
from energy_flows.errors import DataError

__all__ = ["check_reading_days", "load_meter_csv", "load_readings"]

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


def _read_meter_file(
    path: Path, sep: str, encoding: str, timestamp_col: str, example: str
) -> pd.DataFrame:
    """The rows of the CSV file at ``path`` (which exists), or a :class:`DataError` that says what to change.

    ``example`` is what a valid file looks like, shown when the file is empty.
    The timestamps are read as text (:mod:`energy_flows.data.dates` reads
    them); rows with no value at all are left out, keeping their row numbers.
    """
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a CSV file. {_folder_hint(path)}")
    try:
        raw = pd.read_csv(path, sep=sep, encoding=encoding, dtype={timestamp_col: str})
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{path} is empty: not even a header line. A valid meter file looks like:\n{example}"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(_not_text(path, _named(encoding), exc)) from None
    except pd.errors.ParserError as exc:
        raise DataError(_bad_row(path, sep, encoding, exc)) from exc
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
    return raw.dropna(how="all")  # e.g. ",," lines at the end of a spreadsheet's export


def _named(encoding: str) -> str:
    """The encoding as the learner named it: ``utf-8``, not the ``utf-8-sig`` used to read it."""
    return "utf-8" if encoding == "utf-8-sig" else encoding


def _not_text(path: Path, encoding: str, exc: UnicodeDecodeError) -> str:
    """Why a file is not ``encoding`` text, where, and the ``encoding=`` that reads it."""
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return (
            f'{path} is UTF-16 text (as Excel\'s "Unicode text" saves it), not {encoding}. '
            f"Pass encoding='utf-16': load_meter_csv({str(path)!r}, encoding='utf-16')."
        )
    where = ""
    try:
        data.decode(encoding)
    except UnicodeDecodeError as found:
        line = data.count(b"\n", 0, found.start) + 1
        text = data.split(b"\n")[line - 1].decode("cp1252", errors="replace").strip()
        where = f" Line {line} has the byte 0x{data[found.start]:02x}, which {encoding} cannot read: {text!r} in Windows-1252."
    except LookupError:
        pass
    return (
        f"{path} is not {encoding} text: it was probably saved by a spreadsheet in the "
        f"computer's own encoding ({exc.reason}).{where} Pass the file's encoding, "
        f"e.g. load_meter_csv({str(path)!r}, encoding='cp1252') (Windows, Western Europe) or "
        "encoding='latin-1', or save the file again as \"CSV UTF-8\"."
    )


_TOKENIZING = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _bad_row(path: Path, sep: str, encoding: str, exc: Exception) -> str:
    """A line with more fields than the header: which line, what it holds, what to do."""
    found = _TOKENIZING.search(str(exc))
    if found is None:
        return f"{path} is not a readable CSV file ({str(exc).strip()}). Check that it is a CSV file with sep={sep!r}."
    expected, line, saw = map(int, found.groups())
    text = ""
    try:
        with open(path, encoding=encoding, errors="replace", newline="") as f:
            for number, content in enumerate(f, 1):
                if number == line:
                    text = content.rstrip("\r\n")
                    break
    except OSError:
        pass
    decimal = ""
    if sep == "," and re.search(r"\d,\d", text):
        decimal = (
            " If the numbers use a decimal comma (0,65), the file needs another separator: "
            "save it with ';' between the fields and pass sep=';'."
        )
    return (
        f"{path}, line {line} has {saw} fields where the header has {expected}: {text!r}. "
        f"Delete the extra value on that line, or put a value that contains {sep!r} in "
        f"double quotes.{decimal}"
    )


def _folder_hint(folder: Path) -> str:
    """What to pass instead of a folder: one of its CSV files, or the file itself."""
    found = _csv_files_in(folder)
    if not found:
        return "It holds no .csv file. Pass the path of the CSV file itself, not its folder."
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    return (
        f"It holds these CSV files: {shown}. Pass one of them, e.g. "
        f"load_meter_csv({str(folder / found[0])!r})."
    )


def _line_numbers(path: Path, encoding: str) -> Callable[[Sequence[int]], list[int]]:
    """A function from row positions (0 = the first row under the header) to the file's line numbers.

    Blank lines are skipped as the CSV reader skips them, so the numbers are
    the ones an editor shows. Reads the file only when a message needs a line.
    """

    def line_of(rows: Sequence[int]) -> list[int]:
        wanted = {int(r): 0 for r in rows}
        row = -2  # the header is the first line that is not blank
        try:
            with open(path, encoding=encoding, errors="replace", newline="") as f:
                for number, content in enumerate(f, 1):
                    if not content.strip():
                        continue
                    row += 1
                    if row in wanted:
                        wanted[row] = number
                        if all(wanted.values()):
                            break
        except OSError:
            pass
        return [wanted[int(r)] or int(r) + 2 for r in rows]

    return line_of


def _timestamps(
    raw: pd.DataFrame,
    column: str,
    path: Path,
    encoding: str,
    *,
    dayfirst: bool | None,
    date_format: str | None,
) -> pd.DatetimeIndex:
    """The column's dates, read as the file means them (:mod:`energy_flows.data.dates`).

    A row without a timestamp but with a value is refused with its line: a
    reading that belongs to no hour cannot be kept, and must not vanish.
    """
    text = raw[column]
    row_numbers = raw.index.to_numpy()  # the rows as read: dropped empty rows keep their place
    in_file = _line_numbers(path, encoding)

    def line_of(rows: Sequence[int]) -> list[int]:
        return in_file([int(row_numbers[r]) for r in rows])

    missing = np.flatnonzero(text.isna().to_numpy())
    if len(missing):
        lines = line_of([int(r) for r in missing[:3]])
        raise DataError(
            f"{path} has rows without a {column!r}: line{'s' if len(lines) > 1 else ''} "
            f"{', '.join(map(str, lines))}{f' and {len(missing) - 3} more' if len(missing) > 3 else ''}. "
            "A reading needs its time: add it, or delete the line."
        )
    return read_dates(
        text,
        what=f"column {column!r} of {path}",
        line_of=line_of,
        dayfirst=dayfirst,
        date_format=date_format,
    )


def _numbers(column: pd.Series, path: Path) -> pd.Series:
    """The column's numbers (NaN where a value is not one); refuses a column without any."""
    values = pd.to_numeric(column, errors="coerce").astype(float)
    if values.isna().all() and column.notna().any():
        first = column[column.notna()].iloc[0]
        raise DataError(
            f"Column {column.name!r} of {path} holds no numbers (first value: {first!r}). "
            "Expected numbers with a decimal point, such as 0.65; if this is not the value "
            "column, pass value_col=... with the name of the one that is."
        )
    return values


def load_meter_csv(
    path: str | os.PathLike[str],
    timestamp_col: str = "timestamp",
    value_col: str = "kwh",
    unit: str = "kwh",
    *,
    temperature_col: str | None = None,
    sep: str = ",",
    dayfirst: bool | None = None,
    date_format: str | None = None,
    encoding: str = "utf-8",
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

    Dates are read as the file means them, never guessed
    (:mod:`energy_flows.data.dates`): year first (ISO 8601, ``2024-01-31
    13:00``) as it is; ``31/01/2024`` or ``01/31/2024`` day first or month
    first as the data shows, since a day above 12 tells which. A file in which
    no day is above 12 (``01/02/2024`` is 1 February or 2 January) is
    refused with both readings, until ``dayfirst=True`` (dd/mm/yyyy, as
    European meters write) or ``dayfirst=False`` (mm/dd/yyyy) says which.
    ``date_format="%d.%m.%Y %H:%M"`` reads every value with that exact format
    instead. A time zone offset is dropped: the clock time is kept.

    ``encoding`` is the file's text encoding: UTF-8 (with or without a byte
    order mark) unless given, e.g. ``encoding="cp1252"`` for a file a
    spreadsheet saved on Windows.

    Raises :class:`~energy_flows.errors.DataError` when the path is missing
    or a folder, or the file is empty, has no rows, is not text in
    ``encoding``, has a line with more fields than the header, lacks a
    column, holds no numbers, or has a timestamp that is missing, is not a
    date, or could be read two ways; the message names the line and says
    what to change.
    """
    path = _check_path(path)
    dayfirst, date_format, encoding = _check_reading_options(dayfirst, date_format, encoding)
    if not path.exists():
        raise DataError(f"No file at {path}. Check the path (relative to {Path.cwd()}).")
    example = _csv_example(timestamp_col, value_col, temperature_col, sep)
    raw = _read_meter_file(path, sep, encoding, timestamp_col, example)
    missing = [c for c in (timestamp_col, value_col, temperature_col) if c and c not in raw]
    if missing:
        raise DataError(
            f"{path} has no column {missing}; its columns are {list(raw.columns)}. "
            + _separator_hint(raw.columns, sep)
        )
    index = _timestamps(
        raw, timestamp_col, path, encoding, dayfirst=dayfirst, date_format=date_format
    ).rename("timestamp")
    values = _numbers(raw[value_col], path)
    values.index = index
    temperature = None
    if temperature_col:
        temperature = pd.to_numeric(raw[temperature_col], errors="coerce").astype(float)
        temperature.index = index
    return _to_hourly_kwh(values, unit, temperature)


def _separator_hint(columns: pd.Index, sep: str) -> str:
    """What to pass when columns are missing: ``sep=`` if one header holds them all, else the names."""
    if len(columns) == 1:
        for other in (";", "\t", ",", "|"):
            if other != sep and other in str(columns[0]):
                return (
                    f"The header has one column only: the file separates its fields with "
                    f"{other!r}, not {sep!r}. Pass sep={other!r}."
                )
    return "Pass timestamp_col=... and value_col=... with the names your file uses."


def _check_path(path: object) -> Path:
    """``path`` as a :class:`~pathlib.Path`, or a sentence saying what a path looks like."""
    if (isinstance(path, str) and path.strip()) or isinstance(path, os.PathLike):
        return Path(path)
    raise DataError(
        f"load_meter_csv needs the path of a CSV file, e.g. load_meter_csv('meter.csv'); "
        f"got {path!r}."
    )


def _check_reading_options(
    dayfirst: object, date_format: object, encoding: object
) -> tuple[bool | None, str | None, str]:
    """``dayfirst``, ``date_format`` and ``encoding`` checked; UTF-8 also reads a byte order mark."""
    if dayfirst is not None and not isinstance(dayfirst, bool):
        raise DataError(
            f"dayfirst must be True (dd/mm/yyyy), False (mm/dd/yyyy) or None (the data "
            f"decides), got {dayfirst!r}."
        )
    if date_format is not None:
        if not isinstance(date_format, str) or "%" not in date_format:
            raise DataError(
                "date_format must be a strptime format such as '%d/%m/%Y %H:%M', "
                f"got {date_format!r}."
            )
        if dayfirst is not None:
            raise DataError(
                "Pass dayfirst= or date_format=, not both: the format already says where "
                "the day is."
            )
    try:
        name = codecs.lookup(encoding).name if isinstance(encoding, str) else None
    except LookupError:
        name = None
    if name is None:
        raise DataError(
            f"encoding must be the name of a text encoding such as 'utf-8', 'cp1252' or "
            f"'latin-1', got {encoding!r}."
        )
    return dayfirst, date_format, "utf-8-sig" if name == "utf-8" else str(encoding)


def check_reading_days(days: object, *, where: str = "load_readings") -> int:
    """``days`` as :func:`load_readings` takes it: a whole number from 1 to 36525 (100 years).

    The flows read their data with :func:`load_readings`, so this is also a
    limit of every run; deploying checks it too, with the same sentence.
    """
    return check_whole_number(
        days, "days", where=where, example="days=365", minimum=1, maximum=MAX_SIMULATED_DAYS
    )


def load_readings(
    source: str = "simulated",
    meter_id: str = "home-001",
    start: str | None = "2024-01-01",
    days: int = 365,
    seed: int = 42,
) -> pd.DataFrame:
    """One entry point for every source: what the pipeline's ingest step calls.

    ``source`` is one of:

    * ``"simulated"``: :func:`simulate_meter` makes ``days`` days of
      ``meter_id`` from ``start``, with ``seed``;
    * ``"uci"``: the real household shipped with the package
      (:func:`load_uci_household` without an argument; offline), which covers
      2006-12-16 17:00 to 2010-11-26 21:00. The whole period must lie inside
      it, or a :class:`DataError` gives the range and the starts that work
      (:func:`~energy_flows.data.uci.check_household_period`);
    * the path of a CSV file (columns ``timestamp`` and ``kwh``), or the path
      or http(s) address of a UCI raw file (``.txt`` or ``.zip``).

    For a file, ``start`` and ``days`` select the period (cut to what the
    file holds; refused when it holds none of it); an empty ``start`` takes
    the last ``days`` days of the file. ``meter_id`` and ``seed`` only
    matter for ``"simulated"``.
    """
    where = "load_readings"
    days = check_reading_days(days, where=where)
    if source == "simulated":
        return simulate_meter(meter_id, start=start or "2024-01-01", days=days, seed=seed)
    if source == HOUSEHOLD_SOURCE:
        # The range is known without reading the file: refuse a bad period first.
        first = check_household_period(start, days, where=where)
        household = load_uci_household()
        return household.loc[first : first + pd.Timedelta(days=days) - pd.Timedelta(seconds=1)]
    first = check_date(start, "start", where=where, example="2024-01-01") if start else None
    text = str(source)
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")) or lowered.endswith((".txt", ".zip")):
        readings = load_uci_household(text)
    elif lowered.endswith((".csv", ".csv.gz")):
        readings = load_meter_csv(text)
    else:
        raise DataError(
            f"Unknown source {source!r}. Use 'simulated', 'uci' (the real household shipped "
            "with the package), the path of a .csv file "
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
