"""What a run produced, read back in the notebook: its result object, artifacts and logs.

A worker runs each flow in its own process, so the notebook never holds the
return value. Prefect persists it (the classroom sets
``PREFECT_RESULTS_PERSIST_BY_DEFAULT=true``) and records where; we read it
back from there. Artifacts (the markdown report, the forecast table) and log
lines live in the server's database.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from energy_flows.orchestration.common import client, timestamp
from energy_flows.orchestration.runs import RunInfo, deployment_names, run_info, run_uuid

ARTIFACT_COLUMNS = ["key", "type", "description", "data"]
LOG_COLUMNS = ["timestamp", "level", "message"]


@dataclass(frozen=True)
class RunResult:
    """One finished run: its state, the object the flow returned, its artifacts and logs.

    ``result`` is None when the run has no readable result (it failed, or ran
    without result persistence); ``note`` then says why.
    """

    name: str
    id: str
    state: str
    result: Any
    artifacts: pd.DataFrame = field(repr=False)
    logs: pd.DataFrame = field(repr=False)
    run: RunInfo | None = field(default=None, repr=False)
    note: str = ""

    @property
    def metrics(self) -> Any:
        """The result's ``metrics`` (None when it has none)."""
        return getattr(self.result, "metrics", None)

    @property
    def forecast(self) -> Any:
        """The result's ``forecast`` (None when it has none)."""
        return getattr(self.result, "forecast", None)

    def _repr_html_(self) -> str:
        parts = [
            f"<div><strong>Flow run {html.escape(self.name)}</strong>: {html.escape(self.state)}"
        ]
        if self.note:
            parts.append(f"<p><em>{html.escape(self.note)}</em></p>")
        metrics = self.metrics
        if isinstance(metrics, dict):
            metrics = pd.Series(metrics, name="value").to_frame()
        if isinstance(metrics, pd.Series):
            metrics = metrics.to_frame()
        if isinstance(metrics, pd.DataFrame):
            parts.append("<p>Metrics</p>" + metrics.round(3).to_html())
        forecast = self.forecast
        if isinstance(forecast, pd.Series):
            forecast = forecast.to_frame()
        if isinstance(forecast, pd.DataFrame):
            head = forecast.head().round(3).to_html()
            parts.append(
                f"<p>Forecast (first {min(5, len(forecast))} of {len(forecast)} rows)</p>{head}"
            )
        elif self.result is not None and metrics is None:
            parts.append(f"<pre>{html.escape(repr(self.result)[:500])}</pre>")
        parts.append(
            f"<p>{len(self.artifacts)} artifact(s): "
            f"{html.escape(', '.join(map(str, self.artifacts['key'].dropna())) or '—')}; "
            f"{len(self.logs)} log line(s).</p></div>"
        )
        return "".join(parts)


def _artifact_data(data: Any) -> Any:
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError:
            return data
    return data


def run_result(run: Any) -> RunResult:
    """Everything a run produced, read back from the server and the result storage.

    Args:
        run: a RunInfo (from :func:`trigger`, :func:`wait_for`), a run id, or a row id
            of :func:`queue_runs`.

    Returns:
        A :class:`RunResult`: ``result`` (the flow's return value),
        ``artifacts`` (DataFrame: key, type, description, data; sorted by key, without
        Prefect's internal "result" records) and
        ``logs`` (DataFrame: timestamp, level, message), oldest first.
    """
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import ArtifactSort, LogSort
    from prefect.exceptions import ObjectNotFound

    from energy_flows.errors import OrchestrationError

    run_id = run_uuid(run)
    with client() as c:
        try:
            flow_run = c.read_flow_run(run_id)
        except ObjectNotFound:
            raise OrchestrationError(f"There is no flow run with id {run_id}.") from None
        info = run_info(flow_run, deployment_names(c, [flow_run]).get(flow_run.deployment_id))
        artifacts = c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])),
            sort=ArtifactSort.KEY_ASC,
        )

        def read_logs() -> list[Any]:
            return c.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                sort=LogSort.TIMESTAMP_ASC,
                limit=200,
            )

        logs = read_logs()
        if _logs_may_be_in_flight(flow_run, logs):
            # The run's process sends its last log lines in a batch after it has
            # reported its final state: give them a moment to arrive.
            from energy_flows.errors import WaitTimeout
            from energy_flows.waiting import wait_until

            def complete() -> bool:
                nonlocal logs
                logs = read_logs()
                return not _logs_may_be_in_flight(flow_run, logs)

            try:
                wait_until(complete, LOG_GRACE_SECONDS, what="the run's last log lines")
            except WaitTimeout:
                pass
    art, log = _tables(artifacts, logs)
    result, note = _result_and_note(flow_run.state, info.state)
    return RunResult(
        name=info.name,
        id=info.id,
        state=info.state,
        result=result,
        artifacts=art,
        logs=log,
        run=info,
        note=note,
    )


def _tables(artifacts: list[Any], logs: list[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's artifacts and log lines as the tables of :class:`RunResult`."""
    art = pd.DataFrame(
        [
            {
                "key": a.key,
                "type": a.type,
                "description": a.description,
                "data": _artifact_data(a.data),
            }
            for a in artifacts
            # "result" artifacts are Prefect's own note of where the result file is.
            if a.type != "result"
        ],
        columns=ARTIFACT_COLUMNS,
    )
    log = pd.DataFrame(
        [
            {
                "timestamp": timestamp(entry.timestamp),
                "level": _level(entry.level),
                "message": entry.message,
            }
            for entry in logs
        ],
        columns=LOG_COLUMNS,
    )
    log["timestamp"] = pd.to_datetime(log["timestamp"], utc=True)
    return art, log


def _result_and_note(state: Any, state_name: str) -> tuple[Any, str]:
    """A run's return value (None when there is none), and a note that says why not."""
    from prefect.exceptions import MissingResult

    if state is None or not state.is_final():
        return None, (
            f"The run is {state_name}: it has no result yet. Wait for it with "
            "wait_for(run), then call run_result(run) again."
        )
    if not state.is_completed():
        message = state.message or ""
        note = f"The run ended {state_name}" + (f": {message}" if message else ".")
        return None, note + (" Its logs say why." if state_name == "Failed" else "")
    try:
        # `_sync=True`: in a notebook's event loop Prefect would hand back a coroutine.
        dual: Any = state  # Prefect types the dual (sync/async) `result` as async only
        return dual.result(raise_on_failure=False, _sync=True), ""
    except MissingResult:
        return None, (
            "The run completed but its result was not saved (result persistence was off "
            "for the worker). Workers started by energy_flows save results."
        )
    except Exception as exc:
        return None, f"The run completed but its result cannot be read: {exc}"


#: How long run_result waits for the log lines of a run that has just finished.
LOG_GRACE_SECONDS = 5.0


def _logs_may_be_in_flight(flow_run: Any, logs: list[Any]) -> bool:
    """True for a run that ended moments ago whose closing log line has not arrived yet."""
    from energy_flows.orchestration.common import now_utc

    state = flow_run.state
    if state is None or not state.is_final() or flow_run.end_time is None:
        return False
    if (now_utc() - flow_run.end_time).total_seconds() > 2 * LOG_GRACE_SECONDS:
        return False
    return not any(str(entry.message).startswith("Finished in state") for entry in logs)


def _level(level: int) -> str:
    import logging

    return logging.getLevelName(level)


def read_report(meter_id: str) -> dict[str, Any]:
    """The latest report and metrics published for ``meter_id``, read from the server.

    Returns ``{"report": <markdown str>, "metrics": <DataFrame>}`` (``None``
    for what has not been published yet): the artifacts the energy flows
    publish under :func:`~energy_flows.reports.artifact_keys`, whichever run
    published them last. Synchronous: safe in a notebook.
    """
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from energy_flows.reports import artifact_keys

    found: dict[str, Any] = {}
    with client() as c:
        for name, key in artifact_keys(meter_id).items():
            artifacts = c.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.UPDATED_DESC,
                limit=1,
            )
            data = _artifact_data(artifacts[0].data) if artifacts else None
            if name == "metrics" and data is not None:
                data = pd.DataFrame(data)
            found[name] = data
    return found
