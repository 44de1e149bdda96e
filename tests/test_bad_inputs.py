"""Bad input gives one clear error that says what to change, and loses nothing.

Each test feeds what a learner might really type (a header-only CSV, a folder,
``days='7'``, a NaN interval, ``days=-5`` in a deployment) and checks the
message they would read. The deployment tests use the session's real Prefect
server (``prefect_server``) and prove that nothing was created.
"""

from __future__ import annotations

import datetime as dt
import re
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


def test_load_meter_csv_of_none_asks_for_a_path() -> None:
    with pytest.raises(DataError) as info:
        load_meter_csv(None)  # type: ignore[arg-type]
    assert str(info.value) == (
        "load_meter_csv needs the path of a CSV file, e.g. load_meter_csv('meter.csv'); got None."
    )


def test_a_file_that_is_not_utf8_names_the_encoding_to_pass(tmp_path: Path) -> None:
    path = tmp_path / "zähler.csv"
    path.write_bytes("timestamp;kwh;Zählerstand\n2024-01-01 00:00;0.5;1203\n".encode("cp1252"))
    with pytest.raises(DataError) as info:
        load_meter_csv(path, sep=";")
    message = str(info.value)
    assert message.startswith(f"{path} is not utf-8 text: it was probably saved by a spreadsheet")
    assert (
        "Line 1 has the byte 0xe4, which utf-8 cannot read: 'timestamp;kwh;Zählerstand'" in message
    )
    assert f"load_meter_csv({str(path)!r}, encoding='cp1252')" in message
    # the remedy works
    assert list(load_meter_csv(path, sep=";", encoding="cp1252")["kwh"]) == [0.5]

    path.write_text("timestamp,kwh\n2024-01-01 00:00,0.5\n", encoding="utf-16")
    with pytest.raises(DataError, match=r"is UTF-16 text .* Pass encoding='utf-16'"):
        load_meter_csv(path)
    assert list(load_meter_csv(path, encoding="utf-16")["kwh"]) == [0.5]


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("timestamp,kwh\n2024-01-01 00:00,0.5\n", encoding="utf-8-sig")
    assert list(load_meter_csv(path)["kwh"]) == [0.5]
    assert list(load_meter_csv(path, encoding="UTF8")["kwh"]) == [0.5]


def test_a_row_with_an_extra_field_names_its_line_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "meter.csv"
    path.write_text("timestamp,kwh\n2024-01-01 00:00,0.5\n\n2024-01-01 01:00,0,7\n")
    with pytest.raises(DataError) as info:
        load_meter_csv(path)
    assert str(info.value) == (
        f"{path}, line 4 has 3 fields where the header has 2: '2024-01-01 01:00,0,7'. Delete "
        "the extra value on that line, or put a value that contains ',' in double quotes. If "
        "the numbers use a decimal comma (0,65), the file needs another separator: save it "
        "with ';' between the fields and pass sep=';'."
    )
    assert "Error tokenizing" not in str(info.value)


def test_a_file_with_another_separator_says_which_to_pass(tmp_path: Path) -> None:
    path = tmp_path / "meter.csv"
    path.write_text("timestamp;kwh\n2024-01-01 00:00;0.5\n")
    with pytest.raises(DataError) as info:
        load_meter_csv(path)
    assert str(info.value).endswith(
        "The header has one column only: the file separates its fields with ';', not ','. "
        "Pass sep=';'."
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dayfirst": "yes"}, "dayfirst must be True (dd/mm/yyyy), False (mm/dd/yyyy) or None (the data decides), got 'yes'."),
        ({"date_format": "dd/mm/yyyy"}, "date_format must be a strptime format such as '%d/%m/%Y %H:%M', got 'dd/mm/yyyy'."),
        ({"date_format": "%d/%m/%Y", "dayfirst": True}, "Pass dayfirst= or date_format=, not both"),
        ({"encoding": "klingon"}, "encoding must be the name of a text encoding such as 'utf-8', 'cp1252' or 'latin-1', got 'klingon'."),
    ],
)  # fmt: skip
def test_load_meter_csv_options_say_what_they_take(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    path = tmp_path / "meter.csv"
    path.write_text("timestamp,kwh\n2024-01-01 00:00,0.5\n")
    with pytest.raises(DataError) as info:
        load_meter_csv(path, **kwargs)
    assert message in str(info.value)


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


# --------------------------------------------------------------------------- schedules a class cannot bear


@pytest.mark.parametrize("interval", [0.001, 1, 9.99, dt.timedelta(seconds=5)])
def test_an_interval_below_the_classroom_floor_is_refused(interval: Any) -> None:
    from energy_flows.flows import energy_usage_pipeline
    from energy_flows.orchestration.deployments import deployment_problems

    problems = deployment_problems(energy_usage_pipeline, "fast", interval=interval)
    assert list(problems) == ["schedule"]
    message = str(problems["schedule"])
    assert message == (
        f"interval={_seconds(interval):g} s is too short: the shortest interval here is 10 seconds, so that runs do not pile up "
        "in the queue faster than a classroom's workers can run them. Example: interval=30 "
        "runs the flow every 30 seconds."
    )
    assert deployment_problems(energy_usage_pipeline, "fine", interval=10) == {}


def _seconds(interval: Any) -> float:
    return interval.total_seconds() if isinstance(interval, dt.timedelta) else float(interval)


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("0 0 30 2 *", "February has no day 30."),
        ("0 0 31 4,6,9,11 *", "none of April, June, September, November has a day 31."),
        ("15 6 30,31 feb *", "February has no days 30, 31."),
    ],
)
def test_a_cron_that_never_fires_is_refused(cron: str, reason: str) -> None:
    from energy_flows.orchestration.deployments import validate_cron

    with pytest.raises(OrchestrationError) as info:
        validate_cron(cron)
    assert str(info.value) == (
        f"The cron {cron!r} never fires: {reason} Pick a day every month has (1-28), "
        "e.g. '0 6 28 2 *' is 06:00 on 28 February."
    )


@pytest.mark.parametrize("cron", ["0 0 29 2 *", "0 0 30 2 1", "0 0 31 * *", "*/5 * * * *"])
def test_crons_that_fire_rarely_or_on_weekdays_are_kept(cron: str) -> None:
    from energy_flows.orchestration.deployments import validate_cron

    assert (
        validate_cron(cron) == cron
    )  # 29 Feb in leap years; Mondays of February; 31st of 7 months


@pytest.mark.parametrize(
    ("rrule", "message"),
    [
        ("DTSTART:20200101T060000\nRRULE:FREQ=DAILY;COUNT=3", "never fires: its last date, 2020-01-03 06:00, has passed (COUNT or UNTIL ended it)"),
        ("DTSTART:20250101T000000\nRRULE:FREQ=SECONDLY;INTERVAL=2", "fires every 2 s: the shortest interval here is 10 seconds"),
    ],
)  # fmt: skip
def test_an_rrule_that_never_fires_or_fires_every_second_is_refused(
    rrule: str, message: str
) -> None:
    from energy_flows.orchestration.deployments import validate_rrule

    with pytest.raises(OrchestrationError, match=re.escape(message)):
        validate_rrule(rrule)


# --------------------------------------------------------------------------- names and pool types


@pytest.mark.parametrize(
    ("name", "shown"),
    [("energy\nusage", "'\\n'"), ("a\tb", "'\\t'"), ("what?", "'?'"), ("run#2", "'#'")],
)
def test_a_deployment_name_prefect_cannot_send_is_refused(name: str, shown: str) -> None:
    from energy_flows.flows import energy_usage_pipeline
    from energy_flows.orchestration.deployments import deployment_problems

    problems = deployment_problems(energy_usage_pipeline, name, interval=60)
    assert list(problems) == ["name"]
    assert str(problems["name"]) == (
        f"The deployment name {name!r} contains {shown}, which Prefect cannot send in the web "
        "address it looks names up by (line breaks, tabs and other control characters, '?' "
        "and '#'). Use letters, digits, spaces, '-' and '_'."
    )


@pytest.mark.server
def test_deploying_a_name_with_a_line_break_creates_nothing(pool: str) -> None:
    from energy_flows.orchestration import deploy_energy_flow, ensure_work_pool

    name = _unique("two") + "\nlines"
    with pytest.raises(OrchestrationError, match="contains '\\\\n', which Prefect cannot send"):
        deploy_energy_flow(name, interval=60, work_pool=pool)
    assert name not in _deployment_names()
    with pytest.raises(OrchestrationError, match="The work pool name 'a\\\\tb' contains '\\\\t'"):
        ensure_work_pool("a\tb")


@pytest.mark.server
def test_a_pool_type_no_installed_worker_serves_is_refused(prefect_server: Any) -> None:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    from energy_flows.orchestration import ensure_work_pool
    from energy_flows.orchestration.pools import served_pool_types

    assert "process" in served_pool_types()
    name = _unique("nonsense-pool")
    with pytest.raises(OrchestrationError) as info:
        ensure_work_pool(name, type="nonsense")
    assert str(info.value) == (
        "No worker installed here serves work pools of type 'nonsense': such a pool would hold "
        f"runs that no worker ever starts. Types served here: "
        f"{', '.join(repr(t) for t in served_pool_types())}. Use type='process' (the lessons' "
        "pools), or install the package of that worker first (e.g. prefect-docker for "
        "type='docker')."
    )
    with get_client(sync_client=True) as c, pytest.raises(ObjectNotFound):
        c.read_work_pool(name)  # nothing was created


# --------------------------------------------------------------------------- parameter maxima at deploy


def test_days_beyond_what_a_run_reads_are_refused_at_deploy_with_the_run_time_sentence() -> None:
    from energy_flows.flows import energy_usage_batch, energy_usage_pipeline
    from energy_flows.orchestration.deployments import deployment_problems

    with pytest.raises(DataError) as run:  # what every run's ingest step would say
        load_readings(days=10**9)
    assert str(run.value) == (
        "load_readings: days must be at most 36525, got 1000000000. Example: days=365."
    )
    for flow in (energy_usage_pipeline, energy_usage_batch):
        problems = deployment_problems(flow, "huge", interval=60, parameters={"days": 10**9})
        assert list(problems) == ["parameters"]
        assert str(problems["parameters"]) == (
            f"The flow {flow.name!r} would refuse every run of this deployment: "
            f"{run.value} Change that parameter, then deploy again."
        )
        assert str(problems["parameters"].__cause__) == str(run.value)


@pytest.mark.server
def test_days_beyond_the_maximum_create_no_deployment(pool: str) -> None:
    from energy_flows.orchestration import deploy_energy_flow

    name = _unique("huge")
    with pytest.raises(OrchestrationError, match="days must be at most 36525, got 1000000000"):
        deploy_energy_flow(name, interval=60, parameters={"days": 10**9}, work_pool=pool)
    assert name not in _deployment_names()


# --------------------------------------------------------------------------- trigger, lessons, exports


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"parameters": [1]}, "parameters must be a dict of parameter names and values, e.g. parameters={'days': 120}; got [1]."),
        ({"parameters": {1: 2}}, "parameters must be a dict of parameter names and values"),
        ({"scheduled_time": "tomorrow"}, "scheduled_time must be a datetime, got 'tomorrow' (str). For a run in 5 minutes: import datetime as dt, then scheduled_time=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5); leave it out to run now."),
        ({"flow_run_name": 7}, "flow_run_name is the name the run gets, as text, e.g. flow_run_name='first-try'; got 7."),
    ],
)  # fmt: skip
def test_trigger_arguments_say_what_to_change_before_asking_the_server(
    kwargs: dict[str, Any], message: str
) -> None:
    from energy_flows.orchestration import trigger

    with pytest.raises(OrchestrationError) as info:
        trigger("energy-usage-pipeline/energy-usage", **kwargs)
    assert message in str(info.value)
    assert "flow's parameters" not in str(info.value) and "signature" not in str(info.value)


def test_lesson_setup_of_a_lesson_that_does_not_exist_lists_the_lessons() -> None:
    from energy_flows.errors import EnergyFlowsError
    from energy_flows.lessons import lesson_setup

    with pytest.raises(EnergyFlowsError) as info:
        lesson_setup("99")
    assert str(info.value) == (
        "There is no lesson 99 (lessons: 00, 01, 02, 03, 04, 05, 06, 07). Pass the number at "
        "the start of this notebook's name, e.g. lesson_setup('05') in "
        "05_agents_and_workers.ipynb."
    )


def test_a_file_not_in_the_uci_format_shows_why(tmp_path: Path) -> None:
    from energy_flows.data import load_uci_household

    path = tmp_path / "household_power_consumption.txt"
    path.write_text("Date;Time;Voltage\n16/12/2006;17:24:00;234.84\n")
    with pytest.raises(DataError) as info:
        load_uci_household(path)
    message = str(info.value)
    assert "{exc}" not in message
    assert message.startswith(f"{path} is not in the UCI household format")
    assert "Global_active_power" in message.split("separators): ", 1)[1]  # pandas' own reason


def test_diagnose_is_exported_as_the_readme_names_it() -> None:
    import energy_flows
    from energy_flows.orchestration import diagnose

    assert energy_flows.diagnose is diagnose
    assert "diagnose" in energy_flows.__all__


# --------------------------------------------------------------------------- services and the command


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": -1}, "port must be a port number from 1 to 65535, got -1. Example: port=4200 (or leave it out to take a free port)."),
        ({"port": 70000}, "port must be a port number from 1 to 65535, got 70000."),
        ({"port": "abc"}, "port must be a port number from 1 to 65535, got 'abc'."),
        ({"port": 4200.5}, "got 4200.5"),
        ({"postgres_port": 0}, "postgres_port must be a port number from 1 to 65535, got 0. Example: postgres_port=5432"),
        ({"timeout": -5}, "timeout is a number of seconds above 0, got -5. Example: timeout=90."),
    ],
)  # fmt: skip
def test_prefect_server_arguments_are_checked_before_anything_starts(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    from energy_flows.errors import ServiceError
    from energy_flows.services.server import PrefectServer

    with pytest.raises(ServiceError) as info:
        PrefectServer(home=tmp_path / "home", **kwargs)
    assert message in str(info.value)
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("queues", [None, 7, []])
def test_worker_without_a_list_of_queues_says_what_to_pass(tmp_path: Path, queues: Any) -> None:
    from energy_flows.services.worker import Worker

    with pytest.raises(OrchestrationError) as info:
        Worker(queues=queues, home=tmp_path / "home")
    assert str(info.value) == (
        "A worker needs at least one queue to poll, e.g. queues=['energy_usage'] (a list of "
        f"queue names, or one name as text); got {queues!r}."
    )
    assert Worker(queues="energy_usage", home=tmp_path / "home").queues == ["energy_usage"]


def _cli(home: Path, *args: str, stdin: int | None = None) -> Any:
    import os
    import subprocess
    import sys

    env = dict(os.environ, ENERGY_FLOWS_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "energy_flows.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--port", "70000"], "argument --port: --port must be a port number from 1 to 65535, got '70000'. Example: --port=4200"),
        (["up", "--timeout", "-5"], "argument --timeout: --timeout is a number of seconds above 0, got '-5'. Example: --timeout=90."),
        (["up", "--postgres-port", "x"], "--postgres-port must be a port number from 1 to 65535, got 'x'. Example: --postgres-port=5432"),
        (["logs", "-n", "-5"], "argument -n/--tail: --tail must be a whole number of at least 1, got '-5'. Example: --tail=40."),
        (["up", "--worker", "a/b/c"], "argument --worker: --worker expects POOL/QUEUE, with one '/' between them, e.g. --worker energy-pool/energy_usage (got 'a/b/c')."),
        (["up", "--worker", "energy-pool/energy usage?"], "The work queue name 'energy usage?' contains '?'"),
        (["lab", "--port", "0"], "--port must be a port number from 1 to 65535, got '0'. Example: --port=8888"),
        (["tour", "--timeout", "nan"], "--timeout is a number of seconds above 0, got 'nan'"),
    ],
)  # fmt: skip
def test_command_line_numbers_and_workers_are_checked_before_anything_starts(
    tmp_path: Path, args: list[str], message: str
) -> None:
    home = tmp_path / "home"
    done = _cli(home, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert not home.exists(), "nothing may start, or be written, before the arguments are right"


def test_reset_without_a_terminal_says_to_pass_yes_and_keeps_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "server.log").write_text("kept\n")
    done = _cli(home, "reset")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "energy-flows reset: it asks for a confirmation, but nothing answered (no terminal). "
        "Pass --yes to confirm without a question. Nothing was changed."
    )
    assert "Traceback" not in done.stderr and "EOFError" not in done.stderr
    assert (home / "logs" / "server.log").read_text() == "kept\n"
