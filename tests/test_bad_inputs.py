"""Bad input gives one clear error that says what to change, and loses nothing.

Each test feeds what a learner might really type (a header-only CSV, a folder,
``days='7'``, a NaN interval, ``days=-5`` in a deployment) and checks the
message they would read. The deployment tests use the session's real Prefect
server (``prefect_server``) and prove that nothing was created.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from energy_flows.data import (
    clean_readings,
    load_meter_csv,
    load_readings,
    simulate_meter,
    validate_readings,
)
from energy_flows.errors import DataError, OrchestrationError


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# --------------------------------------------------------------------------- load_meter_csv


def test_header_only_csv_says_it_has_no_rows_and_shows_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "meter.csv"
    path.write_text("timestamp,kwh\n")
    with pytest.raises(DataError) as info:
        load_meter_csv(path)
    message = str(info.value)
    assert f"{path} has a header (timestamp,kwh) but no rows" in message
    assert "timestamp,kwh\n    2024-01-01 00:00,0.65\n    2024-01-01 01:00,0.74" in message

    # the example uses the file's own column names and separator
    path.write_text("when;energy_wh\n")
    with pytest.raises(DataError) as info:
        load_meter_csv(path, "when", "energy_wh", unit="wh", sep=";")
    assert "when;energy_wh\n    2024-01-01 00:00;0.65" in str(info.value)


def test_empty_csv_says_it_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError) as info:
        load_meter_csv(path)
    assert "is empty: not even a header line" in str(info.value)
    assert "timestamp,kwh" in str(info.value)


def test_folder_instead_of_csv_names_the_csv_files_inside(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a meter file")
    with pytest.raises(DataError) as info:
        load_meter_csv(folder)
    assert str(info.value) == (
        f"{folder} is a folder, not a CSV file. It holds no .csv file. "
        "Pass the path of the CSV file itself, not its folder."
    )

    simulate_meter(days=2).reset_index().to_csv(folder / "home-001.csv", index=False)
    (folder / "home-002.csv").write_text("timestamp,kwh\n2024-01-01 00:00,0.5\n")
    with pytest.raises(DataError) as info:
        load_meter_csv(folder)
    assert str(info.value) == (
        f"{folder} is a folder, not a CSV file. It holds these CSV files: home-001.csv, "
        f"home-002.csv. Pass one of them, e.g. load_meter_csv('{folder / 'home-001.csv'}')."
    )
    # what the message suggests works
    assert len(load_meter_csv(folder / "home-001.csv")) == 48


def test_a_value_column_without_numbers_says_so(tmp_path: Path) -> None:
    path = tmp_path / "comma.csv"
    path.write_text('timestamp;kwh\n2024-01-01 00:00;"0,65"\n2024-01-01 01:00;"0,74"\n')
    with pytest.raises(DataError) as info:
        load_meter_csv(path, sep=";")
    assert "Column 'kwh' of" in str(info.value)
    assert "holds no numbers (first value: '0,65')" in str(info.value)


# --------------------------------------------------------------------------- simulate_meter


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": "7"}, "simulate_meter: days must be a whole number, got '7' of type str. Example: days=7."),
        ({"days": float("nan")}, "days must be a whole number, got nan of type float. Example: days=7."),
        ({"days": float("inf")}, "days must be a whole number, got inf of type float"),
        ({"days": 7.5}, "days must be a whole number, got 7.5 of type float"),
        ({"days": True}, "days must be a whole number, got True of type bool"),
        ({"days": -5}, "simulate_meter: days must be at least 1, got -5. Example: days=7."),
        ({"days": 0}, "days must be at least 1, got 0"),
        ({"days": 10**7}, "days must be at most 36525, got 10000000"),
        ({"start": "not a date"}, "simulate_meter: start must be a date such as 2024-01-01, got 'not a date' of type str. Write it as YYYY-MM-DD, e.g. start='2024-01-01'."),
        ({"start": ""}, "start must be a date such as 2024-01-01, got '' of type str"),
        ({"start": None}, "start must be a date such as 2024-01-01, got None"),
        ({"start": 2024}, "start must be a date such as 2024-01-01, got 2024 of type int"),
        ({"start": "2024-01-01T00:00+01:00"}, "start must be local clock time without a time zone"),
        ({"end": "soon"}, "end must be a date such as 2024-02-01, got 'soon' of type str"),
        ({"seed": -1}, "simulate_meter: seed must be at least 0, got -1. Example: seed=42."),
        ({"seed": float("nan")}, "seed must be a whole number, got nan of type float. Example: seed=42."),
        ({"seed": "42"}, "seed must be a whole number, got '42' of type str"),
        ({"dropouts": "no"}, "dropouts must be True or False, got 'no' of type str. Example: dropouts=False."),
        ({"daylight_saving": None}, "daylight_saving must be True or False, got None"),
        ({"timezone": "Mars/Olympus"}, "timezone must be an IANA time zone name, got 'Mars/Olympus' of type str. Example: timezone='Europe/Paris'"),
        ({"meter_id": 7}, "meter_id must be text, got 7 of type int. Example: meter_id='home-001'."),
    ],
)  # fmt: skip
def test_simulate_meter_names_the_bad_argument_and_a_good_value(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(DataError) as info:
        simulate_meter(**kwargs)
    assert message in str(info.value)


def test_simulate_meter_still_takes_every_reasonable_spelling() -> None:
    reference = simulate_meter(start="2024-03-01", days=2)
    for kwargs in (
        {"start": dt.date(2024, 3, 1), "days": 2},
        {"start": pd.Timestamp("2024-03-01"), "days": np.int64(2)},
        {"start": "2024-03-01", "days": 2.0},
        {"start": "2024-03-01", "end": "2024-03-03"},
        {"start": "2024-03-01", "days": 2, "seed": np.int64(42)},
    ):
        pd.testing.assert_frame_equal(simulate_meter(**kwargs), reference)
    assert len(simulate_meter(days=2, timezone=None)) == 48


def test_load_readings_checks_days_and_start_the_same_way(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"load_readings: days must be a whole number, got '7'"):
        load_readings(days="7")  # type: ignore[arg-type]
    path = tmp_path / "meter.csv"
    simulate_meter(days=3).reset_index().to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        load_readings(str(path), start="the first of May", days=2)
    assert "load_readings: start must be a date such as 2024-01-01, got 'the first of May'" in str(
        info.value
    )


# --------------------------------------------------------------------------- duplicated hours


def _autumn_csv(tmp_path: Path, days: int = 4) -> tuple[Path, pd.DataFrame]:
    """A meter export across the autumn clock change: 2024-10-27 02:00 is written twice."""
    raw = simulate_meter("home-dst", start="2024-10-25", days=days, outages=False, dropouts=False)
    path = tmp_path / "autumn.csv"
    raw.reset_index().to_csv(path, index=False)
    return path, raw


def test_load_meter_csv_keeps_duplicated_hours_for_validate_to_report(tmp_path: Path) -> None:
    path, raw = _autumn_csv(tmp_path)
    loaded = load_meter_csv(path, temperature_col="temperature_c")
    twice = pd.Timestamp("2024-10-27 02:00")
    # both readings of the hour written twice are there, in the file's order
    assert len(loaded) == len(raw)
    assert list(loaded.loc[twice, "kwh"]) == list(raw.loc[twice, "kwh"])
    assert list(loaded.loc[twice, "temperature_c"]) == list(raw.loc[twice, "temperature_c"])

    report = validate_readings(loaded)
    assert report.loc["duplicated timestamps", "status"] == "warning"
    assert report.loc["duplicated timestamps", "hours"] == 1
    assert report.loc["duplicated timestamps", "detail"] == (
        "e.g. 2024-10-27 02:00 (the autumn daylight saving change writes 02:00 twice); "
        "clean_readings averages each duplicated hour"
    )

    clean = clean_readings(loaded)
    assert clean.index.is_unique
    assert clean.loc[twice, "kwh"] == pytest.approx(raw.loc[twice, "kwh"].mean())


def test_quarter_hours_across_the_clock_change_make_two_rows(tmp_path: Path) -> None:
    first = pd.date_range("2024-10-27 01:00", periods=8, freq="15min")  # 01:00 .. 02:45
    again = pd.date_range("2024-10-27 02:00", periods=8, freq="15min")  # 02:00 .. 03:45
    frame = pd.DataFrame(
        {"timestamp": [*first, *again], "wh": [100.0] * 8 + [200.0] * 8}
    )  # the second 02:00 hour uses twice as much
    path = tmp_path / "quarters.csv"
    frame.to_csv(path, index=False)
    loaded = load_meter_csv(path, value_col="wh", unit="wh")
    assert list(loaded.index.strftime("%H:%M")) == ["01:00", "02:00", "02:00", "03:00"]
    np.testing.assert_allclose(loaded["kwh"], [0.4, 0.4, 0.8, 0.8])
    assert not loaded["partial_hour"].any()


def test_clean_drops_a_false_zero_before_averaging_a_duplicated_hour() -> None:
    index = pd.DatetimeIndex(
        ["2024-10-27 01:00", "2024-10-27 02:00", "2024-10-27 02:00", "2024-10-27 03:00"],
        name="timestamp",
    )
    raw = pd.DataFrame({"kwh": [1.0, 0.0, 0.8, 1.2]}, index=index)
    clean = clean_readings(raw)
    assert list(clean["kwh"]) == [1.0, 0.8, 1.2]  # not (0.0 + 0.8) / 2
    assert not clean["imputed"].any()


@pytest.mark.server
def test_the_flow_cleans_duplicated_hours_from_a_csv(prefect_server: Any, tmp_path: Path) -> None:
    from energy_flows.flows import energy_usage_pipeline

    path, _ = _autumn_csv(tmp_path, days=60)
    state = energy_usage_pipeline(
        meter_id="home-dst",
        source=str(path),
        start="2024-10-25",
        days=56,
        test_days=7,
        return_state=True,
    )
    assert state.is_completed(), state
    result = state.result()
    assert result.validation.loc["duplicated timestamps", "hours"] == 1
    assert result.details["test_hours"] > 0


# --------------------------------------------------------------------------- the flow's rules


def test_check_parameters_uses_the_defaults_for_what_is_not_given() -> None:
    from energy_flows.data import check_pipeline_parameters as check_parameters
    from energy_flows.flows import energy_usage_pipeline

    assert check_parameters(days=60) == {
        "days": 60,
        "test_days": 28,
        "horizon_hours": 24,
        "flaky": 0.0,
        "start": "2024-01-01",
        "seed": 42,
    }
    assert check_parameters(days=60, defaults={"test_days": 14})["test_days"] == 14
    with pytest.raises(DataError) as info:
        check_parameters(days=10)
    assert str(info.value) == (
        "days=10 is too short for test_days=28: the model needs at least 3 weeks of training "
        "before the test days. Raise days to at least 49 or lower test_days."
    )
    # the flow itself stops with the very same sentence, before any task runs
    with pytest.raises(DataError) as run:
        energy_usage_pipeline.fn(days=10)
    assert str(run.value) == str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": 40, "test_days": 28}, "Raise days to at least 49 or lower test_days to at most 19."),
        ({"days": -5}, "days must be at least 1, got -5. Example: days=365."),
        ({"test_days": 0}, "test_days must be at least 1, got 0. Example: test_days=28."),
        ({"horizon_hours": 48}, "horizon_hours must be between 0 and 24 (day-ahead), got 48."),
        ({"flaky": float("nan")}, "flaky is a probability between 0 and 1, got nan."),
        ({"flaky": "often"}, "flaky is a probability between 0 and 1, got 'often'."),
        ({"seed": -3}, "seed must be at least 0, got -3. Example: seed=42."),
        ({"start": "2024-13-01"}, "start must be a date such as 2024-01-01, got '2024-13-01'"),
    ],
)  # fmt: skip
def test_check_parameters_says_what_to_change(kwargs: dict[str, Any], message: str) -> None:
    from energy_flows.data import check_pipeline_parameters as check_parameters

    with pytest.raises(DataError) as info:
        check_parameters(**kwargs)
    assert message in str(info.value)


def test_an_empty_start_still_means_the_end_of_a_file() -> None:
    from energy_flows.data import check_pipeline_parameters as check_parameters

    assert check_parameters(start="")["start"] == ""


# --------------------------------------------------------------------------- deploying


@pytest.fixture
def pool(prefect_server: Any) -> str:
    from energy_flows.orchestration import ensure_work_pool, ensure_work_queue

    name = _unique("bad-inputs")
    ensure_work_pool(name)
    ensure_work_queue("energy_usage", pool=name)
    return name


def _deployment_names() -> set[str]:
    from energy_flows.orchestration import list_deployments

    return set(list_deployments()["name"])


@pytest.mark.server
@pytest.mark.parametrize("interval", [float("nan"), float("inf"), -float("inf")])
def test_a_nan_or_infinite_interval_is_refused(pool: str, interval: float) -> None:
    from energy_flows.orchestration import deploy_energy_flow

    name = _unique("nan-interval")
    with pytest.raises(OrchestrationError) as info:
        deploy_energy_flow(name, interval=interval, work_pool=pool)
    assert str(info.value) == (
        f"interval must be a finite number of seconds; got {interval!r}. "
        "Example: interval=30 runs the flow every 30 seconds."
    )
    assert name not in _deployment_names()


def test_an_interval_too_long_for_python_is_refused() -> None:
    from energy_flows.orchestration.deployments import validate_interval

    with pytest.raises(OrchestrationError, match="longer than Python can count"):
        validate_interval(1e300)


@pytest.mark.server
@pytest.mark.parametrize(
    ("parameters", "sentence"),
    [
        ({"days": 10}, "days=10 is too short for test_days=28: the model needs at least 3 weeks of training before the test days. Raise days to at least 49 or lower test_days."),
        ({"days": -5}, "days must be at least 1, got -5. Example: days=365."),
        ({"days": "10"}, "days=10 is too short for test_days=28"),  # converted first, then judged
        ({"days": 60, "test_days": 50}, "days=60 is too short for test_days=50"),
        ({"horizon_hours": 36}, "horizon_hours must be between 0 and 24 (day-ahead), got 36."),
        ({"start": "someday"}, "start must be a date such as 2024-01-01, got 'someday'"),
    ],
)  # fmt: skip
def test_parameters_every_run_would_refuse_are_refused_at_deploy_time(
    pool: str, parameters: dict[str, Any], sentence: str
) -> None:
    from energy_flows.data import check_pipeline_parameters as check_parameters
    from energy_flows.orchestration import deploy_energy_flow

    name = _unique("doomed")
    with pytest.raises(OrchestrationError) as info:
        deploy_energy_flow(name, interval=60, parameters=parameters, work_pool=pool)
    message = str(info.value)
    assert message.startswith(
        "The flow 'energy-usage-pipeline' would refuse every run of this deployment: "
    )
    assert sentence in message
    assert message.endswith(" Change that parameter, then deploy again.")
    # the flow's own error, word for word, is both in the message and its cause
    cause = info.value.__cause__
    assert isinstance(cause, DataError) and str(cause) in message
    with pytest.raises(DataError) as run:
        check_parameters(**{k: int(v) if k == "days" else v for k, v in parameters.items()})
    assert str(run.value) == str(cause)
    assert name not in _deployment_names()


@pytest.mark.server
def test_plain_deploy_of_the_energy_flow_applies_the_same_rules(pool: str) -> None:
    from energy_flows.flows import energy_usage_batch, energy_usage_pipeline
    from energy_flows.orchestration import deploy

    with pytest.raises(OrchestrationError, match="days=10 is too short for test_days=28"):
        deploy(energy_usage_pipeline, _unique("plain"), parameters={"days": 10}, work_pool=pool)
    with pytest.raises(OrchestrationError) as info:
        deploy(energy_usage_batch, _unique("batch"), parameters={"days": -1}, work_pool=pool)
    assert "The flow 'energy-usage-batch' would refuse every run" in str(info.value)
    ok = deploy(
        energy_usage_pipeline,
        _unique("fine"),
        parameters={"days": 60, "test_days": 14},
        work_pool=pool,
    )
    assert ok.changes == ("created",) and ok.parameters == {"days": 60, "test_days": 14}


def test_deployment_problems_lists_every_problem_without_a_server() -> None:
    from energy_flows.flows import energy_usage_pipeline
    from energy_flows.orchestration.deployments import deployment_problems

    problems = deployment_problems(
        energy_usage_pipeline,
        "",
        parameters={"days": -5},
        interval=float("nan"),
        work_pool="a/b",
        work_queue="",
        paused="yes",  # type: ignore[arg-type]
    )
    assert list(problems) == ["name", "schedule", "parameters", "paused", "work_pool", "work_queue"]
    assert all(isinstance(p, OrchestrationError) for p in problems.values())
    assert "days must be at least 1, got -5" in str(problems["parameters"])
    assert deployment_problems(energy_usage_pipeline, "fine", interval=30) == {}


# --------------------------------------------------------------------------- DeploymentBuilder


def test_builder_refuses_what_deploy_refuses_with_the_same_sentence() -> None:
    from energy_flows.flows import energy_usage_pipeline
    from energy_flows.orchestration.deployments import deployment_problems
    from energy_flows.widgets import DeploymentBuilder

    b = DeploymentBuilder(parameters={"days": -5})
    expected = str(
        deployment_problems(
            energy_usage_pipeline, "energy-usage", parameters={"days": -5}, interval=60
        )["parameters"]
    )
    assert b.errors == [expected]
    assert "days must be at least 1, got -5" in expected
    assert "ready to deploy" not in b.message.value
    assert "days must be at least 1, got -5" in b.message.value
    assert repr(b).endswith(f"✗ {expected}")
    with pytest.raises(OrchestrationError, match="The deployment was not created: "):
        b.deploy()

    b.set(parameters={"days": 10})
    assert b.errors == [
        "The flow 'energy-usage-pipeline' would refuse every run of this deployment: days=10 is "
        "too short for test_days=28: the model needs at least 3 weeks of training before the "
        "test days. Raise days to at least 49 or lower test_days. Change that parameter, then "
        "deploy again."
    ]
    b.set(parameters={"days": 60, "test_days": 14}, interval=float("nan"))
    assert b.errors == [
        "interval must be a finite number of seconds; got nan. "
        "Example: interval=30 runs the flow every 30 seconds."
    ]
    b.set(interval=30)
    assert b.errors == [] and "ready to deploy" in b.message.value


def test_builder_shows_a_notebook_flow_cannot_be_deployed_before_the_click() -> None:
    from energy_flows.widgets import DeploymentBuilder

    namespace: dict[str, Any] = {}
    code = "from prefect import flow\n@flow(name='cell-flow')\ndef cell_flow(x: int = 1):\n    return x\n"
    exec(compile(code, "<ipython-input-7-abc>", "exec"), namespace)
    b = DeploymentBuilder(namespace["cell_flow"])
    assert len(b.errors) == 1 and "defined in a notebook cell" in b.errors[0]


@pytest.mark.server
def test_builder_clears_the_last_result_when_the_form_changes(pool: str) -> None:
    from energy_flows.widgets import DeploymentBuilder

    b = DeploymentBuilder(
        name=_unique("builder-clear"), work_pool=pool, parameters={"days": 60, "test_days": 14}
    )
    b.deploy_button.click()
    assert "✓ deployed" in b.output.value and b.result is not None
    assert "\n  ✓ deployed\n" in repr(b)

    b.set(paused=True)  # any change: the old "deployed" belongs to another form
    assert b.output.value == "" and b.result is None and b.last_error is None
    assert repr(b).splitlines()[1] == "  ✓ ready to deploy"

    b.set(work_pool=_unique("no-such-pool"))  # valid as a name; the server says no
    b.deploy_button.click()
    assert "There is no work pool" in b.output.value and b.last_error
    assert repr(b).splitlines()[1].startswith("  ✗ There is no work pool")

    b.set(work_pool=pool)
    assert b.output.value == "" and b.last_error is None and b.result is None
    assert repr(b).splitlines()[1] == "  ✓ ready to deploy"
