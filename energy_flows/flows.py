"""The energy pipeline as Prefect tasks and flows.

Each task is a thin wrapper over a function of the energy core
(:mod:`energy_flows.data`, :mod:`energy_flows.forecasting`), so what Prefect
adds is visible on its own: retries, logs, states, artifacts, concurrency.

::

    ingest -> validate -> clean -> build features -> train -> evaluate -> report
    (retries)                                                            (artifacts)

This module is importable (``energy_flows/flows.py``), which is what a
deployment needs: ``flow.from_source(<folder>, "energy_flows/flows.py:energy_usage_pipeline")``
and a worker running in another directory load the flow from this file. A flow
defined in a notebook cell cannot be deployed.

The flows are synchronous on purpose: in a notebook the kernel already runs an
event loop, and a sync flow is simply called like a function.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.runtime import flow_run, task_run
from prefect.utilities.annotations import unmapped

from energy_flows.data import (
    check_pipeline_parameters,
    clean_readings,
    read_meter,
    validate_readings,
)
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
from energy_flows.reports import artifact_keys, markdown_summary, metrics_records

__all__ = ["energy_usage_batch", "energy_usage_pipeline"]

#: The ingest task tries this many more times when the source fails.
INGEST_RETRIES = 2
#: Seconds between two attempts: short, so a lesson does not wait.
INGEST_RETRY_DELAY_SECONDS = 1


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
    attempt = int(task_run.run_count or 1)  # 1 on the first attempt, 2 on the first retry ...
    try:
        readings = read_meter(
            meter_id, days=days, start=start, source=source, seed=seed, flaky=flaky, attempt=attempt
        )
    except ConnectionError:
        logger.warning("attempt %d: the meter service did not answer", attempt)
        raise  # Prefect catches it and, while retries are left, runs the task again
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


def _publish(result: PipelineResult) -> None:
    """The run's report (markdown) and metrics (a table), as artifacts on the server."""
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


@task(name="report", cache_policy=NO_CACHE)
def report(result: PipelineResult) -> None:
    """Publish a markdown summary and a metrics table as Prefect artifacts."""
    _publish(result)


# --------------------------------------------------------------------------
# Flows


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

    ``source``: ``"simulated"``; ``"uci"``, the real household shipped with the
    package (2006-12-16 to 2010-11-26, so e.g. ``start="2010-01-01"``); a CSV
    file (columns timestamp, kwh) or the raw UCI file. ``start``: first day,
    ``YYYY-MM-DD`` (empty: the last ``days`` days of a file). ``test_days``:
    the last days, kept aside to judge the model. ``horizon_hours``: hours to
    forecast (at most 24). ``flaky``: the probability that reading the meter
    fails on an attempt: turn it up to watch ``ingest`` retry.
    """
    check_pipeline_parameters(
        days, test_days, horizon_hours, flaky, start=start, seed=seed, source=source
    )
    readings = ingest(meter_id, source, start, days, seed, flaky)
    validation = validate(readings)
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
        flow_run_id=str(flow_run.id or ""),  # which run made it: the lessons' checks ask
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
    meter_id: str, source: str, start: str, days: int, test_days: int, flaky: float, seed: int
) -> dict[str, Any]:
    """The whole pipeline for one meter as a single task (one row of the batch's table)."""
    attempt = int(task_run.run_count or 1)
    readings = read_meter(
        meter_id, days=days, start=start, source=source, seed=seed, flaky=flaky, attempt=attempt
    )
    result = run_core_pipeline(readings, meter_id, test_days=test_days, source=source)
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
        "process": os.getpid(),  # which process ran the task: the flow's own, or a Dask worker
    }


@flow(name="energy-usage-batch", flow_run_name="energy-batch-{start}", persist_result=True)
def energy_usage_batch(
    meter_ids: list[str] | None = None,
    n_meters: int = 4,
    source: str = "simulated",
    start: str = "2024-01-01",
    days: int = 365,
    test_days: int = 28,
    flaky: float = 0.0,
    seed: int = 42,
) -> pd.DataFrame:
    """Run the pipeline for many meters at once: one task per meter, with ``.map``.

    ``meter_ids`` lists the meters; without it, ``home-001`` to
    ``home-<n_meters>``. The tasks run on the flow's task runner: Prefect's
    threads by default, a Dask cluster with
    ``energy_usage_batch.with_options(task_runner=...)`` (lesson 07). Returns
    one row per meter, also published as the table artifact
    ``energy-batch-summary``. Its ``attrs`` say where the tasks ran:
    ``task_runner`` (the runner's class), ``task_processes`` (the processes
    that ran tasks) and ``flow_process``, plus what a runner describes of
    itself (the package's Dask runner: ``dask_workers``, ``dashboard_link``);
    ``flow_run_id`` names the run.
    """
    check_pipeline_parameters(days, test_days, None, flaky, start=start, seed=seed, source=source)
    ids = list(meter_ids) if meter_ids else [f"home-{i:03d}" for i in range(1, n_meters + 1)]
    context = FlowRunContext.get()  # the run's context: its task runner, among others
    runner = context.task_runner if context is not None else None
    where: dict[str, Any] = {"task_runner": type(runner).__name__}
    where.update(getattr(runner, "describe", dict)())
    if where.get("dashboard_link"):
        get_run_logger().info(
            "tasks run on a Dask cluster; its dashboard: %s", where["dashboard_link"]
        )
    # One task per meter. unmapped(): the same text for every task (else mapped letter by letter).
    futures = meter_pipeline.map(
        ids, unmapped(source), unmapped(start), days, test_days, flaky, seed
    )
    rows = futures.result()
    summary = pd.DataFrame(rows).set_index("meter_id")
    processes = summary.pop("process")
    create_table_artifact(
        key="energy-batch-summary",
        table=[{"meter_id": i, **row} for i, row in summary.round(4).iterrows()],
        description=f"Day-ahead forecast of {len(ids)} meters",
    )
    summary.attrs.update(where)
    summary.attrs["task_processes"] = sorted(set(processes))
    summary.attrs["flow_process"] = os.getpid()
    summary.attrs["flow_run_id"] = str(flow_run.id or "")
    return summary
