"""The real household shipped with the package: read offline, and run through the flow.

``energy_flows/data/household/`` holds the UCI household summed into hours,
its licence and its attribution. ``load_uci_household()`` reads it without
any network; ``source="uci"`` hands it to ``load_readings`` and the flows,
which refuse a period outside it with a sentence that gives its range.
"""

from __future__ import annotations

import fnmatch
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import energy_flows
from energy_flows.data import load_readings, load_uci_household
from energy_flows.data.uci import (
    HOUSEHOLD_DAYS,
    HOUSEHOLD_FIRST_HOUR,
    HOUSEHOLD_LAST_HOUR,
    check_household_period,
)
from energy_flows.errors import DataError
from energy_flows.forecasting import PipelineResult, run_core_pipeline

ROOT = Path(__file__).resolve().parents[1]
HOUSEHOLD = Path(energy_flows.__file__).parent / "data" / "household"
ROWS = 34_589

# What a lesson runs: four months of winter, the last four weeks to judge the model.
LESSON = {"source": "uci", "start": "2010-01-01", "days": 120}


def _no_network(*args: object, **kwargs: object) -> Any:
    raise AssertionError(f"the network was used: {args!r}")


# --------------------------------------------------------------------------
# The shipped file


def test_the_household_loads_offline(fresh_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", _no_network)
    household = load_uci_household()
    assert len(household) == ROWS
    assert household.index[0] == pd.Timestamp("2006-12-16 17:00")
    assert household.index[-1] == pd.Timestamp("2010-11-26 21:00")
    assert household.index.name == "timestamp" and household.index.freqstr == "h"
    assert household.index.is_unique and household.index.is_monotonic_increasing
    # The hours without a reading stay missing, the partly observed ones are flagged.
    assert int(household["kwh"].isna().sum()) == 421
    assert int(household["partial_hour"].sum()) == 83
    assert household["kwh"].mean() == pytest.approx(1.092, abs=0.001)
    assert not (fresh_home / "cache").exists()  # nothing downloaded, nothing cached


def test_the_shipped_file_has_the_columns_of_the_raw_file(tmp_path: Path) -> None:
    """The same names and types as reading the original minute file, plus the sub-meters."""
    raw = tmp_path / "household_power_consumption.txt"
    minutes = pd.date_range("2006-12-16 17:00", periods=120, freq="min")
    lines = ["Date;Time;Global_active_power;Global_reactive_power;Voltage"]
    lines += [f"{t.day}/{t.month}/{t.year};{t:%H:%M:%S};1.200;0.1;240.0" for t in minutes]
    raw.write_text("\n".join(lines) + "\n")
    from_raw = load_uci_household(raw)
    shipped = load_uci_household()
    assert list(shipped.columns) == [
        *from_raw.columns,
        "submeter_kitchen_kwh",
        "submeter_laundry_kwh",
        "submeter_waterheater_ac_kwh",
    ]
    assert list(from_raw.columns) == ["kwh", "minutes_observed", "minutes_in_file", "partial_hour"]
    pd.testing.assert_series_equal(shipped.dtypes[: len(from_raw.columns)], from_raw.dtypes)
    assert shipped.index.dtype == from_raw.index.dtype
    # The first hour starts at 17:24 in the original: 36 minutes.
    assert shipped.iloc[0][["minutes_observed", "minutes_in_file"]].tolist() == [36, 36]


def test_the_range_constants_are_those_of_the_file() -> None:
    household = load_uci_household()
    assert household.index[0] == HOUSEHOLD_FIRST_HOUR
    assert household.index[-1] == HOUSEHOLD_LAST_HOUR
    assert len(pd.unique(household.index.normalize())) == HOUSEHOLD_DAYS == 1442


def test_the_data_travels_with_its_licence_and_attribution() -> None:
    """pyproject.toml puts every file of the folder in the wheel; the credit is there."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["energy_flows"]
    files = sorted(p.name for p in HOUSEHOLD.iterdir())
    assert files == ["LICENSE-CC-BY-4.0.txt", "README.md", "uci_household_hourly.csv.gz"]
    for name in files:
        assert any(fnmatch.fnmatch(f"data/household/{name}", p) for p in patterns), name
    readme = (HOUSEHOLD / "README.md").read_text(encoding="utf-8")
    for credit in (
        '"Individual Household Electric Power Consumption"',
        "Georges\nHébrail and Alice Bérard",
        "https://doi.org/10.24432/C58K54",
        "CC BY 4.0",
        "1-minute readings aggregated to hourly energy; missing minutes\nflagged; columns renamed.",
    ):
        assert credit in readme, credit
    licence = (HOUSEHOLD / "LICENSE-CC-BY-4.0.txt").read_text(encoding="utf-8")
    assert licence.startswith("Creative Commons Attribution 4.0 International")


# --------------------------------------------------------------------------
# source="uci": the period, and the sentence when it is outside the data


def test_load_readings_selects_a_period_of_the_household() -> None:
    period = load_readings("uci", start="2010-01-01", days=120)
    assert period.index[0] == pd.Timestamp("2010-01-01 00:00")
    assert period.index[-1] == pd.Timestamp("2010-04-30 23:00")
    assert len(period) == 120 * 24
    last = load_readings("uci", start="", days=7)
    assert last.index[0] == pd.Timestamp("2010-11-20 00:00")
    assert last.index[-1] == HOUSEHOLD_LAST_HOUR
    whole = load_readings("uci", start=None, days=HOUSEHOLD_DAYS)
    assert len(whole) == ROWS


@pytest.mark.parametrize(
    ("start", "days", "sentence"),
    [
        ("2024-01-01", 120, "start='2024-01-01' with days=120 is outside the data: the real household (source='uci') covers 2006-12-16 17:00 to 2010-11-26 21:00, 1442 calendar days. Pick a start from 2006-12-16 to 2010-07-30 for days=120 (e.g. start='2010-01-01'), or an empty start for the last 120 days."),
        ("2010-10-01", 120, "Pick a start from 2006-12-16 to 2010-07-30 for days=120"),
        ("2006-12-01", 60, "start='2006-12-01' with days=60 is outside the data"),
        ("2010-11-01", 60, "(e.g. start='2010-01-01')"),
        ("2010-06-01", 1400, "Pick a start from 2006-12-16 to 2007-01-27 for days=1400 (e.g. start='2007-01-27')"),
        ("", 2000, "days=2000 is longer than the data: the real household (source='uci') covers 2006-12-16 17:00 to 2010-11-26 21:00, 1442 calendar days. Use days=1442 or fewer"),
    ],
)  # fmt: skip
def test_a_period_outside_the_household_gives_its_range(
    start: str, days: int, sentence: str
) -> None:
    from energy_flows.data import check_pipeline_parameters as check_parameters

    with pytest.raises(DataError) as loading:
        load_readings("uci", start=start, days=days)
    assert str(loading.value).startswith("load_readings: ")
    assert sentence in str(loading.value)
    # The flow's own check, before any work: the same sentence, without the function's name.
    with pytest.raises(DataError) as flow:
        check_parameters(start=start, days=days, source="uci")
    assert str(flow.value) == str(loading.value).removeprefix("load_readings: ")


def test_a_bad_start_is_refused_like_everywhere_else() -> None:
    with pytest.raises(DataError, match=r"start must be a date such as 2010-01-01, got 'soon'"):
        check_household_period("soon", 30)
    with pytest.raises(DataError, match=r"days must be a whole number, got '30'"):
        check_household_period("2010-01-01", "30")


def test_the_flow_and_a_deployment_refuse_it_before_any_work() -> None:
    from energy_flows.errors import OrchestrationError
    from energy_flows.flows import energy_usage_batch, energy_usage_pipeline
    from energy_flows.orchestration.deployments.parameters import check_flow_rules

    with pytest.raises(DataError, match="covers 2006-12-16 17:00 to 2010-11-26 21:00"):
        energy_usage_pipeline.fn(source="uci", start="2024-01-01", days=120)
    with pytest.raises(DataError, match="covers 2006-12-16 17:00 to 2010-11-26 21:00"):
        energy_usage_batch.fn(source="uci", days=120)
    with pytest.raises(OrchestrationError, match=r"would refuse every run.*covers 2006-12-16"):
        check_flow_rules(energy_usage_pipeline, {"source": "uci", "days": 120})
    check_flow_rules(energy_usage_pipeline, {**LESSON})  # a period inside: accepted
    # Other sources are not judged by the range of the household.
    check_flow_rules(energy_usage_pipeline, {"source": "simulated", "start": "2024-01-01"})


# --------------------------------------------------------------------------
# The flow on the real household, on a real Prefect server


@pytest.fixture(scope="module")
def server(prefect_server: Any) -> Iterator[Any]:
    """The session's server; this module's run logs and events sent before it stops."""
    yield prefect_server
    from energy_flows.prefect_internals import flush_to_server

    flush_to_server()


@pytest.mark.server
def test_the_pipeline_runs_on_the_real_household(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from energy_flows.flows import energy_usage_pipeline

    # Offline: the data comes from the package (Prefect's own client does not use urllib).
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    state = energy_usage_pipeline(meter_id="uci-household", **LESSON, return_state=True)
    assert state.is_completed(), state
    result = state.result()
    assert isinstance(result, PipelineResult)
    assert result.source == "uci"
    assert result.period == ("2010-01-01", "2010-04-30")
    assert result.details["test_hours"] == 28 * 24

    # The model against the two baselines, on four real weeks of 2010.
    metrics = result.metrics
    print("\nreal household, 2010-01-01 + 120 days:\n" + metrics.to_string())
    assert list(metrics.index) == ["predicted", "same_hour_yesterday", "same_hour_last_week"]
    assert result.beats_baselines
    assert metrics.loc["predicted", "mae_kwh"] < metrics.loc["same_hour_yesterday", "mae_kwh"]
    assert metrics.loc["predicted", "mae_kwh"] < metrics.loc["same_hour_last_week", "mae_kwh"]
    assert result.improvement_pct >= 5

    # The flow is a thin wrapper: the same numbers as the pure pipeline on the same hours.
    readings = load_readings(LESSON["source"], start=LESSON["start"], days=LESSON["days"])
    core = run_core_pipeline(readings, "uci-household", test_days=28, source="uci")
    pd.testing.assert_frame_equal(core.metrics, result.metrics)
