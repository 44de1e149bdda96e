"""The Prefect layer: the flows load like a deployment loads them, and run on a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import energy_flows
from energy_flows.data import simulate_meter
from energy_flows.errors import DataError
from energy_flows.forecasting import PipelineResult, run_core_pipeline

FLOWS_FILE = Path(energy_flows.__file__).parent / "flows.py"

# Small but real: 120 days of one meter, 14 test days.
SMALL = {"days": 120, "test_days": 14}


def _first_fail_then_succeed_seed(flaky: float, meter_id: str) -> int:
    from energy_flows.data import source_fails

    for seed in range(1000):
        if source_fails(flaky, seed, meter_id, 1) and not source_fails(flaky, seed, meter_id, 2):
            return seed
    raise AssertionError("no seed makes attempt 1 fail and attempt 2 succeed")


# --------------------------------------------------------------------------
# Without a server


def test_source_fails_is_deterministic_and_bounded() -> None:
    from energy_flows.data import source_fails

    draws = [source_fails(0.3, seed, "home-001", 1) for seed in range(400)]
    assert draws == [source_fails(0.3, seed, "home-001", 1) for seed in range(400)]
    assert 0.2 < sum(draws) / len(draws) < 0.4
    assert not any(source_fails(0.0, s, "m", a) for s in range(20) for a in (1, 2, 3))
    assert all(source_fails(1.0, s, "m", a) for s in range(20) for a in (1, 2, 3))
    with pytest.raises(DataError, match="probability"):
        source_fails(1.5, 0, "m", 1)


def test_artifact_keys_are_valid_prefect_keys() -> None:
    from energy_flows.reports import artifact_keys

    keys = artifact_keys("Home 001_Paris")
    assert keys == {
        "report": "energy-report-home-001-paris",
        "metrics": "energy-metrics-home-001-paris",
    }
    assert artifact_keys("???")["report"] == "energy-report-meter"


def test_flow_parameters_are_json_friendly() -> None:
    """A deployment form builds its fields from this schema."""
    from prefect.utilities.callables import parameter_schema

    from energy_flows.flows import energy_usage_batch, energy_usage_pipeline

    schema = parameter_schema(energy_usage_pipeline.fn).model_dump()
    types = {name: spec.get("type") for name, spec in schema["properties"].items()}
    assert types == {
        "meter_id": "string",
        "source": "string",
        "start": "string",
        "days": "integer",
        "test_days": "integer",
        "horizon_hours": "integer",
        "flaky": "number",
        "seed": "integer",
    }
    assert energy_usage_pipeline.flow_run_name == "energy-{meter_id}-{start}"
    batch = parameter_schema(energy_usage_batch.fn).model_dump()
    assert "meter_ids" in batch["properties"]
    json.dumps(schema)


def test_flow_rejects_bad_parameters_before_running() -> None:
    from energy_flows.data import check_pipeline_parameters

    with pytest.raises(DataError, match="too short"):
        check_pipeline_parameters(days=20, test_days=14, horizon_hours=24, flaky=0.0)
    with pytest.raises(DataError, match="day-ahead"):
        check_pipeline_parameters(days=120, test_days=14, horizon_hours=48, flaky=0.0)
    with pytest.raises(DataError, match="probability"):
        check_pipeline_parameters(days=120, test_days=14, horizon_hours=24, flaky=2.0)


def test_the_flows_declare_the_defaults_the_parameter_check_assumes() -> None:
    """check_pipeline_parameters fills what is not given from PIPELINE_DEFAULTS."""
    import inspect

    from energy_flows.data import PIPELINE_DEFAULTS
    from energy_flows.flows import energy_usage_batch, energy_usage_pipeline

    for flow in (energy_usage_pipeline, energy_usage_batch):
        declared = {
            name: p.default
            for name, p in inspect.signature(flow.fn).parameters.items()
            if name in PIPELINE_DEFAULTS
        }
        expected = {k: v for k, v in PIPELINE_DEFAULTS.items() if k in declared}
        assert declared == expected, flow.name


def test_entrypoint_loads_from_another_directory(tmp_path: Path) -> None:
    """What a process worker does: load flows.py by path, from another working directory.

    Both ``load_flow_from_entrypoint`` (the worker's loader) and
    ``flow.from_source(folder, "flows.py:...")`` (what a deployment is built from).
    """
    script = textwrap.dedent(
        f"""
        import os
        from prefect import Flow
        from prefect.flows import load_flow_from_entrypoint
        flow = load_flow_from_entrypoint({str(FLOWS_FILE)!r} + ":energy_usage_pipeline")
        batch = load_flow_from_entrypoint({str(FLOWS_FILE)!r} + ":energy_usage_batch")
        sourced = Flow.from_source({str(FLOWS_FILE.parent)!r}, "flows.py:energy_usage_pipeline")
        print(flow.name, batch.name, sourced.name, os.getcwd())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PREFECT_API_URL": ""},  # loading needs no server
    )
    assert done.returncode == 0, done.stderr[-3000:]
    words = done.stdout.split()
    assert words[:3] == ["energy-usage-pipeline", "energy-usage-batch", "energy-usage-pipeline"]
    assert words[3] == str(tmp_path)


# --------------------------------------------------------------------------
# Against a real Prefect server (fixture from conftest.py)


@pytest.fixture(scope="module")
def server(prefect_server: Any) -> Iterator[Any]:
    """The session's server; the logs and events of this module's runs sent before it stops.

    Prefect ships run logs and events from background workers: drain them while
    the server is still up, or they retry against a stopped server at exit.
    """
    yield prefect_server
    from energy_flows.prefect_internals import flush_to_server

    flush_to_server()


def _task_runs(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


def _flow_run(flow_run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


@pytest.mark.server
def test_pipeline_flow_runs_on_a_server(server: Any) -> None:
    from energy_flows.flows import energy_usage_pipeline
    from energy_flows.orchestration import read_report

    state = energy_usage_pipeline(meter_id="home-101", **SMALL, return_state=True)
    assert state.is_completed(), state

    # What a learner checks: the result, the run's name, the artifacts.
    result = state.result()
    assert isinstance(result, PipelineResult)
    assert result.beats_baselines
    assert result.improvement_pct > 0
    assert {"kwh_actual", "kwh_predicted"} <= set(result.forecast.columns)

    run = _flow_run(state.state_details.flow_run_id)
    assert run.name == "energy-home-101-2024-01-01"
    assert run.state.is_completed()
    # The result is persisted: another process (a notebook) reads it back from the API.
    stored = run.state.result()
    pd.testing.assert_frame_equal(stored.metrics, result.metrics)

    names = sorted(t.name.split("-")[0] for t in _task_runs(run.id))
    assert names == sorted(["ingest", "validate", "clean", "build", "train", "evaluate", "report"])

    report = read_report("home-101")
    assert "Energy forecast for `home-101`" in report["report"]
    metrics = report["metrics"]
    assert list(metrics["method"]) == ["predicted", "same_hour_yesterday", "same_hour_last_week"]
    assert metrics["mae_kwh"].iloc[0] < metrics["mae_kwh"].iloc[1]

    # The flow is a thin wrapper: the same numbers as the pure pipeline.
    raw = simulate_meter("home-101", start="2024-01-01", days=SMALL["days"], seed=42)
    core = run_core_pipeline(raw, "home-101", test_days=SMALL["test_days"])
    pd.testing.assert_frame_equal(core.metrics, result.metrics)


@pytest.mark.server
def test_flaky_source_is_retried_and_the_run_completes(server: Any) -> None:
    from energy_flows.flows import energy_usage_pipeline

    seed = _first_fail_then_succeed_seed(0.5, "home-102")
    state = energy_usage_pipeline(
        meter_id="home-102", flaky=0.5, seed=seed, **SMALL, return_state=True
    )
    assert state.is_completed(), state
    ingest = [t for t in _task_runs(state.state_details.flow_run_id) if t.name.startswith("ingest")]
    assert len(ingest) == 1
    assert ingest[0].run_count == 2  # the first attempt failed, the retry succeeded
    assert ingest[0].state.is_completed()

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        history = client.read_task_run_states(ingest[0].id)
    assert "Retrying" in [s.name for s in history]


@pytest.mark.server
def test_source_that_always_fails_fails_the_run(server: Any) -> None:
    from energy_flows.flows import INGEST_RETRIES, energy_usage_pipeline

    state = energy_usage_pipeline(meter_id="home-103", flaky=1.0, **SMALL, return_state=True)
    assert state.is_failed()
    ingest = [t for t in _task_runs(state.state_details.flow_run_id) if t.name.startswith("ingest")]
    assert ingest[0].run_count == INGEST_RETRIES + 1


@pytest.mark.server
def test_batch_flow_maps_over_meters(server: Any) -> None:
    from energy_flows.flows import energy_usage_batch
    from energy_flows.orchestration import read_report

    state = energy_usage_batch(
        meter_ids=["home-201", "home-202", "home-203"], **SMALL, return_state=True
    )
    assert state.is_completed(), state
    summary = state.result()
    assert list(summary.index) == ["home-201", "home-202", "home-203"]
    assert (summary["mae_kwh"] < summary["mae_same_hour_yesterday_kwh"]).all()
    run = _flow_run(state.state_details.flow_run_id)
    assert run.name == "energy-batch-2024-01-01"
    mapped = [t for t in _task_runs(run.id) if t.name.startswith("pipeline-")]
    assert sorted(t.name for t in mapped) == ["pipeline-home-201", "pipeline-home-202",
                                              "pipeline-home-203"]  # fmt: skip
    assert read_report("home-202")["report"] is not None
