"""A stand-in flow shaped like the energy pipeline: a result with metrics and a forecast."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact


@dataclass
class StandinResult:
    meter_id: str
    metrics: dict[str, float]
    forecast: pd.DataFrame


@flow(name="standin-energy")
def standin_pipeline(meter_id: str = "house-1", days: int = 2, scale: float = 1.0) -> StandinResult:
    """Return a tiny forecast and publish a report, like the energy pipeline does."""
    logger = get_run_logger()
    logger.info("forecasting %s for %d days", meter_id, days)
    index = pd.date_range("2024-01-01", periods=days * 24, freq="h", tz="UTC")
    forecast = pd.DataFrame(
        {"kwh": [round(scale * (i % 24) / 10, 3) for i in range(len(index))]}, index=index
    )
    metrics = {"mae_kwh": 0.1 * scale, "rmse_kwh": 0.2 * scale}
    key = f"energy-report-{meter_id}"
    create_markdown_artifact(f"# Report for {meter_id}\nMAE {metrics['mae_kwh']:.2f}", key=key)
    create_table_artifact([metrics], key=f"{key}-metrics")
    return StandinResult(meter_id=meter_id, metrics=metrics, forecast=forecast)


@flow(name="standin-required")
def needs_start(start: str, days: int = 1) -> str:
    """A flow with a required parameter (for the validation tests)."""
    return f"{start}+{days}"
