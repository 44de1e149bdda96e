"""Self-checks for the lessons' exercises.

Each ``check_...()`` looks at the real thing (the server's deployments, runs
and queues, or the object the learner's cell returned) and returns a
:class:`CheckResult`: what is right, and precisely what is still missing with
the one thing to do next. It displays as a short list in a notebook and is
truthy when the exercise is done::

    my_result = energy_usage_pipeline(meter_id="home-042", days=60, flaky=0.5)
    check_flaky_run(my_result)

A check never changes anything on the server.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

#: The flow every exercise is about.
FLOW_NAME = "energy-usage-pipeline"


@dataclass
class CheckResult:
    """The verdict of one self-check: what is right and what is missing."""

    exercise: str
    right: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing."""
        return not self.missing

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        head = f"✓ {self.exercise}: done, well done!" if self.ok else f"✗ {self.exercise}: not yet."
        lines = [head, *(f"  ✓ {r}" for r in self.right), *(f"  ✗ {m}" for m in self.missing)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = "#1b5e20" if self.ok else "#b71c1c"
        head = "done, well done!" if self.ok else "not yet."
        items = [f"<li style='color:#1b5e20'>✓ {html.escape(r)}</li>" for r in self.right]
        items += [f"<li style='color:#b71c1c'>✗ {html.escape(m)}</li>" for m in self.missing]
        return (
            f"<div><b style='color:{colour}'>{'✓' if self.ok else '✗'} "
            f"{html.escape(self.exercise)}: {head}</b>"
            f"<ul style='margin:2px 0'>{''.join(items)}</ul></div>"
        )


def _client():
    from energy_flows.orchestration._common import client

    return client()


def _nothing_yet(check: CheckResult, variable: str, call: str) -> CheckResult:
    check.missing.append(
        f"`{variable}` is still None: replace None with {call} and run the cell again."
    )
    return check


# --------------------------------------------------------------------------- lesson 02


def _latest_flow_run(meter_id: str) -> Any:
    """The most recent run of the energy flow for ``meter_id`` (None when there is none)."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterName,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with _client() as c:
        runs = c.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"energy-{meter_id}-")),
            sort=FlowRunSort.START_TIME_DESC,
            limit=20,
        )
    runs = [r for r in runs if (r.parameters or {}).get("meter_id") == meter_id]
    return runs[0] if runs else None


def _task_runs(flow_run_id: Any, name_prefix: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with _client() as c:
        tasks = c.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [t for t in tasks if t.name.startswith(name_prefix)]


def check_flaky_run(
    result: Any, meter_id: str = "home-042", days: int = 60, flaky: float = 0.5
) -> CheckResult:
    """Lesson 02: a run of the pipeline for ``meter_id`` whose flaky source made ingest retry.

    Looks at the returned object and at the run the server recorded: its
    parameters, its final state, and how many attempts its ``ingest`` task took.
    """
    from energy_flows.forecasting import PipelineResult

    check = CheckResult(f"Exercise: a flaky run for {meter_id}")
    call = f'energy_usage_pipeline(meter_id="{meter_id}", days={days}, flaky={flaky})'
    if result is None:
        return _nothing_yet(check, "my_result", call)
    if not isinstance(result, PipelineResult):
        check.missing.append(
            f"`my_result` is a {type(result).__name__}, not what the flow returns: "
            f"assign the flow's return value, my_result = {call}."
        )
        return check
    if result.meter_id != meter_id:
        check.missing.append(
            f"the result is for meter {result.meter_id!r}; the exercise asks for {meter_id!r}."
        )
        return check
    check.right.append(f"the flow returned a result for {meter_id}")
    run = _latest_flow_run(meter_id)
    if run is None:
        check.missing.append(
            f"the server has no run of {FLOW_NAME} for {meter_id}: was the flow called in this "
            "kernel, after the lesson's first cell?"
        )
        return check
    params = run.parameters or {}
    if int(params.get("days", 365)) != days:
        check.missing.append(f"the run used days={params.get('days', 365)}; use days={days}.")
    else:
        check.right.append(f"it covers {days} days")
    if float(params.get("flaky", 0.0)) != flaky:
        check.missing.append(
            f"the run used flaky={params.get('flaky', 0.0)}: set flaky={flaky} so that the "
            "source fails some of the time."
        )
    state = run.state.name if run.state else "unknown"
    if state != "Completed":
        check.missing.append(f"the server says the run is {state}, not Completed.")
    else:
        check.right.append(f"the server recorded the run {run.name!r} as Completed")
    ingest = _task_runs(run.id, "ingest")
    if not ingest:
        check.missing.append("the run has no ingest task run on the server.")
    else:
        attempts = max(int(t.run_count or 1) for t in ingest)
        if attempts > 1:
            check.right.append(
                f"ingest needed {attempts} attempts: Prefect retried it {attempts - 1} time(s)"
            )
        elif float(params.get("flaky", 0.0)) == flaky:
            check.missing.append(
                "ingest succeeded at its first attempt, so there was no retry to see."
            )
    return check


# --------------------------------------------------------------------------- lesson 03


def check_cron_deployment(
    info: Any,
    name: str = "energy-nightly",
    cron: str = "0 2 * * *",
    queue: str = "energy_usage",
) -> CheckResult:
    """Lesson 03: a deployment ``name`` of the energy flow on the cron schedule ``cron``."""
    from energy_flows.orchestration import list_deployments

    check = CheckResult(f"Exercise: the deployment {name!r} on cron {cron!r}")
    if info is None:
        return _nothing_yet(
            check, "nightly", f'deploy_energy_flow("{name}", cron="{cron}") (or the builder)'
        )
    table = list_deployments()
    rows = table[(table["name"] == name) & (table["flow"] == FLOW_NAME)]
    if rows.empty:
        names = ", ".join(table["name"]) or "none"
        check.missing.append(
            f"the server has no deployment {name!r} of {FLOW_NAME} (it has: {names})."
        )
        return check
    row = rows.iloc[0]
    check.right.append(f"the deployment {FLOW_NAME}/{name} exists on the server")
    expected = f"cron {cron!r}"
    if row["schedule"].startswith(expected):
        check.right.append(f"its schedule is {row['schedule']}")
    else:
        check.missing.append(
            f"its schedule is {row['schedule']}, not {expected}: deploy again with cron={cron!r}."
        )
    if row["work_queue"] == queue:
        check.right.append(f"its runs go to the queue {queue!r}")
    else:
        check.missing.append(f"its runs go to {row['work_queue']!r}, not {queue!r}.")
    if bool(row["paused"]):
        check.missing.append("it is paused: deploy it with paused=False.")
    return check


# --------------------------------------------------------------------------- lesson 04


def check_late_run(run: Any, deployment: str = "energy-usage") -> CheckResult:
    """Lesson 04: a run triggered from ``deployment`` that nobody picked up, now Late."""
    from energy_flows.orchestration import RunInfo, read_run

    check = CheckResult("Exercise: a run that turned Late")
    if run is None:
        return _nothing_yet(check, "my_run", 'trigger("energy-usage", flow_run_name="my-late-run")')
    if not isinstance(run, RunInfo):
        check.missing.append(
            f"`my_run` is a {type(run).__name__}; assign what trigger() returns to it."
        )
        return check
    now = read_run(run)
    if now.deployment != deployment:
        check.missing.append(
            f"the run belongs to deployment {now.deployment!r}, not {deployment!r}."
        )
    else:
        check.right.append(f"the run {now.name!r} comes from the deployment {deployment!r}")
    if now.state == "Late":
        check.right.append("it is Late: its start time passed and no worker took it")
    elif now.state == "Scheduled":
        check.missing.append(
            'it is still Scheduled: wait until it turns Late, wait_for(until="late").'
        )
    else:
        check.missing.append(
            f"it is {now.state}: a worker picked it up, so it never stayed Late. "
            "Stop your workers and trigger another run."
        )
    return check


# --------------------------------------------------------------------------- lesson 05


def check_deployment_run(
    outcome: Any, meter_id: str = "home-007", deployment: str = "energy-usage"
) -> CheckResult:
    """Lesson 05: a run of ``deployment`` for ``meter_id``, run by a worker, read back."""
    from energy_flows.forecasting import PipelineResult
    from energy_flows.orchestration import RunResult, read_run

    check = CheckResult(f"Exercise: a worker's forecast for {meter_id}")
    if outcome is None:
        return _nothing_yet(check, "my_outcome", "run_result(wait_for(trigger(...)))")
    if not isinstance(outcome, RunResult):
        check.missing.append(
            f"`my_outcome` is a {type(outcome).__name__}; it should be what run_result() returns."
        )
        return check
    run = read_run(outcome.id)
    if run.deployment != deployment:
        check.missing.append(
            f"the run did not come from the deployment {deployment!r} "
            f"({run.deployment or 'no deployment'}): use trigger({deployment!r}, ...)."
        )
    else:
        check.right.append(f"the run {run.name!r} came from the deployment {deployment!r}")
    if run.state != "Completed":
        check.missing.append(f"the run is {run.state}, not Completed: wait_for(run) first.")
    else:
        check.right.append("a worker ran it to Completed")
    if run.parameters.get("meter_id") != meter_id:
        check.missing.append(
            f"the run's meter_id is {run.parameters.get('meter_id', 'the default')!r}: pass "
            f'parameters={{"meter_id": "{meter_id}"}}.'
        )
    result = outcome.result
    if isinstance(result, PipelineResult) and result.meter_id == meter_id:
        check.right.append(
            f"its result is readable here: MAE {result.mae_kwh:.3f} kWh for {meter_id}"
        )
    elif run.state == "Completed":
        check.missing.append(
            "its result is not readable here"
            + (f" ({outcome.note})" if outcome.note else "")
            + ": call run_result(run) after the run completed."
        )
    return check


# --------------------------------------------------------------------------- lesson 06


def check_no_late_runs(queue: str = "energy_usage", pool: str = "energy-pool") -> CheckResult:
    """Lesson 06: the queue holds no Late run any more."""
    from energy_flows.orchestration import queue_runs

    check = CheckResult(f"Exercise: no Late runs left in {queue!r}")
    late = queue_runs(queue, pool, states=["Late"])
    if late.empty:
        check.right.append(f"{queue!r} has no Late run")
    else:
        # No count or names: the schedule may add a Late run any minute.
        check.missing.append(
            f"{queue!r} still holds Late runs (queue_runs({queue!r}, states=['Late']) lists "
            f"them): cancel them with cancel_late_runs({queue!r})."
        )
    return check


__all__ = [
    "CheckResult",
    "check_cron_deployment",
    "check_deployment_run",
    "check_flaky_run",
    "check_late_run",
    "check_no_late_runs",
]
