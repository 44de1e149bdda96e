"""The UCI "Individual household electric power consumption" data: downloaded once, read as hourly kWh.

The real household the simulated meters were calibrated on (see the
README's "Data and citation"): one line per minute over four years, in a
``.txt`` file published inside a ``.zip``.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd

from energy_flows.errors import DataError

__all__ = ["load_uci_household"]


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
