"""Turn a pipeline result into what a person reads: markdown and table rows.

Pure functions (no Prefect): the flow publishes their output as Prefect
artifacts under :func:`artifact_keys`, and a notebook can show them directly.
"""

from __future__ import annotations

import re

from energy_flows.forecasting import PipelineResult

__all__ = ["artifact_keys", "markdown_summary", "metrics_records"]


def _slug(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "meter"


def artifact_keys(meter_id: str) -> dict[str, str]:
    """The keys under which a run publishes its report and metrics for ``meter_id``.

    The flows publish under these keys; ``read_report()`` reads them back.
    """
    slug = _slug(meter_id)
    return {"report": f"energy-report-{slug}", "metrics": f"energy-metrics-{slug}"}


_LABELS = {
    "predicted": "model (ridge, day-ahead)",
    "same_hour_yesterday": "baseline: same hour yesterday",
    "same_hour_last_week": "baseline: same hour last week",
}


def metrics_records(result: PipelineResult) -> list[dict[str, float | int | str]]:
    """The metrics table as a list of plain rows (what a table artifact stores)."""
    rows: list[dict[str, float | int | str]] = []
    for method, row in result.metrics.iterrows():
        record: dict[str, float | int | str] = {"meter_id": result.meter_id, "method": str(method)}
        for column, value in row.items():
            record[str(column)] = int(value) if column == "hours" else round(float(value), 4)
        rows.append(record)
    return rows


def markdown_summary(result: PipelineResult) -> str:
    """A short report: the period, the data quality, and how the model did."""
    metrics = result.metrics
    verdict = "beats" if result.beats_baselines else "does **not** beat"
    lines = [
        f"# Energy forecast for `{result.meter_id}`",
        "",
        f"Source: {result.source}, readings from {result.period[0]} to {result.period[1]}.",
        "",
        f"The day-ahead model {verdict} both baselines: mean absolute error "
        f"**{result.mae_kwh:.3f} kWh** per hour, {result.improvement_pct:+.1f} % compared with "
        "*same hour yesterday*.",
        "",
        "| method | MAE (kWh) | RMSE (kWh) | WAPE (%) |",
        "|---|---:|---:|---:|",
    ]
    for method, row in metrics.iterrows():
        lines.append(
            f"| {_LABELS.get(str(method), method)} | {row['mae_kwh']:.3f} | "
            f"{row['rmse_kwh']:.3f} | {row['wape_pct']:.1f} |"
        )
    problems = result.validation[result.validation["status"] != "ok"]
    lines += ["", "## Data quality", ""]
    if problems.empty:
        lines.append("Every check passed.")
    else:
        for check, row in problems.iterrows():
            lines.append(f"- **{check}** ({row['status']}): {row['detail']}")
    details = result.details
    if details:
        lines += [
            "",
            f"Trained on {details.get('train_hours', '?')} hours, tested on "
            f"{details.get('test_hours', '?')} hours; {details.get('imputed_hours', 0)} short gaps "
            f"filled, {details.get('missing_hours', 0)} hours left missing.",
        ]
    return "\n".join(lines) + "\n"
