"""The UCI "Individual household electric power consumption" data: one real household, as hourly kWh.

The real household the simulated meters were calibrated on (see the
README's "Data and citation"). It comes in two forms:

* **shipped with the package**, already summed into hours
  (``energy_flows/data/household/``, with its licence and a README that says
  what was changed): ``load_uci_household()`` reads it, offline, in a
  fraction of a second, and ``source="uci"`` hands it to the pipeline;
* **the original**, one line per minute over four years in a ``.txt`` file
  published inside a ``.zip``: ``load_uci_household(path_or_url)`` reads it
  (downloading it once when given an address) and sums it into hours the
  same way.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import urllib.parse
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path

import pandas as pd

from energy_flows.data.arguments import check_date, check_whole_number, message_prefix
from energy_flows.errors import DataError

__all__ = [
    "HOUSEHOLD_DAYS",
    "HOUSEHOLD_FIRST_HOUR",
    "HOUSEHOLD_LAST_HOUR",
    "HOUSEHOLD_SOURCE",
    "check_household_period",
    "load_uci_household",
]

#: The ``source`` that names the shipped household (:func:`~energy_flows.data.load_readings`
#: and the flows' ``source`` parameter).
HOUSEHOLD_SOURCE = "uci"
#: The first and the last hour of the shipped household: the meter starts at
#: 17:24 on the first day and stops at 21:02 on the last.
HOUSEHOLD_FIRST_HOUR = pd.Timestamp("2006-12-16 17:00")
HOUSEHOLD_LAST_HOUR = pd.Timestamp("2010-11-26 21:00")
#: The calendar days it touches, 2006-12-16 to 2010-11-26 (the first and the last only in part).
HOUSEHOLD_DAYS = (HOUSEHOLD_LAST_HOUR.normalize() - HOUSEHOLD_FIRST_HOUR.normalize()).days + 1

#: The shipped file, inside the package ``energy_flows.data``.
_HOUSEHOLD_FOLDER = "household"
_HOUSEHOLD_FILE = "uci_household_hourly.csv.gz"
#: The sub-meters of the shipped file (the original minute file is read without them).
_SUBMETERS = ("submeter_kitchen_kwh", "submeter_laundry_kwh", "submeter_waterheater_ac_kwh")


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


def check_household_period(start: object, days: object, *, where: str = "") -> pd.Timestamp:
    """The first day of ``days`` days from ``start`` in the shipped household, or a clear refusal.

    The shipped household covers :data:`HOUSEHOLD_FIRST_HOUR` to
    :data:`HOUSEHOLD_LAST_HOUR` (2006-12-16 17:00 to 2010-11-26 21:00): the
    whole period, ``start`` and the ``days - 1`` days after it, must lie on
    those :data:`HOUSEHOLD_DAYS` calendar days. An empty ``start`` (``""`` or
    ``None``) means the last ``days`` days, up to 2010-11-26.

    The range is known without reading the file, so the flows call this
    before any work (:func:`energy_flows.data.check_pipeline_parameters`), and a
    deployment whose every run would be refused is refused at once.

    >>> check_household_period("2010-01-01", 120)
    Timestamp('2010-01-01 00:00:00')
    >>> check_household_period("", 7)
    Timestamp('2010-11-20 00:00:00')

    Raises :class:`~energy_flows.errors.DataError` that gives the range, the
    starts that work for these ``days`` and an example.
    """
    days = check_whole_number(days, "days", where=where, example="days=120", minimum=1)
    first_day = HOUSEHOLD_FIRST_HOUR.normalize()
    covers = (
        f"the real household (source='uci') covers {HOUSEHOLD_FIRST_HOUR:%Y-%m-%d %H:%M} to "
        f"{HOUSEHOLD_LAST_HOUR:%Y-%m-%d %H:%M}, {HOUSEHOLD_DAYS} calendar days"
    )
    if days > HOUSEHOLD_DAYS:
        raise DataError(
            f"{message_prefix(where)}days={days} is longer than the data: {covers}. "
            f"Use days={HOUSEHOLD_DAYS} or fewer, e.g. start='2010-01-01', days=120."
        )
    latest = HOUSEHOLD_LAST_HOUR.normalize() - pd.Timedelta(days=days - 1)
    if start is None or (isinstance(start, str) and not start.strip()):
        return latest
    first = check_date(start, "start", where=where, example="2010-01-01")
    if first < first_day or first > latest:
        example = min(latest, pd.Timestamp("2010-01-01"))
        raise DataError(
            f"{message_prefix(where)}start={start!r} with days={days} is outside the data: "
            f"{covers}. Pick a start from {first_day:%Y-%m-%d} to {latest:%Y-%m-%d} for "
            f"days={days} (e.g. start='{example:%Y-%m-%d}'), or an empty start for the "
            f"last {days} days."
        )
    return first


def _read_shipped_household() -> pd.DataFrame:
    """The hourly file shipped in ``energy_flows/data/household``, in the shape of the raw-file path."""
    resource = resources.files("energy_flows.data") / _HOUSEHOLD_FOLDER / _HOUSEHOLD_FILE
    if not resource.is_file():
        raise DataError(
            f"The household data shipped with energy_flows is missing ({resource}). Reinstall "
            "the package (pip install --force-reinstall energy-flows), or pass the path or "
            "http(s) address of the original file to load_uci_household()."
        )
    # Opened as a stream (not a path): works from a wheel, an editable install or a zip.
    with resource.open("rb") as stream:
        raw = pd.read_csv(stream, compression="gzip", parse_dates=["timestamp"])
    out = pd.DataFrame(
        {
            "kwh": raw["kwh"].to_numpy(dtype="float64"),
            "minutes_observed": raw["minutes_observed"].to_numpy(dtype="int64"),
            "minutes_in_file": raw["minutes_in_grid"].to_numpy(dtype="int64"),
        },
        index=pd.DatetimeIndex(raw["timestamp"], name="timestamp"),
    )
    out["partial_hour"] = (out["minutes_observed"] > 0) & (out["minutes_observed"] < 60)
    for name in _SUBMETERS:
        out[name] = raw[name].to_numpy(dtype="float64")
    return out.asfreq("h")  # already one row per hour: this only records it on the index


def load_uci_household(
    path_or_url: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Load the UCI "Individual household electric power consumption" data, as hourly kWh.

    Without an argument, the copy shipped with the package, offline::

        household = load_uci_household()   # 34,589 hours, 2006-12-16 17:00 to 2010-11-26 21:00

    It was summed into hours from the original minute file, the way this
    function sums that file (below), and reads in a fraction of a second
    without any network. It holds the same columns as the original gives,
    plus the three sub-meters (``submeter_kitchen_kwh``,
    ``submeter_laundry_kwh``, ``submeter_waterheater_ac_kwh``, in kWh).
    ``energy_flows/data/household/README.md`` credits the authors (CC BY 4.0)
    and says what was changed. The pipeline reads it with ``source="uci"``.

    With an argument, the original: a path or an ``http(s)://`` address of
    ``household_power_consumption.txt`` or of the ``.zip`` it is published
    in (20 MB zipped, 2 million lines, one per minute)::

        Date;Time;Global_active_power;Global_reactive_power;Voltage;...
        16/12/2006;17:24:00;4.216;0.418;234.840;...

    separated by ``;``, with ``?`` for a missing minute and the power in kW.
    An address is downloaded once into ``<home>/cache`` (see
    :func:`energy_flows.settings.home_dir`; ``cache_dir`` to put it
    elsewhere), with a progress bar on stderr unless ``progress=False``, and
    read from there the next time. ``cache_dir`` and ``progress`` play no
    part without an address.

    Either way, the result is indexed by ``timestamp`` (the start of each
    hour, local clock time, one row per hour) with the columns:

    * ``kwh``: the mean power over the hour's observed minutes x 1 h, ``NaN``
      when no minute was observed;
    * ``minutes_observed``: how many minutes had a reading (0 to 60);
    * ``minutes_in_file``: how many lines the file has for the hour;
    * ``partial_hour``: some, but not all, of the hour's 60 minutes observed.
    """
    if path_or_url is None:
        return _read_shipped_household()
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
                "(or its .zip), or an http(s) address to download it from; or call "
                "load_uci_household() without an argument for the hourly copy shipped "
                "with the package."
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
            f"'Date;Time;Global_active_power;...' and ';' separators): {exc}"
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
