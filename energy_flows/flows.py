"""The energy pipeline as Prefect tasks and flows.

Each task is a thin wrapper over a pure function of the energy core
(:mod:`energy_flows.data`, :mod:`energy_flows.forecasting`), so what Prefect
adds is visible on its own: retries, logs, states, artifacts, concurrency.

::

    ingest -> validate -> clean -> build features -> train -> evaluate -> report
    (retries)                                                            (artifacts)

This module is importable (``energy_flows/flows.py``), which is what a
deployment needs: ``flow.from_source(<folder>, "flows.py:energy_usage_pipeline")``
and a worker running in another directory load the flow from this file. A flow
defined in a notebook cell cannot be deployed.

The flows are synchronous on purpose: in a notebook the kernel already runs an
event loop, and a sync flow is simply called like a function.
"""

from __future__ import annotations

import inspect
import numbers
import re
from typing import Any

import numpy as np
import pandas as pd
from prefect import Flow, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.runtime import flow_run, task_run
from prefect.utilities.annotations import unmapped

from energy_flows.data import clean_readings, load_readings, validate_readings
from energy_flows.data.arguments import check_date, check_whole_number
from energy_flows.data.uci import HOUSEHOLD_SOURCE, check_household_period
from energy_flows.errors import DataError
from energy_flows.forecasting import (
    ForecastModel,
    PipelineResult,
    backtest,
    evaluate,
    fit,
    forecast_next,
    make_features,
    run_core_pipeline,
    split_train_test,
)
from energy_flows.reports import markdown_summary, metrics_records

__all__ = [
    "FlakySourceError",
    "artifact_keys",
    "check_parameters",
    "energy_usage_batch",
    "energy_usage_pipeline",
    "read_report",
    "source_fails",
]

#: The ingest task tries this many more times when the source fails.
INGEST_RETRIES = 2
#: Seconds between two attempts: short, so a lesson does not wait.
INGEST_RETRY_DELAY_SECONDS = 1


class FlakySourceError(ConnectionError):
    """The (simulated) meter service did not answer this time: worth a retry."""


def source_fails(flaky: float, seed: int, meter_id: str, attempt: int) -> bool:
    """Whether attempt number ``attempt`` (1, 2, ...) to read the source fails.

    The draw is random but reproducible: the same ``(flaky, seed, meter_id,
    attempt)`` always gives the same answer, so a lesson (or a test) can show a
    run whose first attempt fails and whose retry succeeds.
    """
    if not 0.0 <= flaky <= 1.0:
        raise DataError(f"flaky is a probability between 0 and 1, got {flaky}.")
    if flaky == 0.0:
        return False
    key = [int(seed), attempt, *meter_id.encode("utf-8")]
    return bool(np.random.default_rng(key).random() < flaky)


def _slug(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "meter"


def artifact_keys(meter_id: str) -> dict[str, str]:
    """The keys under which a run publishes its report and metrics for ``meter_id``."""
    slug = _slug(meter_id)
    return {"report": f"energy-report-{slug}", "metrics": f"energy-metrics-{slug}"}


# --------------------------------------------------------------------------
# Tasks: one step each, named for what it does.


@task(
    name="ingest",
    retries=INGEST_RETRIES,
    retry_delay_seconds=INGEST_RETRY_DELAY_SECONDS,
    task_run_name="ingest-{meter_id}",
    cache_policy=NO_CACHE,
)
def ingest(
    meter_id: str, source: str, start: str, days: int, seed: int, flaky: float = 0.0
) -> pd.DataFrame:
    """Read the meter's hourly readings; may fail on purpose when ``flaky > 0``."""
    logger = get_run_logger()
    attempt = int(task_run.run_count or 1)
    if source_fails(flaky, seed, meter_id, attempt):
        logger.warning("attempt %d: the meter service did not answer", attempt)
        raise FlakySourceError(
            f"Attempt {attempt}: the meter service for {meter_id} timed out (flaky={flaky})."
        )
    readings = load_readings(source, meter_id=meter_id, start=start, days=days, seed=seed)
    logger.info("attempt %d: %d readings from %s", attempt, len(readings), source)
    return readings


@task(name="validate", cache_policy=NO_CACHE)
def validate(readings: pd.DataFrame) -> pd.DataFrame:
    """Check the raw readings and log what cleaning will have to fix."""
    report = validate_readings(readings)
    logger = get_run_logger()
    for check, row in report[report["status"] != "ok"].iterrows():
        logger.warning("%s: %s", check, row["detail"])
    return report


@task(name="clean", cache_policy=NO_CACHE)
def clean(readings: pd.DataFrame) -> pd.DataFrame:
    """Regular hourly grid: duplicated hours averaged, implausible values dropped, short gaps filled."""
    return clean_readings(readings)


@task(name="build-features", cache_policy=NO_CACHE)
def build_features(clean_kwh: pd.DataFrame, horizon_hours: int) -> pd.DataFrame:
    """Calendar, lags 24/48/168 h, yesterday's mean and heating need."""
    return make_features(clean_kwh, horizon_hours=horizon_hours)


@task(name="train", cache_policy=NO_CACHE)
def train(features: pd.DataFrame, test_days: int) -> ForecastModel:
    """Fit the ridge model on everything before the test days."""
    training, _ = split_train_test(features, test_days=test_days)
    model = fit(training)
    get_run_logger().info("trained on %d hours (%s to %s)", model.n_train_hours, *model.trained_on)
    return model


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_model(
    model: ForecastModel, features: pd.DataFrame, clean_kwh: pd.DataFrame, test_days: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Forecast the test days and score the model against the baselines."""
    _, test = split_train_test(features, test_days=test_days)
    comparison = backtest(model, test, imputed=clean_kwh["imputed"])
    metrics = evaluate(comparison)
    get_run_logger().info(
        "MAE %.3f kWh (same hour yesterday: %.3f kWh)",
        metrics.loc["predicted", "mae_kwh"],
        metrics.loc["same_hour_yesterday", "mae_kwh"],
    )
    return comparison, metrics


def _publish(result: PipelineResult) -> dict[str, str]:
    keys = artifact_keys(result.meter_id)
    create_markdown_artifact(
        key=keys["report"],
        markdown=markdown_summary(result),
        description=f"Energy forecast report for {result.meter_id}",
    )
    create_table_artifact(
        key=keys["metrics"],
        table=metrics_records(result),
        description=f"Forecast metrics for {result.meter_id} (kWh, %)",
    )
    return keys


@task(name="report", cache_policy=NO_CACHE)
def report(result: PipelineResult) -> dict[str, str]:
    """Publish a markdown summary and a metrics table as Prefect artifacts."""
    return _publish(result)


# --------------------------------------------------------------------------
# Flows


def _flow_defaults(flow: Flow[..., Any]) -> dict[str, Any]:
    """The default value of each parameter of ``flow`` that has one."""
    signature = inspect.signature(flow.fn)
    return {
        name: p.default
        for name, p in signature.parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def check_parameters(
    days: int | None = None,
    test_days: int | None = None,
    horizon_hours: int | None = None,
    flaky: float | None = None,
    *,
    start: str | None = None,
    seed: int | None = None,
    source: str | None = None,
    flow: Flow[..., Any] | None = None,
) -> dict[str, Any]:
    """Refuse parameters with which no run of the energy flow can succeed, before any work.

    Each parameter left out takes the flow's own default (``flow``: the
    pipeline unless given), so ``check_parameters(days=10)`` judges 10 days
    with the default ``test_days=28``. The rules:

    * ``days`` and ``test_days`` are whole numbers ≥ 1, and ``days`` leaves at
      least 3 weeks of training before the ``test_days`` test days;
    * ``horizon_hours`` is between 0 and 24 (a day-ahead forecast);
    * ``flaky`` is a probability between 0 and 1;
    * ``seed`` is a whole number ≥ 0; ``start`` is a date (``YYYY-MM-DD``) or
      empty (the last ``days`` days of a file);
    * with ``source="uci"`` (the real household shipped with the package),
      the ``days`` days from ``start`` lie between 2006-12-16 and 2010-11-26
      (:func:`~energy_flows.data.uci.check_household_period`). Other sources
      are not judged here: a file is only read by the run.

    Both flows call it first thing in a run. Deploying calls it too
    (:func:`energy_flows.orchestration.deploy_energy_flow` and the
    ``DeploymentBuilder`` form), so a deployment whose every run would be
    refused is refused at once, with the same sentence.

    Returns the checked values, defaults filled in (``source`` is judged,
    not returned). Raises
    :class:`~energy_flows.errors.DataError` that names the parameter, the
    value given and what to change.
    """
    target = energy_usage_pipeline if flow is None else flow
    where = ""  # no function name in front: deploy() puts the flow's name before these
    defaults = _flow_defaults(target)
    given = {
        "days": days,
        "test_days": test_days,
        "horizon_hours": horizon_hours,
        "flaky": flaky,
        "start": start,
        "seed": seed,
    }
    values = {k: defaults.get(k) if v is None else v for k, v in given.items()}
    days = check_whole_number(values["days"], "days", where=where, example="days=365", minimum=1)
    test_days = check_whole_number(
        values["test_days"], "test_days", where=where, example="test_days=28", minimum=1
    )
    if days < test_days + 21:
        fewer = f" to at most {days - 21}" if days > 21 else ""
        raise DataError(
            f"days={days} is too short for test_days={test_days}: the model needs at least "
            f"3 weeks of training before the test days. Raise days to at least {test_days + 21} "
            f"or lower test_days{fewer}."
        )
    horizon_hours = check_whole_number(
        values["horizon_hours"], "horizon_hours", where=where, example="horizon_hours=24"
    )
    if not 0 <= horizon_hours <= 24:
        raise DataError(
            f"horizon_hours must be between 0 and 24 (day-ahead), got {horizon_hours}. "
            "Example: horizon_hours=24 forecasts the next day."
        )
    flaky = values["flaky"]  # type: ignore[assignment]  # any value may come in: checked here
    if (
        not isinstance(flaky, numbers.Real)
        or isinstance(flaky, bool)
        or not 0.0 <= float(flaky) <= 1.0  # also refuses NaN
    ):
        raise DataError(
            f"flaky is a probability between 0 and 1, got {flaky!r}. Example: flaky=0.5 "
            "makes about one attempt in two fail (flaky=0 never fails)."
        )
    seed = check_whole_number(values["seed"], "seed", where=where, example="seed=42", minimum=0)
    start = values["start"]
    if start:
        start = f"{check_date(start, 'start', where=where, example='2024-01-01'):%Y-%m-%d}"
    if (defaults.get("source") if source is None else source) == HOUSEHOLD_SOURCE:
        check_household_period(values["start"], days, where=where)
    return {
        "days": days,
        "test_days": test_days,
        "horizon_hours": horizon_hours,
        "flaky": float(flaky),
        "start": start,
        "seed": seed,
    }


#: The former private name, kept for code written against it.
_check_parameters = check_parameters


@flow(
    name="energy-usage-pipeline",
    flow_run_name="energy-{meter_id}-{start}",
    persist_result=True,
    log_prints=True,
)
def energy_usage_pipeline(
    meter_id: str = "home-001",
    source: str = "simulated",
    start: str = "2024-01-01",
    days: int = 365,
    test_days: int = 28,
    horizon_hours: int = 24,
    flaky: float = 0.0,
    seed: int = 42,
) -> PipelineResult:
    """Forecast one household's use a day ahead, and judge the forecast.

    Parameters
    ----------
    meter_id: which household (for simulated data, it fixes the household's habits).
    source: ``"simulated"``; ``"uci"``, the real household shipped with the
        package (offline; 2006-12-16 to 2010-11-26, so pass a start inside,
        e.g. ``start="2010-01-01", days=120``); a CSV file path (columns
        timestamp, kwh); or the path or http(s) address of the raw UCI
        household file.
    start: first day of the period, ``YYYY-MM-DD``; empty for the last ``days``
        days of a file.
    days: length of the period in days.
    test_days: the last days, kept aside to judge the model.
    horizon_hours: hours to forecast after the last reading (at most 24).
    flaky: probability that reading the source fails on an attempt (0 to 1):
        turn it up to watch the ingest task retry.
    seed: the random seed of the simulation and of the flaky source.
    """
    check_parameters(days, test_days, horizon_hours, flaky, start=start, seed=seed, source=source)
    readings = ingest(meter_id, source, start, days, seed, flaky)
    validation = validate(readings)
    # Prefect's types allow for async tasks: a sync task called in a flow returns its value.
    clean_kwh: pd.DataFrame = clean(readings)
    features = build_features(clean_kwh, horizon_hours)
    model = train(features, test_days)
    comparison, metrics = evaluate_model(model, features, clean_kwh, test_days)
    result = PipelineResult(
        meter_id=meter_id,
        metrics=metrics,
        forecast=comparison,
        next_hours=forecast_next(model, features, horizon_hours),
        validation=validation,
        period=(f"{clean_kwh.index[0]:%Y-%m-%d}", f"{clean_kwh.index[-1]:%Y-%m-%d}"),
        source=source,
        details={
            "train_hours": model.n_train_hours,
            "test_hours": len(comparison),
            "missing_hours": int(clean_kwh["kwh"].isna().sum()),
            "imputed_hours": int(clean_kwh["imputed"].sum()),
        },
        # Which run made this result: the lessons' self-checks judge that run.
        flow_run_id=str(flow_run.id or ""),
    )
    report(result)
    return result


@task(
    name="meter-pipeline",
    retries=INGEST_RETRIES,
    retry_delay_seconds=INGEST_RETRY_DELAY_SECONDS,
    task_run_name="pipeline-{meter_id}",
    cache_policy=NO_CACHE,
)
def meter_pipeline(
    meter_id: str,
    source: str,
    start: str,
    days: int,
    test_days: int,
    horizon_hours: int,
    flaky: float,
    seed: int,
) -> dict[str, Any]:
    """The whole pipeline for one meter as a single task (for the batch flow)."""
    attempt = int(task_run.run_count or 1)
    if source_fails(flaky, seed, meter_id, attempt):
        raise FlakySourceError(f"Attempt {attempt}: the meter service for {meter_id} timed out.")
    readings = load_readings(source, meter_id=meter_id, start=start, days=days, seed=seed)
    result = run_core_pipeline(
        readings, meter_id, test_days=test_days, horizon_hours=horizon_hours, source=source
    )
    _publish(result)
    metrics = result.metrics
    return {
        "meter_id": meter_id,
        "mae_kwh": float(metrics.loc["predicted", "mae_kwh"]),
        "mae_same_hour_yesterday_kwh": float(metrics.loc["same_hour_yesterday", "mae_kwh"]),
        "mae_same_hour_last_week_kwh": float(metrics.loc["same_hour_last_week", "mae_kwh"]),
        "improvement_pct": result.improvement_pct,
        "wape_pct": float(metrics.loc["predicted", "wape_pct"]),
        "test_hours": int(metrics.loc["predicted", "hours"]),
        "attempts": attempt,
    }


@flow(
    name="energy-usage-batch",
    flow_run_name="energy-batch-{start}",
    persist_result=True,
)
def energy_usage_batch(
    meter_ids: list[str] | None = None,
    n_meters: int = 4,
    source: str = "simulated",
    start: str = "2024-01-01",
    days: int = 365,
    test_days: int = 28,
    horizon_hours: int = 24,
    flaky: float = 0.0,
    seed: int = 42,
) -> pd.DataFrame:
    """Run the pipeline for many meters at once, one mapped task per meter.

    ``meter_ids`` lists the meters; without it, ``home-001`` to
    ``home-<n_meters>``. The tasks run concurrently (Prefect's thread pool task
    runner): watch them overlap in the UI's timeline. Returns one row per meter
    and publishes the same rows as the table artifact ``energy-batch-summary``.

    The same flow runs on a Dask cluster of processes when given another task
    runner (lesson 07, ``docs/dask.md``)::

        from energy_flows.services.cluster import dask_runner
        energy_usage_batch.with_options(task_runner=dask_runner(n_workers=2))(n_meters=8)

    The result's ``attrs`` say where the tasks ran: ``summary.attrs["task_runner"]``
    (the runner's class), ``summary.attrs["dashboard_link"]`` (the Dask
    dashboard's address while the run was on, also in the run's logs; ``None``
    without one), ``summary.attrs["dask_workers"]`` (the cluster's worker
    processes, ``None`` without Dask) and ``summary.attrs["flow_run_id"]``.
    """
    check_parameters(
        days,
        test_days,
        horizon_hours,
        flaky,
        start=start,
        seed=seed,
        source=source,
        flow=energy_usage_batch,
    )
    ids = list(meter_ids) if meter_ids else [f"home-{i:03d}" for i in range(1, n_meters + 1)]
    runner, dashboard_link, dask_workers = _task_runner_and_dashboard()
    futures = meter_pipeline.map(
        ids,
        unmapped(source),
        unmapped(start),
        unmapped(days),
        unmapped(test_days),
        unmapped(horizon_hours),
        unmapped(flaky),
        unmapped(seed),
    )
    rows = futures.result()
    summary = pd.DataFrame(rows).set_index("meter_id")
    create_table_artifact(
        key="energy-batch-summary",
        table=[{"meter_id": i, **row} for i, row in summary.round(4).iterrows()],
        description=f"Day-ahead forecast of {len(ids)} meters",
    )
    summary.attrs["task_runner"] = runner
    summary.attrs["dashboard_link"] = dashboard_link
    summary.attrs["dask_workers"] = dask_workers
    context = FlowRunContext.get()
    summary.attrs["flow_run_id"] = (
        str(context.flow_run.id) if context and context.flow_run else None
    )
    return summary


def _task_runner_and_dashboard() -> tuple[str, str | None, int | None]:
    """The running flow's task runner: its class name, dashboard link and Dask workers.

    A task runner that offers a dashboard (the package's Dask runner,
    ``services/cluster.py``) says where in its ``dashboard_link`` attribute,
    and how many worker processes it has in ``n_workers``; this layer reads
    the attributes and never imports the runner's module.
    """
    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    link = getattr(runner, "dashboard_link", None)
    if isinstance(link, str) and link:
        get_run_logger().info("tasks run on a Dask cluster; its dashboard: %s", link)
    else:
        link = None
    n_workers = getattr(runner, "n_workers", None)
    return type(runner).__name__, link, n_workers if isinstance(n_workers, int) else None


# --------------------------------------------------------------------------
# Reading results back (from a notebook, while or after a worker ran the flow)


def read_report(meter_id: str) -> dict[str, Any]:
    """The latest report and metrics published for ``meter_id``, read from the server.

    Returns ``{"report": <markdown str>, "metrics": <DataFrame>}`` (``None``
    for what has not been published yet). Synchronous: safe in a notebook.
    """
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    keys = artifact_keys(meter_id)
    found: dict[str, Any] = {}
    with get_client(sync_client=True) as client:
        for name, key in keys.items():
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.UPDATED_DESC,
                limit=1,
            )
            data = artifacts[0].data if artifacts else None
            if name == "metrics" and data is not None:
                records = json.loads(data) if isinstance(data, str) else data
                data = pd.DataFrame(records)
            found[name] = data
    return found
