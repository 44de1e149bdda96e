"""Dates in a meter's CSV file: read as the file means them, or refused; never misread.

Each test writes a real file the way a meter or a spreadsheet writes it (ISO,
day first as in Europe, month first as in the US, 12-hour clocks, dots and
dashes) and checks that ``load_meter_csv`` gives the same hours as the same
readings written in ISO, or refuses with a message that says what to pass.
"""

from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from energy_flows.data import load_meter_csv, simulate_meter
from energy_flows.errors import DataError


def _readings(start: str = "2024-01-01", days: int = 60) -> pd.DataFrame:
    """Hourly readings without clock changes: every timestamp appears once."""
    return simulate_meter("home-dates", start=start, days=days, timezone=None)


def _write(frame: pd.DataFrame, path: Path, date_format: str, sep: str = ",") -> Path:
    out = frame.reset_index()
    out["timestamp"] = out["timestamp"].dt.strftime(date_format)
    out.to_csv(path, index=False, sep=sep)
    return path


def _same_hours(loaded: pd.DataFrame, truth: pd.DataFrame) -> None:
    assert list(loaded.index) == list(truth.index)
    np.testing.assert_allclose(loaded["kwh"], truth["kwh"])


def test_an_iso_file_loads_as_written(tmp_path: Path) -> None:
    truth = _readings()
    loaded = load_meter_csv(_write(truth, tmp_path / "iso.csv", "%Y-%m-%d %H:%M"))
    _same_hours(loaded, truth)
    # seconds and the T of ISO 8601 too
    _same_hours(load_meter_csv(_write(truth, tmp_path / "t.csv", "%Y-%m-%dT%H:%M:%S")), truth)


def test_a_day_first_file_loads_right_when_a_day_is_above_12(tmp_path: Path) -> None:
    truth = _readings("2024-01-01", days=60)
    path = _write(truth, tmp_path / "european.csv", "%d/%m/%Y %H:%M")
    assert path.read_text().splitlines()[1].startswith("01/01/2024 00:00")
    _same_hours(load_meter_csv(path), truth)
    _same_hours(load_meter_csv(path, dayfirst=True), truth)  # saying it changes nothing
    # 01/02/2024 is the 1st of February here, not the 2nd of January
    assert load_meter_csv(path).loc["2024-02-01 05:00", "kwh"] == pytest.approx(
        truth.loc["2024-02-01 05:00", "kwh"]
    )


@pytest.mark.parametrize(
    "date_format",
    [
        "%d.%m.%Y %H:%M",  # German meters
        "%d-%m-%Y %H:%M:%S",
        "%d/%m/%y %H:%M",  # two-digit years
        "%d/%m/%Y",  # daily exports have no time
    ],
)
def test_other_day_first_spellings_load_right(tmp_path: Path, date_format: str) -> None:
    truth = _readings("2024-03-01", days=30)
    daily = "%H" not in date_format
    if daily:
        truth = truth.resample("D").sum()
    path = _write(truth, tmp_path / "meter.csv", date_format, sep=";")
    loaded = load_meter_csv(path, sep=";")
    if daily:  # a day's kWh is spread over its hours: kWh per hour, as for any interval
        loaded["kwh"] *= 24
    _same_hours(loaded, truth)


def test_a_month_first_file_loads_right_when_a_day_is_above_12(tmp_path: Path) -> None:
    truth = _readings("2024-01-01", days=40)
    _same_hours(load_meter_csv(_write(truth, tmp_path / "us.csv", "%m/%d/%Y %H:%M")), truth)
    # a 12-hour clock as US spreadsheets write it: 12:00 AM is midnight
    path = _write(truth, tmp_path / "us12.csv", "%m/%d/%Y %I:%M %p")
    assert path.read_text().splitlines()[1].startswith("01/01/2024 12:00 AM")
    _same_hours(load_meter_csv(path), truth)


def test_values_without_leading_zeros_and_mixed_separators_load_right(tmp_path: Path) -> None:
    path = tmp_path / "by-hand.csv"
    path.write_text(
        "timestamp,kwh\n"
        "1/2/2024 0:00,1.0\n"  # 1 February: the lines below show the day comes first
        "1-2-2024 1:00,2.0\n"
        "1.2.2024 2:00,3.0\n"
        "13/2/2024 9:00,4.0\n"
    )
    loaded = load_meter_csv(path)
    assert list(loaded.index.strftime("%Y-%m-%d %H:%M")) == [
        "2024-02-01 00:00",
        "2024-02-01 01:00",
        "2024-02-01 02:00",
        "2024-02-13 09:00",
    ]


def test_an_ambiguous_file_is_refused_with_both_readings(tmp_path: Path) -> None:
    truth = _readings("2024-01-01", days=12)  # days 1-12: every day and month is 12 or less
    path = _write(truth, tmp_path / "first-days.csv", "%d/%m/%Y %H:%M")
    with pytest.raises(DataError) as info:
        load_meter_csv(path)
    message = str(info.value)
    assert message.startswith(
        f"The column 'timestamp' of {path} can be read day first or month first: no day or "
        "month in it is above 12, so the file does not say which. Line 2, '01/01/2024 00:00'"
    )
    assert (
        "  dayfirst=True:  2024-01-01 00:00 to 2024-01-12 23:00, largest gap between readings 1 hour\n"
        "  dayfirst=False: 2024-01-01 00:00 to 2024-12-01 23:00, largest gap between readings 30 days 1 hour\n"
        "Say which one the meter writes: load_meter_csv(..., dayfirst=True) or dayfirst=False."
    ) in message
    # what the message offers works, both ways
    _same_hours(load_meter_csv(path, dayfirst=True), truth)
    month_first = load_meter_csv(path, dayfirst=False)
    assert month_first.index[24] == pd.Timestamp("2024-02-01 00:00")  # 02/01 read as 1 Feb


def test_the_ambiguous_message_spells_one_line_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("timestamp,kwh\n\n01/02/2024 00:00,1\n02/02/2024 00:00,1\n")
    with pytest.raises(DataError) as info:
        load_meter_csv(path)
    assert (
        "Line 3, '01/02/2024 00:00', is 1 February 2024 day first (dd/mm/yyyy, as in Europe) "
        "or 2 January 2024 month first (mm/dd/yyyy, as in the US)."
    ) in str(info.value)


def test_dayfirst_that_contradicts_the_data_is_refused(tmp_path: Path) -> None:
    truth = _readings("2024-01-01", days=20)
    path = _write(truth, tmp_path / "european.csv", "%d/%m/%Y %H:%M")
    with pytest.raises(DataError) as info:
        load_meter_csv(path, dayfirst=False)
    assert str(info.value) == (
        f"dayfirst=False reads the column 'timestamp' of {path} month first, but its month "
        f"would be above 12 on line 290: '13/01/2024 00:00', line 291: '13/01/2024 01:00', "
        "line 292: '13/01/2024 02:00': that file writes the day first. Pass dayfirst=True, or "
        "leave dayfirst out to let the data decide."
    )


def test_a_file_that_writes_dates_both_ways_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "merged.csv"
    path.write_text("timestamp,kwh\n13/01/2024 00:00,1\n01/14/2024 00:00,1\n")
    with pytest.raises(DataError) as info:
        load_meter_csv(path)
    assert str(info.value) == (
        f"The column 'timestamp' of {path} writes dates both ways: line 2: '13/01/2024 00:00' "
        "(day first), but line 3: '01/14/2024 00:00' (month first). Correct the lines written "
        "the other way, then load the file again."
    )


def test_a_date_that_does_not_exist_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "feb.csv"
    path.write_text("timestamp,kwh\n28/02/2023 23:00,1\n29/02/2023 00:00,1\n")
    with pytest.raises(DataError) as info:
        load_meter_csv(path)
    assert str(info.value) == (
        f"The column 'timestamp' of {path} has values that are not dates when read day "
        "first: line 3: '29/02/2023 00:00'. Correct or delete those lines, or pass "
        "date_format=... for the way they are written."
    )


def test_a_line_that_is_not_a_date_is_refused_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "footer.csv"
    path.write_text("timestamp,kwh\n2024-01-01 00:00,1\n2024-01-01 01:00,1\nTotal,2\n")
    with pytest.raises(DataError, match=r"line 4: 'Total'\. Correct or delete those lines"):
        load_meter_csv(path)
    path.write_text("timestamp,kwh\n2024-01-01 00:00,1\n,2\n")
    with pytest.raises(DataError) as info:
        load_meter_csv(path)
    assert str(info.value) == (
        f"{path} has rows without a 'timestamp': line 3. A reading needs its time: add it, "
        "or delete the line."
    )
    # a line with no value at all (a spreadsheet's trailing ",") is no reading: left out
    path.write_text("timestamp,kwh\n2024-01-01 00:00,1\n,\n")
    assert len(load_meter_csv(path)) == 1


def test_date_format_reads_every_value_with_that_format(tmp_path: Path) -> None:
    truth = _readings("2024-01-01", days=5)
    path = _write(truth, tmp_path / "odd.csv", "%Y%m%d %H%M")
    _same_hours(load_meter_csv(path, date_format="%Y%m%d %H%M"), truth)
    # an ambiguous file needs no dayfirst= when the format says it
    path = _write(truth, tmp_path / "first-days.csv", "%d/%m/%Y %H:%M")
    _same_hours(load_meter_csv(path, date_format="%d/%m/%Y %H:%M"), truth)
    with pytest.raises(DataError) as info:
        load_meter_csv(path, date_format="%d.%m.%Y %H:%M")
    assert str(info.value) == (
        f"No value of the column 'timestamp' of {path} reads with date_format='%d.%m.%Y %H:%M' "
        "(line 2: '01/01/2024 00:00'). Pass the format they are written in, e.g. "
        "'%d/%m/%Y %H:%M' for 31/01/2024 13:00, or leave date_format out to let the data "
        "decide."
    )


def test_time_zone_offsets_keep_the_clock_time_across_a_clock_change(tmp_path: Path) -> None:
    path = tmp_path / "offsets.csv"
    path.write_text(
        "timestamp,kwh\n"
        "2024-03-31T00:00:00+01:00,1\n"
        "2024-03-31T01:00:00+01:00,2\n"
        "2024-03-31T03:00:00+02:00,3\n"  # summer time: 02:00 does not exist
        "2024-03-31T04:00:00+02:00,4\n"
        "2024-03-31T05:00:00+02:00,5\n"
    )
    loaded = load_meter_csv(path)
    assert list(loaded.index.strftime("%H:%M")) == ["00:00", "01:00", "03:00", "04:00", "05:00"]
    assert list(loaded["kwh"]) == [1.0, 2.0, 3.0, 4.0, 5.0]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.dates(min_value=pd.Timestamp("2000-01-01").date(), max_value=pd.Timestamp("2030-12-31").date()),
    hours=st.integers(min_value=1, max_value=24 * 40),
    day_first=st.booleans(),
)  # fmt: skip
def test_a_file_is_read_right_or_refused_never_misread(
    tmp_path: Path, start: object, hours: int, day_first: bool
) -> None:
    stamps = pd.date_range(pd.Timestamp(start), periods=hours, freq="h")
    truth = pd.DataFrame({"kwh": np.arange(hours, dtype=float) + 1}, index=stamps)
    truth.index.name = "timestamp"
    path = _write(
        truth, tmp_path / "meter.csv", "%d/%m/%Y %H:%M" if day_first else "%m/%d/%Y %H:%M"
    )
    try:
        loaded = load_meter_csv(path)
    except DataError as exc:
        assert "can be read day first or month first" in str(exc)
        assert "dayfirst=True" in str(exc)
        # the day is never above 12 in a refused file; saying which reads it right
        assert (stamps.day <= 12).all()
        loaded = load_meter_csv(path, dayfirst=day_first)
    assert list(loaded.index) == list(stamps)
    assert list(loaded["kwh"]) == list(truth["kwh"])
