"""Lessons 04 to 06: queues, runs that turn Late, a worker's run, Late runs cancelled."""

from __future__ import annotations

from typing import Any

from energy_flows.exercises.answers import (
    Unanswerable,
    deployment_name_of,
    find_on_server,
    found_on_server,
    server_client,
    state_name,
)
from energy_flows.exercises.verdict import CheckResult, not_answered
from energy_flows.vocabulary import DEFAULT_POOL, DEFAULT_QUEUE

__all__ = ["check_deployment_run", "check_late_run", "check_no_late_runs", "check_work_queue"]


def check_work_queue(
    answer: Any, name: str = "nightly", pool: str = DEFAULT_POOL, limit: int = 1
) -> CheckResult:
    """Lesson 04: the queue ``name`` in ``pool``, at most ``limit`` runs at a time.

    ``answer``: the queue's name, Prefect's ``WorkQueue`` or the package's
    ``QueueInfo``, or its id.
    """
    check = CheckResult(f"Exercise: the queue {name!r} in {pool!r}, {limit} run at a time")
    queue = found_on_server(
        check, answer, "work queue", variable="my_queue", expected="the queue's name", pool=pool
    )
    if queue is None:
        return check
    if queue.name != name:
        check.missing.append(f"that is the queue {queue.name!r}; the exercise asks for {name!r}.")
        return check
    check.right.append(f"the pool {pool!r} has the queue {name!r}")
    if queue.concurrency_limit != limit:
        now = (
            "no limit"
            if queue.concurrency_limit is None
            else f"a limit of {queue.concurrency_limit}"
        )
        check.missing.append(f"it has {now}; the exercise asks for at most {limit} run at a time.")
    else:
        check.right.append(f"at most {limit} of its runs at a time")
    if queue.is_paused:
        check.missing.append("it is paused: workers take none of its runs.")
    return check


def check_late_run(
    answer: Any, deployment: str = "energy-usage", run_name: str = "my-late-run"
) -> CheckResult:
    """Lesson 04: a new run ``run_name`` of ``deployment`` that nobody took, so it turned Late.

    ``answer``: the ``FlowRun`` ``run_deployment(..., timeout=0)`` returned,
    the run's id or name, or the package's ``RunInfo``.
    """
    from energy_flows.settings import LATE_AFTER_SECONDS

    check = CheckResult("Exercise: a run that turned Late")
    run = found_on_server(
        check, answer, "flow run", variable="my_run", expected="the run you asked for, or its name"
    )
    if run is None:
        return check
    from_deployment = deployment_name_of(run)
    check.expect(
        from_deployment == deployment,
        f"the run {run.name!r} came from {from_deployment or 'no deployment'!r}; the "
        f"exercise asks for a run of the deployment {deployment!r}.",
    )
    check.expect(
        run.name == run_name,
        f"the run is named {run.name!r}; the exercise asks for a run named {run_name!r}.",
    )
    if not check.missing:
        check.right.append(f"the run {run_name!r} comes from the deployment {deployment!r}")
    state = state_name(run)
    if state == "Late":
        check.right.append("it is Late: its start time passed and no worker took it")
    elif state == "Scheduled":
        check.missing.append(
            f"it is still Scheduled: a run turns Late {LATE_AFTER_SECONDS} s after its start "
            "time when no worker took it (15 s with Prefect's defaults). Run this cell again "
            "in a few seconds."
        )
    else:
        check.missing.append(
            f"it is {state}: a worker took it, so it never stayed Late. Ask for another run "
            "while no worker polls the queue."
        )
    return check


def check_deployment_run(
    answer: Any, meter_id: str = "home-007", deployment: str = "energy-usage"
) -> CheckResult:
    """Lesson 05: a worker's run of ``deployment`` for ``meter_id``, Completed, result readable.

    ``answer``: the ``FlowRun`` ``run_deployment(...)`` returned once the run
    finished, its id or name, or the package's ``RunInfo`` / ``RunResult``.
    The result is read back from the result storage (as ``run_result()``
    does); a ``RunResult`` given must hold that run's own result.
    """
    from energy_flows.forecasting import PipelineResult
    from energy_flows.orchestration import run_result

    check = CheckResult(f"Exercise: a worker's forecast for {meter_id}")
    run = found_on_server(
        check,
        answer,
        "flow run",
        variable="my_run",
        expected="the finished run, as run_deployment returns it",
    )
    if run is None:
        return check
    from_deployment = deployment_name_of(run)
    check.expect(
        from_deployment == deployment,
        f"the run {run.name!r} did not come from the deployment {deployment!r} "
        f"({from_deployment or 'it was called in this notebook, not by a worker'}).",
        f"the run {run.name!r} came from the deployment {deployment!r}",
    )
    ran_for = (run.parameters or {}).get("meter_id")
    check.expect(
        ran_for == meter_id,
        f"the run's meter_id is {ran_for or 'the default'!r}; "
        f"the exercise asks for {meter_id!r} (a parameter of the run).",
    )
    state = state_name(run)
    if not check.expect(
        state == "Completed",
        f"the run is {state}, not Completed: wait until it has finished (run_deployment "
        "waits while its timeout lasts; timeout=0 returns at once).",
    ):
        return check
    if from_deployment == deployment:
        check.right.append("a worker ran it to Completed")
    given = getattr(answer, "result", None) if hasattr(answer, "artifacts") else None
    if isinstance(given, PipelineResult) and given.flow_run_id not in ("", str(run.id)):
        check.missing.append("the result in `my_run` was made by another run.")
        return check
    result = run_result(run.id).result
    if isinstance(result, PipelineResult) and result.meter_id == meter_id:
        check.right.append(f"its result is readable here: MAE {result.mae_kwh:.3f} kWh")
    elif not check.missing:
        check.missing.append("its result cannot be read back here (was it saved?).")
    return check


def _listed_runs(answer: Any) -> list[Any]:
    """The runs a learner says they cancelled: a table's rows, a list, or one run."""
    import pandas as pd

    if isinstance(answer, pd.DataFrame):
        if "id" not in answer.columns:
            raise Unanswerable(
                "`cancelled` is a table without an id column: keep the runs you cancelled "
                "(the table cancel_late_runs() returns, or your list of runs)."
            )
        return list(answer["id"])
    if isinstance(answer, list | tuple | set):
        return list(answer)
    return [answer]


def check_no_late_runs(
    answer: Any,
    queue: str = DEFAULT_QUEUE,
    pool: str = DEFAULT_POOL,
    run_name: str = "forgotten-2",
) -> CheckResult:
    """Lesson 06: the Late runs of ``queue`` cancelled, ``run_name`` among them.

    ``answer``: the runs the learner cancelled: a list of ``FlowRun`` objects
    or ids (Prefect's client or CLI), or the table ``cancel_late_runs()``
    returned. Each must be Cancelled on the server, ``run_name`` (the run the
    lesson left Late) among them, and no run that was Late when they were
    cancelled may still be Late in ``queue``. Runs the schedule adds later do
    not count.
    """
    from energy_flows.orchestration.common import now_utc
    from energy_flows.orchestration.runs import read_queue_runs

    check = CheckResult(f"Exercise: no Late runs left in {queue!r}")
    if answer is None:
        return not_answered(check, "cancelled", "the runs you cancelled")
    try:
        listed = [
            find_on_server(item, "flow run", variable="cancelled") for item in _listed_runs(answer)
        ]
    except Unanswerable as exc:
        check.missing.append(str(exc))
        return check
    others = sorted({r.name for r in listed if r.work_queue_name != queue})
    if others:
        check.missing.append(
            f"{', '.join(map(repr, others))} in `cancelled` are not runs of the queue {queue!r}."
        )
        return check
    not_cancelled = [r for r in listed if r.state is None or r.state.type.value != "CANCELLED"]
    if not_cancelled:
        names = ", ".join(repr(r.name) for r in not_cancelled[:3])
        check.missing.append(
            f"{names} in `cancelled` {'is' if len(not_cancelled) == 1 else 'are'} "
            f"{state_name(not_cancelled[0])} on the server, not Cancelled: listing runs does "
            "not cancel them."
        )
        return check
    if listed:
        check.right.append(f"the {len(listed)} run(s) in `cancelled` are Cancelled on the server")
    if any(r.name == run_name for r in listed):
        check.right.append(f"among them {run_name!r}, the run the lesson left Late")
    else:
        check.missing.append(
            f"`cancelled` {'is empty' if not listed else f'does not list {run_name!r}'}: the "
            f"lesson left {run_name!r} Late; if it was cancelled before, run the cell that "
            "leaves it behind again, then yours."
        )
    # What was Late when the runs were cancelled must be gone; the schedule's later runs are not.
    moments = [r.state.timestamp for r in listed if r.state is not None]
    moment = min(moments, default=None) or now_utc()
    with server_client() as c:
        late_now = read_queue_runs(c, queue, pool, ["Late"], limit=500)
    left = [r for r in late_now if r.state is not None and r.state.timestamp <= moment]
    if left:
        names = ", ".join(repr(r.name) for r in left[:3])
        check.missing.append(
            f"{queue!r} still holds runs that were Late before yours were cancelled ({names}"
            f"{' ...' if len(left) > 3 else ''}): cancel every Late run of the queue."
        )
    elif listed:
        later = len(late_now)
        check.right.append(
            f"{queue!r} had no Late run left after that"
            + (f" (the schedule has added {later} since)" if later else "")
        )
    return check
