"""Reading a day-first meter file: pandas guessing each date against ``load_meter_csv``.

    .venv/bin/python benchmarks/bench_dates.py [--rows 2000000] [--repeat 3]
    .venv/bin/python benchmarks/bench_dates.py --against main   # also an older load_meter_csv

Writes a meter export of ``--rows`` quarter-hour readings with its dates day
first (``31/01/2024 13:15``, as European meters write them), and the same
readings with ISO dates, then times, side by side in one run:

* ``guessing``: plain pandas without a format, ``read_csv`` then
  ``to_datetime(format="mixed")`` (what ``load_meter_csv`` did before it read
  the order off the data): each value is guessed on its own, month first
  where it can be;
* ``load_meter_csv``: the package's loader, which finds the order (a day
  above 12 decides) and reads every value with it;
* ``load_meter_csv, ISO file``: the same readings written year first, for
  reference;
* with ``--against REV``: ``load_meter_csv`` as it is in that git revision of
  this checkout (its ``energy_flows/data/loading.py``).

Besides the time (median of ``--repeat``), each side reports how many hours it
put on the wrong day: a reading of 01/02/2024 that lands on 2 January is one.
A benchmark, not a test: times on a shared machine vary by about 30 %.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from energy_flows.data import load_meter_csv  # noqa: E402


def write_files(folder: Path, rows: int) -> tuple[Path, Path, pd.Series]:
    """A day-first and an ISO copy of one export; returns both and the true hourly kWh."""
    stamps = pd.date_range("2020-01-01", periods=rows, freq="15min")
    wh = np.random.default_rng(7).uniform(50, 400, rows).round(1)
    day_first, iso = folder / "day_first.csv", folder / "iso.csv"
    frame = pd.DataFrame({"timestamp": stamps.strftime("%d/%m/%Y %H:%M"), "wh": wh})
    frame.to_csv(day_first, index=False)
    frame.assign(timestamp=stamps.strftime("%Y-%m-%d %H:%M")).to_csv(iso, index=False)
    truth = pd.Series(wh / 1000, index=stamps).groupby(stamps.floor("h")).sum()
    return day_first, iso, truth


def guessing(path: Path) -> pd.Series:
    """Plain pandas with no format: every value guessed on its own, then summed into hours."""
    raw = pd.read_csv(path)
    stamps = pd.DatetimeIndex(pd.to_datetime(raw["timestamp"], format="mixed", errors="coerce"))
    return pd.Series(raw["wh"].to_numpy() / 1000, index=stamps).groupby(stamps.floor("h")).sum()


def package(path: Path) -> pd.Series:
    return load_meter_csv(path, value_col="wh", unit="wh")["kwh"]


def older_loader(rev: str) -> Callable[[Path], pd.Series]:
    """``load_meter_csv`` of git revision ``rev``, loaded from its source beside today's package."""
    source = subprocess.run(
        ["git", "-C", str(HERE.parent), "show", f"{rev}:energy_flows/data/loading.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="ef-old-loading-"))
    (folder / "old_loading.py").write_text(source)
    spec = importlib.util.spec_from_file_location("old_loading", folder / "old_loading.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shutil.rmtree(folder, ignore_errors=True)
    return lambda path: module.load_meter_csv(path, value_col="wh", unit="wh")["kwh"]


def misplaced_hours(hourly: pd.Series, truth: pd.Series) -> int:
    """Hours whose kWh is not the true kWh of that hour (read on another day, or missing)."""
    merged = hourly.groupby(level=0).sum().reindex(truth.index)
    return int((~np.isclose(merged.to_numpy(), truth.to_numpy(), atol=1e-9)).sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="quarter-hour readings")
    parser.add_argument("--repeat", type=int, default=3, help="times per side (median shown)")
    parser.add_argument(
        "--against", metavar="REV", help="also time load_meter_csv of this git revision"
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="ef-dates-"))
    try:
        day_first, iso, truth = write_files(folder, args.rows)
        sides: list[tuple[str, Callable[[], pd.Series]]] = [
            ("guessing: pandas, format='mixed'", lambda: guessing(day_first)),
            ("load_meter_csv", lambda: package(day_first)),
            ("load_meter_csv, ISO file", lambda: package(iso)),
        ]
        if args.against:
            old = older_loader(args.against)
            sides.insert(1, (f"load_meter_csv of {args.against}", lambda: old(day_first)))
        print(f"{args.rows} quarter-hour readings ({len(truth)} hours), day first, "
              f"{day_first.stat().st_size / 1e6:.0f} MB")  # fmt: skip
        results = {}
        for name, call in sides:
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                hourly = call()
                times.append(time.perf_counter() - started)
            results[name] = (statistics.median(times), times, misplaced_hours(hourly, truth))
            print(f"  {name}: {results[name][0]:.1f} s", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    reference = results["load_meter_csv"][0]
    print()
    print(
        f"{'side':<38} {'median s':>9} {'all runs':>20} {'x load_meter_csv':>17} {'hours misplaced':>16}"
    )
    for name, (median, times, wrong) in results.items():
        every = "/".join(f"{t:.1f}" for t in times)
        print(f"{name:<38} {median:>9.1f} {every:>20} {median / reference:>17.1f} "
              f"{wrong:>9} of {len(truth)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
