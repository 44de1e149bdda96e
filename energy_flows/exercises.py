"""Self-checks for the lessons' exercises.

Each ``check_...()`` judges the answer it is given: the object the learner's
call returned (a result, a deployment, a run, a table), and the very thing on
the server that object stands for, found by its id. It never settles for
"something of that name exists": the lesson's solution cell (which Run All
executes) has usually created that already. It returns a :class:`CheckResult`:
what is right, and precisely what is still missing with the one thing to do
next. It displays as a short list in a notebook and is truthy when the
exercise is done::

    my_result = energy_usage_pipeline(meter_id="home-042", days=60, flaky=0.5)
    check_flaky_run(my_result)

A check never changes anything on the server.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from energy_flows.vocabulary import BAD_COLOUR, DEFAULT_QUEUE, OK_COLOUR

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
        colour = OK_COLOUR if self.ok else BAD_COLOUR
        head = "done, well done!" if self.ok else "not yet."
        items = [f"<li style='color:{OK_COLOUR}'>✓ {html.escape(r)}</li>" for r in self.right]
        items += [f"<li style='color:{BAD_COLOUR}'>✗ {html.escape(m)}</li>" for m in self.missing]
        return (
            f"<div><b style='color:{colour}'>{'✓' if self.ok else '✗'} "
            f"{html.escape(self.exercise)}: {head}</b>"
            f"<ul style='margin:2px 0'>{''.join(items)}</ul></div>"
        )


def _client() -> Any:
    from energy_flows.orchestration.common import client

    return client()


def _nothing_yet(check: CheckResult, variable: str, call: str) -> CheckResult:
    check.missing.append(
        f"`{variable}` is still None: replace None with {call} and run the cell again."
    )
    return check


def _wrong_type(check: CheckResult, variable: str, value: Any, advice: str) -> CheckResult:
    check.missing.append(f"`{variable}` is a {type(value).__name__}; {advice}")
    return check


def _flow_run(run_id: str) -> Any:
    """The server's flow run with id ``run_id``, or None when this server has none."""
    import uuid

    from prefect.exceptions import ObjectNotFound

    try:
        key = uuid.UUID(str(run_id))
    except ValueError:
        return None
    with _client() as c:
        try:
            return c.read_flow_run(key)
        except ObjectNotFound:
            return None


def _flow_name(flow_id: Any) -> str:
    with _client() as c:
        return c.read_flow(flow_id).name


# --------------------------------------------------------------------------- lesson 02


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
    """Lesson 02: ``result`` came from a run for ``meter_id`` whose flaky source made ingest retry.

    The result remembers the flow run that made it (``result.flow_run_id``);
    the check asks the server for that run, and only that run: its
    parameters, its final state, and how many attempts its ``ingest`` task took.
    """
    from energy_flows.forecasting import PipelineResult

    check = CheckResult(f"Exercise: a flaky run for {meter_id}")
    call = f'energy_usage_pipeline(meter_id="{meter_id}", days={days}, flaky={flaky})'
    if result is None:
        return _nothing_yet(check, "my_result", call)
    if not isinstance(result, PipelineResult):
        return _wrong_type(
            check,
            "my_result",
            result,
            f"not what the flow returns: assign the flow's return value, my_result = {call}.",
        )
    if not result.flow_run_id:
        check.missing.append(
            "`my_result` was not made by a run of the flow (it names no flow run): "
            f"call the flow itself, my_result = {call}."
        )
        return check
    run = _flow_run(result.flow_run_id)
    if run is None:
        check.missing.append(
            "this server has no record of the run that made `my_result` (it ran against "
            "another server): run the lesson's first cell, then your cell again."
        )
        return check
    flow = _flow_name(run.flow_id)
    if flow != FLOW_NAME:
        check.missing.append(f"`my_result` came from the flow {flow!r}: call {call}.")
        return check
    return _judge_flaky_run(check, run, meter_id, days, flaky)


def _judge_flaky_run(
    check: CheckResult, run: Any, meter_id: str, days: int, flaky: float
) -> CheckResult:
    """The run's parameters, its final state and its ingest retries, line by line."""
    params = run.parameters or {}
    if params.get("meter_id") != meter_id:
        check.missing.append(
            f"the run was for meter {params.get('meter_id')!r}; the exercise asks for "
            f'meter_id="{meter_id}".'
        )
    else:
        check.right.append(f"the flow returned a result for {meter_id}")
    if int(params.get("days", 365)) != days:
        check.missing.append(f"the run used days={params.get('days', 365)}; use days={days}.")
    else:
        check.right.append(f"it covers {days} days")
    ran_flaky = float(params.get("flaky", 0.0))
    if ran_flaky != flaky:
        check.missing.append(
            f"the run used flaky={ran_flaky}: set flaky={flaky} so that the source fails "
            "some of the time."
        )
    state = run.state.name if run.state else "unknown"
    if state != "Completed":
        check.missing.append(f"the server says the run is {state}, not Completed.")
    else:
        check.right.append(f"the server recorded the run that made it, {run.name!r}, as Completed")
    ingest = _task_runs(run.id, "ingest")
    if not ingest:
        check.missing.append("the run has no ingest task run on the server.")
    else:
        attempts = max(int(t.run_count or 1) for t in ingest)
        if attempts > 1:
            check.right.append(
                f"ingest needed {attempts} attempts: Prefect retried it {attempts - 1} time(s)"
            )
        elif ran_flaky == flaky:
            check.missing.append(
                "ingest succeeded at its first attempt, so there was no retry to see."
            )
    return check


# --------------------------------------------------------------------------- lesson 03


def check_cron_deployment(
    info: Any,
    name: str = "energy-nightly",
    cron: str = "0 2 * * *",
    queue: str = DEFAULT_QUEUE,
) -> CheckResult:
    """Lesson 03: ``info`` is a deployment ``name`` of the energy flow on the cron ``cron``.

    Judges the :class:`~energy_flows.orchestration.DeploymentInfo` it is given
    (what ``deploy_energy_flow()`` or ``builder.deploy()`` returned): its name,
    schedule, queue, and that the server holds this very deployment (by id),
    still as the call left it.
    """
    import uuid

    from prefect.exceptions import ObjectNotFound

    from energy_flows.orchestration import DeploymentInfo

    check = CheckResult(f"Exercise: the deployment {name!r} on cron {cron!r}")
    call = f'deploy_energy_flow("{name}", cron="{cron}")'
    if info is None:
        return _nothing_yet(check, "nightly", f"{call} (or the builder)")
    if type(info).__name__ == "DeploymentBuilder":
        check.missing.append(
            "`nightly` is the form itself: keep what deploying returns, nightly = builder.deploy()."
        )
        return check
    if not isinstance(info, DeploymentInfo):
        return _wrong_type(
            check, "nightly", info, f"keep what deploying returns in it: nightly = {call}."
        )
    if info.flow_name != FLOW_NAME:
        check.missing.append(
            f"it deploys the flow {info.flow_name!r}, not {FLOW_NAME!r}: use {call}."
        )
    if info.name != name:
        check.missing.append(
            f"your deployment is called {info.name!r}; the exercise asks for {name!r}: {call}."
        )
    try:
        with _client() as c:
            stored = c.read_deployment(uuid.UUID(info.id))
            stored_flow = c.read_flow(stored.flow_id).name
    except (ObjectNotFound, ValueError):
        check.missing.append(
            f"this server has no deployment with the id of `nightly`: deploy it here, {call}."
        )
        return check
    if (stored_flow, stored.name) != (info.flow_name, info.name):
        check.missing.append(
            f"the server's deployment with this id is {stored_flow}/{stored.name}: keep what "
            f"your own call returned, nightly = {call}."
        )
        return check
    if not check.missing:
        check.right.append(f"the server holds your deployment {info.full_name}")
    return _judge_cron_deployment(check, info, stored, name, cron, queue)


def _judge_cron_deployment(
    check: CheckResult, info: Any, stored: Any, name: str, cron: str, queue: str
) -> CheckResult:
    """Its schedule, its queue, not paused, and unchanged on the server since the call."""
    from energy_flows.orchestration import schedule_text

    if info.schedule.startswith(f"cron {cron!r}"):
        check.right.append(f"its schedule is {info.schedule}")
    else:
        check.missing.append(
            f"its schedule is {info.schedule}, not cron {cron!r}: deploy again with cron={cron!r}."
        )
    if info.work_queue == queue:
        check.right.append(f"its runs go to the queue {queue!r}")
    else:
        check.missing.append(
            f"its runs go to {info.work_queue!r}, not {queue!r}: deploy again with "
            f"work_queue={queue!r}."
        )
    if info.paused:
        check.missing.append("it is paused: deploy it again with paused=False.")
    if not check.missing:
        now = (schedule_text(stored.schedules), stored.work_queue_name, bool(stored.paused))
        if now != (info.schedule, info.work_queue, info.paused):
            check.missing.append(
                f"the server's {name!r} has changed since your call (it now runs "
                f"{now[0]}, queue {now[1]!r}{', paused' if now[2] else ''}): run your cell again."
            )
    return check


# --------------------------------------------------------------------------- lesson 04


def check_late_run(
    run: Any, deployment: str = "energy-usage", run_name: str = "my-late-run"
) -> CheckResult:
    """Lesson 04: ``run`` is a new run ``run_name`` of ``deployment`` that nobody took: now Late.

    Judges the :class:`~energy_flows.orchestration.RunInfo` that ``trigger()``
    returned: its name, and the state the server holds for that very run (by id).
    """
    import pandas as pd

    from energy_flows.errors import OrchestrationError
    from energy_flows.orchestration import RunInfo, read_run

    check = CheckResult("Exercise: a run that turned Late")
    call = f'trigger("{deployment}", flow_run_name="{run_name}")'
    if run is None:
        return _nothing_yet(check, "my_run", call)
    if isinstance(run, pd.DataFrame):
        check.missing.append(
            "`my_run` is a table (what wait_until_late() returns): keep what trigger() returns, "
            f"my_run = {call}, then wait on a line of its own, wait_until_late(my_run)."
        )
        return check
    if not isinstance(run, RunInfo):
        return _wrong_type(check, "my_run", run, f"assign what trigger() returns: my_run = {call}.")
    if run.name != run_name:
        check.missing.append(
            f"`my_run` is the run {run.name!r}; the exercise asks for a new run named "
            f"{run_name!r}: my_run = {call}."
        )
    try:
        now = read_run(run)
    except OrchestrationError:
        check.missing.append(
            f"this server has no run with the id of `my_run`: trigger it here, my_run = {call}."
        )
        return check
    if now.deployment != deployment:
        check.missing.append(
            f"the run belongs to deployment {now.deployment!r}, not {deployment!r}: {call}."
        )
    elif not check.missing:
        check.right.append(f"the run {now.name!r} comes from the deployment {deployment!r}")
    if now.state == "Late":
        check.right.append("it is Late: its start time passed and no worker took it")
    elif now.state == "Scheduled":
        check.missing.append(
            "it is still Scheduled: wait until it turns Late, wait_until_late(my_run)."
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
    """Lesson 05: ``outcome`` was read back from a worker's run of ``deployment`` for ``meter_id``.

    Judges the :class:`~energy_flows.orchestration.RunResult` that
    ``run_result()`` returned: the run it names (by id, on the server) and the
    result it holds, which must have been made by that same run.
    """
    from energy_flows.errors import OrchestrationError
    from energy_flows.orchestration import RunInfo, RunResult, read_run

    check = CheckResult(f"Exercise: a worker's forecast for {meter_id}")
    call = "run_result(wait_for(trigger(...)))"
    if outcome is None:
        return _nothing_yet(check, "my_outcome", call)
    if isinstance(outcome, RunInfo):
        check.missing.append(
            "`my_outcome` is the run itself (a RunInfo): read what it produced, "
            "my_outcome = run_result(run)."
        )
        return check
    if not isinstance(outcome, RunResult):
        return _wrong_type(
            check, "my_outcome", outcome, f"it should be what run_result() returns: {call}."
        )
    try:
        run = read_run(outcome.id)
    except OrchestrationError:
        check.missing.append(
            "this server has no run with the id of `my_outcome`: trigger the run here, "
            f"my_outcome = {call}."
        )
        return check
    if run.deployment != deployment:
        check.missing.append(
            f"the run did not come from the deployment {deployment!r} "
            f"({run.deployment or 'no deployment'}): use trigger({deployment!r}, ...)."
        )
    else:
        check.right.append(f"the run {run.name!r} came from the deployment {deployment!r}")
    if run.state != "Completed":
        check.missing.append(f"the run is {run.state}, not Completed: wait_for(run) first.")
    elif run.deployment == deployment:
        check.right.append("a worker ran it to Completed")
    if run.parameters.get("meter_id") != meter_id:
        check.missing.append(
            f"the run's meter_id is {run.parameters.get('meter_id', 'the default')!r}: pass "
            f'parameters={{"meter_id": "{meter_id}"}}.'
        )
    _judge_result(check, outcome, run, meter_id)
    return check


def _judge_result(check: CheckResult, outcome: Any, run: Any, meter_id: str) -> None:
    """Lesson 05: the result in ``outcome`` is readable, and made by its own run."""
    from energy_flows.forecasting import PipelineResult

    result = outcome.result
    if isinstance(result, PipelineResult) and result.flow_run_id not in ("", outcome.id):
        check.missing.append(
            "the result in `my_outcome` was made by another run: read your run's own, "
            "my_outcome = run_result(run)."
        )
    elif isinstance(result, PipelineResult) and result.meter_id == meter_id:
        check.right.append(
            f"its result is readable here: MAE {result.mae_kwh:.3f} kWh for {meter_id}"
        )
    elif run.state == "Completed" and run.parameters.get("meter_id") == meter_id:
        check.missing.append(
            "its result is not readable here"
            + (f" ({outcome.note})" if outcome.note else "")
            + ": call run_result(run) after the run completed."
        )


# --------------------------------------------------------------------------- lesson 06


def _cancelled_at(run: Any) -> Any:
    """When the server cancelled ``run`` (None when it is not Cancelled)."""
    state = run.state
    if state is None or state.type.value not in ("CANCELLED", "CANCELLING"):
        return None
    return state.timestamp


def _runs_by_id(ids: list[Any]) -> dict[str, Any]:
    """The server's flow runs with these ids, by id as text (those it has)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    if not ids:
        return {}
    with _client() as c:
        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    return {str(r.id): r for r in runs}


def _not_cancelled_here(
    listed: list[Any], expected: int, pool: str, queue: str, call: str
) -> str | None:
    """Lesson 06: what is wrong with the runs of ``cancelled`` on the server, if anything."""
    if len(listed) < expected:
        return (
            f"{expected - len(listed)} run(s) of `cancelled` are not on this server: "
            f"cancelled = {call}."
        )
    others = sorted(
        {r.name for r in listed if (r.work_pool_name, r.work_queue_name) != (pool, queue)}
    )
    if others:
        return (
            f"{', '.join(map(repr, others))} in `cancelled` are not runs of {pool}/{queue}: "
            f"cancelled = {call}."
        )
    not_cancelled = [r for r in listed if _cancelled_at(r) is None]
    if not_cancelled:
        names = ", ".join(repr(r.name) for r in not_cancelled[:3])
        state = not_cancelled[0].state.name if not_cancelled[0].state else "unknown"
        return (
            f"{names} in `cancelled` {'is' if len(not_cancelled) == 1 else 'are'} still "
            f"{state} on the server: queue_runs() only lists runs; cancel_late_runs() "
            f"cancels them, cancelled = {call}."
        )
    return None


def check_no_late_runs(
    cancelled: Any,
    queue: str = "energy_usage",
    pool: str = "energy-pool",
    run_name: str = "forgotten",
) -> CheckResult:
    """Lesson 06: ``cancelled`` is the table ``cancel_late_runs()`` returned, and it did its job.

    Judges that table: it has the columns of ``cancel_late_runs()``, it lists
    ``run_name`` (the run the lesson left Late), every run in it is now
    Cancelled on the server (by id), and no run that was Late at the time of
    the call is still Late in ``queue``. Runs the schedule adds later do not count.
    """
    import uuid

    import pandas as pd

    from energy_flows.orchestration import queue_runs
    from energy_flows.orchestration.common import now_utc

    check = CheckResult(f"Exercise: no Late runs left in {queue!r}")
    call = f"cancel_late_runs({queue!r}, pool={pool!r})"
    if cancelled is None:
        return _nothing_yet(check, "cancelled", call)
    if not isinstance(cancelled, pd.DataFrame):
        return _wrong_type(
            check, "cancelled", cancelled, f"keep the table it returns: cancelled = {call}."
        )
    # cancel_late_runs() returns its runs in the same table as queue_runs().
    late_table = queue_runs(queue, pool, states=["Late"])
    if list(cancelled.columns) != list(late_table.columns):
        check.missing.append(
            f"`cancelled` has the columns {', '.join(map(str, cancelled.columns)) or 'none'}, "
            f"not those of the table cancel_late_runs() returns: cancelled = {call}."
        )
        return check

    ids = [uuid.UUID(str(i)) for i in cancelled["id"]]
    late_ids = [uuid.UUID(str(i)) for i in late_table["id"]]
    found = _runs_by_id(ids + late_ids)
    late_now = [found[str(i)] for i in late_ids if str(i) in found]
    listed = [found[str(i)] for i in ids if str(i) in found]
    problem = _not_cancelled_here(listed, len(ids), pool, queue, call)
    if problem:
        check.missing.append(problem)
        return check
    if listed:
        check.right.append("the runs in `cancelled` are Cancelled on the server")

    if any(r.name == run_name for r in listed):
        check.right.append(f"among them {run_name!r}, the run the lesson left Late")
    elif not any(r.name == run_name for r in late_now):
        check.missing.append(
            f"`cancelled` {'is empty' if not listed else f'does not list {run_name!r}'}: "
            f"{run_name!r} had been cancelled before your call (by the solution cell, or a "
            f"call of yours). Run the cell of section 3 again (it leaves a new {run_name!r} "
            "Late), then this cell."
        )

    # What was Late when the call cancelled its runs must be gone; the schedule's
    # runs that turned Late afterwards are not the call's to cancel.
    moment = min((_cancelled_at(r) for r in listed), default=None) or now_utc()
    left = [r for r in late_now if r.state is not None and r.state.timestamp <= moment]
    if left:
        names = ", ".join(repr(r.name) for r in left[:3])
        check.missing.append(
            f"{queue!r} still holds runs that were Late before your call ({names}"
            f"{' ...' if len(left) > 3 else ''}): cancel them, cancelled = {call}."
        )
    else:
        later = len(late_now)
        check.right.append(
            f"{queue!r} had no Late run left after your call"
            + (f" (the schedule has added {later} since)" if later else "")
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


# --------------------------------------------------------------------------- lesson 07


def check_dask_batch(
    scaled: Any,
    meters: int = 6,
    dask_workers: int = 3,
    flow_name: str = "energy-usage-batch",
) -> CheckResult:
    """Lesson 07: ``scaled`` is the table ``energy_usage_batch`` returned from a run on Dask.

    Judges that table and the flow run it came from (by the id in its
    ``attrs``): it has one row per meter, ``meters`` of them; its tasks ran on
    the package's Dask runner with ``dask_workers`` worker processes (not on
    Prefect's default threads); and that flow run is Completed on the server.
    """
    import pandas as pd

    check = CheckResult(f"Exercise: {meters} meters on a Dask cluster of {dask_workers} workers")
    call = (
        f"energy_usage_batch.with_options(task_runner=dask_runner(n_workers={dask_workers}))"
        f"(n_meters={meters}, days=60)"
    )
    if scaled is None:
        return _nothing_yet(check, "scaled", call)
    if not isinstance(scaled, pd.DataFrame) or "task_runner" not in scaled.attrs:
        return _wrong_type(
            check, "scaled", scaled, f"keep the table the batch flow returns: scaled = {call}."
        )
    if len(scaled) == meters:
        check.right.append(f"one row per meter, {meters} meters")
    else:
        check.missing.append(
            f"`scaled` has {len(scaled)} row(s), one per meter: ask for {meters} meters "
            f"(n_meters={meters})."
        )
    runner = scaled.attrs.get("task_runner")
    workers = scaled.attrs.get("dask_workers")
    if runner != "ClassroomDaskRunner":
        check.missing.append(
            f"its tasks ran on {runner}, Prefect's default threads in the kernel's process: "
            f"give the flow the Dask runner, scaled = {call}."
        )
    elif workers != dask_workers:
        check.missing.append(
            f"its tasks ran on Dask, but on {workers} worker process(es): "
            f"dask_runner(n_workers={dask_workers})."
        )
    else:
        check.right.append(f"its tasks ran on a Dask cluster of {workers} worker processes")
    run = _flow_run(scaled.attrs.get("flow_run_id") or "")
    if run is None:
        check.missing.append(
            "the flow run of `scaled` is not on this server: run the cell again with the "
            "server of this lesson running."
        )
    elif _flow_name(run.flow_id) != flow_name:
        check.missing.append(f"`scaled` comes from a run of {_flow_name(run.flow_id)!r}: {call}.")
    elif run.state is None or run.state.name != "Completed":
        state = run.state.name if run.state else "no state"
        check.missing.append(f"its flow run {run.name!r} is {state}, not Completed.")
    else:
        check.right.append(f"its flow run {run.name!r} is Completed on the server")
    return check
