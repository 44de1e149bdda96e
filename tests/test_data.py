"""Unit tests of the data half of the energy core: simulate, load, validate, clean."""

from __future__ import annotations

import gzip
import http.server
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from energy_flows.data import (
    MAX_FILL_HOURS,
    clean_readings,
    load_meter_csv,
    load_readings,
    load_uci_household,
    meter_statistics,
    meter_traits,
    simulate_meter,
    validate_readings,
)
from energy_flows.errors import DataError

PERFECT = dict(daylight_saving=False, dropouts=False, outages=False, false_zeros=False)


# --------------------------------------------------------------------------
# simulate_meter


def test_simulate_shape_and_columns() -> None:
    df = simulate_meter("home-001", start="2024-03-01", days=10, seed=1, **PERFECT)
    assert list(df.columns) == ["kwh", "temperature_c"]
    assert isinstance(df.index, pd.DatetimeIndex)
    assert df.index.name == "timestamp"
    assert df.index.tz is None
    assert len(df) == 240
    assert df["kwh"].notna().all()
    assert (df["kwh"] > 0).all()
    assert df.index.is_monotonic_increasing and df.index.is_unique


def test_simulate_is_deterministic_for_a_seed() -> None:
    a = simulate_meter("home-007", days=20, seed=3)
    b = simulate_meter("home-007", days=20, seed=3)
    c = simulate_meter("home-007", days=20, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a["kwh"].equals(c["kwh"])


def test_meters_differ_in_level_habits_and_heating() -> None:
    traits = [meter_traits(f"home-{i:03d}") for i in range(1, 6)]
    assert len({round(t.level_kwh, 4) for t in traits}) == 5
    assert len({round(t.routine_shift_h, 4) for t in traits}) == 5
    assert len({round(t.heating_kwh_per_degree, 5) for t in traits}) == 5
    means = [simulate_meter(f"home-{i:03d}", days=60, **PERFECT)["kwh"].mean() for i in (1, 2)]
    assert abs(means[0] - means[1]) > 0.01


def test_simulate_end_and_days() -> None:
    df = simulate_meter(start="2024-01-01", end="2024-01-03", **PERFECT)
    assert len(df) == 48
    with pytest.raises(DataError, match="at least one hour"):
        simulate_meter(start="2024-01-03", end="2024-01-01")


def test_simulate_winter_uses_more_and_heating_follows_cold() -> None:
    df = simulate_meter("home-001", start="2023-01-01", days=365, **PERFECT)
    month = df["kwh"].groupby(df.index.month).mean()
    assert month[[12, 1, 2]].mean() > 1.3 * month[[6, 7, 8]].mean()
    temp = df["temperature_c"].groupby(df.index.month).mean()
    assert temp[1] < 8 and temp[7] > 15


def test_daylight_saving_defects() -> None:
    df = simulate_meter(start="2024-03-30", days=2, outages=False, dropouts=False)
    assert pd.Timestamp("2024-03-31 02:00") not in df.index  # spring: 02:00 skipped
    autumn = simulate_meter(start="2024-10-26", days=2, outages=False, dropouts=False)
    assert autumn.index.duplicated().sum() == 1
    assert autumn.index[autumn.index.duplicated()][0] == pd.Timestamp("2024-10-27 02:00")
    # switched off: a regular grid
    regular = simulate_meter(start="2024-10-26", days=2, **PERFECT)
    assert regular.index.is_unique and len(regular) == 48


def test_each_defect_can_be_switched() -> None:
    clean = simulate_meter(days=400, seed=5, **PERFECT)
    assert clean["kwh"].notna().all() and (clean["kwh"] > 0).all()
    outages = simulate_meter(days=400, seed=5, **{**PERFECT, "outages": True})
    assert outages["kwh"].isna().sum() > 0
    zeros = simulate_meter(days=400, seed=5, **{**PERFECT, "false_zeros": True})
    assert (zeros["kwh"] == 0).sum() > 0
    spikes = simulate_meter(days=400, seed=5, **{**PERFECT, "spikes": True})
    assert (spikes["kwh"] > 36).sum() > 0
    assert (clean["kwh"] < 36).all()


@settings(max_examples=25, deadline=None)
@given(
    meter=st.text(alphabet="abcdefghij-0123456789", min_size=1, max_size=12),
    seed=st.integers(0, 2**31 - 1),
    days=st.integers(1, 40),
)
def test_simulate_properties(meter: str, seed: int, days: int) -> None:
    df = simulate_meter(meter, start="2024-05-01", days=days, seed=seed, spikes=False)
    values = df["kwh"].dropna()
    assert len(df) == 24 * days  # no daylight saving change in May
    assert (values >= 0).all()
    assert (values < 36).all()
    assert df["temperature_c"].between(-30, 45).all()


# --------------------------------------------------------------------------
# validate_readings


def _hourly(values: list[float], start: str = "2024-01-01") -> pd.DataFrame:
    index = pd.date_range(start, periods=len(values), freq="h", name="timestamp")
    return pd.DataFrame({"kwh": values}, index=index)


def test_validate_reports_every_defect() -> None:
    df = simulate_meter(start="2024-01-01", days=365, seed=3, spikes=True)
    report = validate_readings(df)
    assert list(report.columns) == ["status", "hours", "detail"]
    assert report.loc["duplicated timestamps", "hours"] == 1
    assert report.loc["missing hours", "hours"] > 0
    assert report.loc["implausible values", "status"] == "error"
    assert report.loc["exact zeros", "status"] == "warning"
    assert report.loc["unit", "status"] == "ok"


def test_validate_clean_input_is_all_ok() -> None:
    report = validate_readings(simulate_meter(days=30, **PERFECT))
    assert (report["status"] == "ok").all(), report


def test_validate_negative_and_unit_mistakes() -> None:
    report = validate_readings(_hourly([0.5, -0.2, 0.4, 0.6]))
    assert report.loc["negative values", "status"] == "error"
    in_wh = simulate_meter(days=10, **PERFECT)
    in_wh["kwh"] *= 1000
    report = validate_readings(in_wh)
    assert report.loc["unit", "status"] == "error"
    assert "Wh" in report.loc["unit", "detail"]


def test_validate_gap_and_order() -> None:
    df = _hourly([0.5] * 10)
    df = pd.concat([df.iloc[5:], df.iloc[:2]])  # hours 2..4 absent, out of order
    report = validate_readings(df)
    assert report.loc["timestamps in order", "status"] == "warning"
    assert report.loc["missing hours", "hours"] == 3
    assert report.loc["longest gap", "hours"] == 3


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (pd.DataFrame({"kwh": []}, index=pd.DatetimeIndex([])), "empty"),
        (_hourly([1.0, 2.0]).rename(columns={"kwh": "energy"}), "No 'kwh' column"),
        (pd.DataFrame({"kwh": [1.0, 2.0]}), "not dates"),
        (_hourly([np.nan, np.nan]), "missing"),
        (_hourly([1.0, 2.0]).astype({"kwh": str}), "not numbers"),
        ([1.0, 2.0], "Got a list"),
    ],
)
def test_validate_unusable_input_raises_clear_error(bad: object, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        validate_readings(bad)  # type: ignore[arg-type]
    assert "Expected a DataFrame" in str(info.value)
    with pytest.raises(DataError):
        clean_readings(bad)  # type: ignore[arg-type]


def test_timestamp_column_hint() -> None:
    df = _hourly([1.0, 2.0]).reset_index()
    with pytest.raises(DataError, match="set_index"):
        validate_readings(df)


# --------------------------------------------------------------------------
# clean_readings


def test_clean_fixes_daylight_saving_and_defects() -> None:
    raw = simulate_meter(start="2024-01-01", days=365, seed=11, spikes=True)
    clean = clean_readings(raw)
    assert clean.index.is_unique and clean.index.is_monotonic_increasing
    assert (clean.index[1:] - clean.index[:-1] == pd.Timedelta(hours=1)).all()
    assert clean.index[0] == pd.Timestamp("2024-01-01")
    values = clean["kwh"].dropna()
    assert (values > 0).all() and (values <= 36).all()
    # the skipped spring hour is filled, the autumn duplicate merged
    assert clean.loc["2024-03-31 02:00", "imputed"]
    assert clean["temperature_c"].notna().all()


def test_clean_fills_short_gaps_only() -> None:
    values = [1.0] * 5 + [np.nan] * MAX_FILL_HOURS + [2.0] * 5 + [np.nan] * 10 + [1.0] * 3
    clean = clean_readings(_hourly(values))
    assert clean["kwh"].iloc[5 : 5 + MAX_FILL_HOURS].notna().all()
    assert clean["kwh"].iloc[13:23].isna().all()
    assert clean["imputed"].sum() == MAX_FILL_HOURS
    # interpolation: between 1.0 and 2.0
    assert clean["kwh"].iloc[5:8].between(1.0, 2.0).all()


def test_clean_merges_duplicates_by_mean_and_drops_zeros() -> None:
    df = _hourly([1.0, 0.0, 3.0, 4.0])
    dup = pd.DataFrame({"kwh": [5.0]}, index=pd.DatetimeIndex(["2024-01-01 03:00"]))
    clean = clean_readings(pd.concat([df, dup]))
    assert clean.loc["2024-01-01 03:00", "kwh"] == pytest.approx(4.5)
    assert clean.loc["2024-01-01 01:00", "imputed"]  # the zero was treated as missing
    assert clean.loc["2024-01-01 01:00", "kwh"] == pytest.approx(2.0)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.floats(0, 50, allow_nan=False), st.just(float("nan")), st.just(0.0)),
        min_size=2,
        max_size=200,
    ),
    shuffle_seed=st.integers(0, 1000),
)
def test_clean_properties(values: list[float], shuffle_seed: int) -> None:
    df = _hourly(values)
    usable = (df["kwh"] > 0) & (df["kwh"] <= 36)
    if not usable.any():
        with pytest.raises(DataError):
            clean_readings(df)
        return
    shuffled = df.sample(frac=1.0, random_state=shuffle_seed)
    clean = clean_readings(shuffled)
    # a regular, sorted, unique hourly grid, never longer than the input span
    assert clean.index.is_unique and clean.index.is_monotonic_increasing
    if len(clean) > 1:
        assert (clean.index[1:] - clean.index[:-1] == pd.Timedelta(hours=1)).all()
    assert len(clean) <= len(df)
    kept = clean["kwh"].dropna()
    assert (kept > 0).all() and (kept <= 36).all()
    # cleaning is idempotent on the kwh values
    again = clean_readings(clean[["kwh"]].dropna())
    pd.testing.assert_series_equal(
        again["kwh"].dropna(), clean["kwh"].dropna().loc[again["kwh"].dropna().index]
    )


# --------------------------------------------------------------------------
# load_meter_csv


def test_load_meter_csv_roundtrip(tmp_path: Path) -> None:
    df = simulate_meter(days=5, **PERFECT)
    path = tmp_path / "meter.csv"
    df.reset_index().to_csv(path, index=False)
    loaded = load_meter_csv(path, temperature_col="temperature_c")
    assert loaded.index.name == "timestamp"
    np.testing.assert_allclose(loaded["kwh"], df["kwh"])
    np.testing.assert_allclose(loaded["temperature_c"], df["temperature_c"])


def test_load_meter_csv_units_and_quarter_hours(tmp_path: Path) -> None:
    index = pd.date_range("2024-01-01", periods=8, freq="15min")
    wh = pd.DataFrame({"when": index, "energy_wh": [250.0] * 8})
    wh = wh.drop(index=5)  # one quarter missing in the second hour
    path = tmp_path / "quarters.csv"
    wh.to_csv(path, sep=";", index=False)
    loaded = load_meter_csv(path, "when", "energy_wh", unit="Wh", sep=";")
    assert len(loaded) == 2
    np.testing.assert_allclose(loaded["kwh"], [1.0, 1.0])  # partial hour scaled up
    assert list(loaded["partial_hour"]) == [False, True]
    power = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=3, freq="h")})
    power["w"] = [500.0, 1000.0, 2000.0]
    power.to_csv(tmp_path / "w.csv", index=False)
    loaded = load_meter_csv(tmp_path / "w.csv", value_col="w", unit="w")
    np.testing.assert_allclose(loaded["kwh"], [0.5, 1.0, 2.0])


def test_load_meter_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="No file"):
        load_meter_csv(tmp_path / "absent.csv")
    path = tmp_path / "x.csv"
    path.write_text("time,value\n2024-01-01 00:00,1\n")
    with pytest.raises(DataError, match="its columns are"):
        load_meter_csv(path)
    with pytest.raises(DataError, match="Unknown unit"):
        load_meter_csv(path, "time", "value", unit="joules")
    path.write_text("time,value\nyesterday,1\nnoon,2\n")
    with pytest.raises(DataError, match="holds no dates"):
        load_meter_csv(path, "time", "value")


# --------------------------------------------------------------------------
# load_uci_household: raw format, zip, and download through a local server


def write_uci_file(path: Path, hours: int = 3, start: str = "2006-12-16 17:00") -> pd.DataFrame:
    """A small file in the raw UCI format: one line per minute, '?' where missing.

    Hour 0 is complete at 1.2 kW, hour 1 has 30 minutes missing, hour 2 has
    none observed; returns the minute table it wrote.
    """
    minutes = pd.date_range(start, periods=60 * hours, freq="min")
    power = np.full(len(minutes), 1.2)
    power[60:120] = np.linspace(0.5, 2.5, 60)
    text_power = [f"{p:.3f}" for p in power]
    for i in [*range(60, 90), *range(120, 180)]:
        if i < len(text_power):
            text_power[i] = "?"
    lines = [
        "Date;Time;Global_active_power;Global_reactive_power;Voltage;Global_intensity;"
        "Sub_metering_1;Sub_metering_2;Sub_metering_3"
    ]
    for ts, p in zip(minutes, text_power, strict=True):
        rest = "?;?;?;?;?;?" if p == "?" else "0.100;240.0;5.0;0.000;1.000;17.000"
        lines.append(f"{ts.day}/{ts.month}/{ts.year};{ts:%H:%M:%S};{p};{rest}")
    path.write_text("\n".join(lines) + "\n")
    return pd.DataFrame({"power": power}, index=minutes)


def test_load_uci_household_file(tmp_path: Path) -> None:
    path = tmp_path / "household_power_consumption.txt"
    minutes = write_uci_file(path)
    df = load_uci_household(path)
    assert list(df.index) == list(pd.date_range("2006-12-16 17:00", periods=3, freq="h"))
    assert df["kwh"].iloc[0] == pytest.approx(1.2)
    # mean power over the 30 observed minutes x 1 hour, not their sum
    assert df["kwh"].iloc[1] == pytest.approx(minutes["power"].iloc[90:120].mean(), abs=1e-3)
    assert np.isnan(df["kwh"].iloc[2])
    assert list(df["minutes_observed"]) == [60, 30, 0]
    assert list(df["partial_hour"]) == [False, True, False]
    report = validate_readings(df)
    assert report.loc["missing hours", "hours"] == 1


def test_load_uci_household_zip(tmp_path: Path) -> None:
    text = tmp_path / "household_power_consumption.txt"
    write_uci_file(text, hours=2)
    archive = tmp_path / "household_power_consumption.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(text, text.name)
    df = load_uci_household(archive)
    assert len(df) == 2 and df["kwh"].iloc[0] == pytest.approx(1.2)


def test_load_uci_household_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="No UCI file"):
        load_uci_household(tmp_path / "nothing.txt")
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="UCI household format"):
        load_uci_household(wrong)


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012 - shared on purpose: the test counts requests

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A local HTTP server on 127.0.0.1 serving a temporary folder."""
    folder = tmp_path / "www"
    folder.mkdir()
    hits: list[str] = []

    class Handler(_CountingHandler):
        pass

    Handler.hits = hits

    def handler(*args: object, **kwargs: object) -> Handler:
        return Handler(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder, hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_load_uci_household_downloads_once(
    http_folder: tuple[str, Path, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, folder, hits = http_folder
    home = tmp_path / "home"
    monkeypatch.setenv("ENERGY_FLOWS_HOME", str(home))
    text = folder / "household_power_consumption.txt"
    write_uci_file(text)
    with zipfile.ZipFile(folder / "household_power_consumption.zip", "w") as zf:
        zf.write(text, text.name)
    url = f"{base}/household_power_consumption.zip"
    first = load_uci_household(url)
    assert "downloading" in capsys.readouterr().err  # the progress bar
    cached = list((home / "cache").iterdir())
    assert len(cached) == 1 and cached[0].name.endswith("household_power_consumption.zip")
    second = load_uci_household(url)
    assert hits == ["/household_power_consumption.zip"]  # the second call used the cache
    pd.testing.assert_frame_equal(first, second)
    assert first["kwh"].iloc[0] == pytest.approx(1.2)
    # load_readings dispatches URLs the same way, and selects a period
    period = load_readings(url, start="2006-12-16", days=1)
    assert len(period) == 3 and len(hits) == 1


def test_download_error_is_clear(http_folder: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    base, _, _ = http_folder
    with pytest.raises(DataError, match="Could not download"):
        load_uci_household(f"{base}/missing.zip", cache_dir=tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").glob("*"))  # no half-written file left


# --------------------------------------------------------------------------
# load_readings and meter_statistics


def test_load_readings_sources(tmp_path: Path) -> None:
    sim = load_readings("simulated", "home-002", start="2024-02-01", days=3, seed=1)
    assert len(sim) == 72
    path = tmp_path / "m.csv.gz"
    with gzip.open(path, "wt") as fh:
        simulate_meter(days=20, **PERFECT).reset_index().to_csv(fh, index=False)
    period = load_readings(str(path), start="2024-01-05", days=2)
    assert period.index[0] == pd.Timestamp("2024-01-05") and len(period) == 48
    last = load_readings(str(path), start="", days=3)
    assert last.index[-1] == pd.Timestamp("2024-01-20 23:00") and len(last) == 72
    with pytest.raises(DataError, match="covers 2024-01-01 to 2024-01-20"):
        load_readings(str(path), start="2030-01-01", days=3)
    with pytest.raises(DataError, match="Unknown source"):
        load_readings("s3://bucket/file.parquet")


def test_meter_statistics_keys() -> None:
    stats = meter_statistics(simulate_meter(days=60, **PERFECT))
    assert len(stats["weekday_profile"]) == 24
    assert stats["missing_fraction"] == 0
    assert 0 < stats["acf_24"] < 1


def test_energy_core_does_not_import_prefect() -> None:
    code = (
        "import sys, energy_flows, energy_flows.data, energy_flows.forecasting, "
        "energy_flows.reports; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('prefect', 'IPython', 'ipywidgets')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
