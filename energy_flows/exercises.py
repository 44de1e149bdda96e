"""Self-checks for the lessons' exercises.

Each ``check_...()`` judges the answer it is given, and finds on the server
the very thing that answer stands for. A learner may answer with Prefect's
own objects or with the package's: a flow run as the ``State`` a flow returned
with ``return_state=True``, a ``FlowRun`` (``run_deployment``), a run id (text
or UUID), a run's name, or the package's ``RunInfo`` / ``RunResult``; a
deployment as the id ``.deploy()`` returned, its ``"flow/deployment"`` name or
Prefect's deployment object; a work queue by name or object. One function,
:func:`find_on_server`, knows all those shapes.

A check never settles for "something of that name exists" when the answer
names one thing, and never gives the answer away: what is missing comes with
a hint (what the server holds, what the task asked for), not with the call
to type. It returns a :class:`CheckResult`, shown as a short list in a
notebook and truthy when the exercise is done::

    my_state = my_energy_flow(flaky=0.5, return_state=True)
    check_flaky_run(my_state)

"Predict the outcome" questions take the learner's choice (``"b"``) and
explain, for the choice made, why it is right or what it misses.

A check never changes anything on the server.
"""

from __future__ import annotations

import datetime as dt
import html
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from energy_flows.vocabulary import BAD_COLOUR, DEFAULT_POOL, DEFAULT_QUEUE, OK_COLOUR

#: The course's own flow.
FLOW_NAME = "energy-usage-pipeline"
#: The flow the learner writes in lesson 02 (``my_energy_flow.py``).
MY_FLOW_NAME = "my-energy-flow"

__all__ = [
    "CheckResult",
    "Unanswerable",
    "check_await_prediction",
    "check_burst_workers",
    "check_concurrency_prediction",
    "check_cron_deployment",
    "check_dask_batch",
    "check_deployment_run",
    "check_flaky_run",
    "check_kill_prediction",
    "check_late_run",
    "check_no_late_runs",
    "check_retry_prediction",
    "check_work_queue",
    "check_yaml_deployment",
    "find_on_server",
]


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


def _nothing_yet(check: CheckResult, variable: str, hint: str) -> CheckResult:
    check.missing.append(
        f"`{variable}` is still None: replace None with your answer ({hint}) and run the cell again."
    )
    return check


# --------------------------------------------------------------------------- finding answers


class Unanswerable(Exception):
    """An answer that names nothing this server holds; the message says what to give instead."""


def _client() -> Any:
    from energy_flows.orchestration.common import client

    return client()


def _as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        return None


def _run_id_of(answer: Any) -> uuid.UUID | str | None:
    """The flow-run id (or a name to look up) an answer carries, from any shape it may have."""
    import pandas as pd

    state_details = getattr(answer, "state_details", None)
    if state_details is not None:  # a Prefect State (return_state=True, flow_run.state)
        return getattr(state_details, "flow_run_id", None)
    if isinstance(answer, pd.DataFrame):  # a table a flow returned (the batch)
        return _as_uuid(answer.attrs.get("flow_run_id") or "")
    if hasattr(answer, "flow_run_id"):  # the energy flow's PipelineResult
        return _as_uuid(answer.flow_run_id or "")
    if hasattr(answer, "id"):  # Prefect's FlowRun, the package's RunInfo and RunResult
        return _as_uuid(answer.id)
    if isinstance(answer, uuid.UUID | str):
        return _as_uuid(answer) or (str(answer).strip() or None)
    return None


def _latest_run_of(c: Any, flow_name: str) -> Any:
    """The run of ``flow_name`` that started last (scheduled runs that never started aside)."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    runs = c.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
        flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(is_null_=False)),
        sort=FlowRunSort.START_TIME_DESC,
        limit=1,
    )
    return runs[0] if runs else None


def _find_flow_run(c: Any, answer: Any, variable: str, flow_name: str | None) -> Any:
    from prefect import Flow
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.exceptions import ObjectNotFound

    if isinstance(answer, Flow):  # the flow itself: judge its latest run
        run = _latest_run_of(c, answer.name)
        if run is None:
            raise Unanswerable(f"the flow {answer.name!r} has no run on this server yet: run it.")
        return run
    key = _run_id_of(answer)
    if key is None:
        if flow_name is not None:  # what a flow returned, without its run's id
            run = _latest_run_of(c, flow_name)
            if run is not None:
                return run
        raise Unanswerable(
            f"`{variable}` is a {type(answer).__name__}, which names no flow run: give the run "
            "itself (the State a flow returns with return_state=True, a FlowRun, or the run's id)."
        )
    if isinstance(key, uuid.UUID):
        try:
            return c.read_flow_run(key)
        except ObjectNotFound:
            raise Unanswerable(
                f"this server has no flow run with the id in `{variable}` (was it made against "
                "another server?): run the lesson's first cell, then your cell again."
            ) from None
    runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[key])))
    if not runs and flow_name is not None and key == flow_name:
        run = _latest_run_of(c, flow_name)
        if run is not None:
            return run
    if not runs:
        raise Unanswerable(f"this server has no flow run named {key!r}.")
    return max(runs, key=lambda r: r.created or dt.datetime.min.replace(tzinfo=dt.UTC))


def _find_deployment(c: Any, answer: Any, variable: str) -> Any:
    from energy_flows.errors import OrchestrationError
    from energy_flows.orchestration.deployments import resolve_deployment

    if type(answer).__name__ == "DeploymentBuilder":
        raise Unanswerable(
            f"`{variable}` is the form itself: keep what deploying returned (the deployment)."
        )
    if isinstance(answer, list) and len(answer) == 1:  # prefect.deploy() returns a list of ids
        answer = answer[0]
    if not isinstance(answer, str | uuid.UUID) and not hasattr(answer, "id"):
        raise Unanswerable(
            f"`{variable}` is a {type(answer).__name__}, which names no deployment: give the "
            "deployment's id (what .deploy() returns), its 'flow/deployment' name, or the object."
        )
    try:
        return resolve_deployment(c, answer)
    except OrchestrationError as exc:
        raise Unanswerable(str(exc)) from None


def _find_work_queue(c: Any, answer: Any, variable: str, pool: str) -> Any:
    from prefect.exceptions import ObjectNotFound

    key = getattr(answer, "name", answer)  # Prefect's WorkQueue, the package's QueueInfo
    if isinstance(key, uuid.UUID) or (isinstance(key, str) and _as_uuid(key)):
        try:
            return c.read_work_queue(_as_uuid(key))
        except ObjectNotFound:
            raise Unanswerable(
                f"this server has no work queue with the id in `{variable}`."
            ) from None
    if not isinstance(key, str) or not key.strip():
        raise Unanswerable(
            f"`{variable}` is a {type(answer).__name__}: give the queue's name (text) or the "
            "queue object."
        )
    queue_pool = getattr(answer, "work_pool_name", None) or getattr(answer, "pool", None) or pool
    try:
        return c.read_work_queue_by_name(key.strip(), work_pool_name=queue_pool)
    except ObjectNotFound:
        names = sorted(q.name for q in c.read_work_queues(work_pool_name=queue_pool))
        raise Unanswerable(
            f"the pool {queue_pool!r} has no queue {key.strip()!r} (its queues: "
            f"{', '.join(names) or 'none'})."
        ) from None


def find_on_server(
    answer: Any,
    kind: str,
    *,
    variable: str = "the answer",
    flow_name: str | None = None,
    pool: str = DEFAULT_POOL,
) -> Any:
    """The object on the server that a learner's ``answer`` stands for, as Prefect returns it.

    ``kind`` is ``"flow run"`` (a Prefect ``FlowRun``), ``"deployment"``
    (a ``DeploymentResponse``) or ``"work queue"`` (a ``WorkQueue`` of
    ``pool``). Every shape a learner may hold is accepted: Prefect's objects
    (``State``, ``FlowRun``, deployment and queue objects, the ``Flow``
    itself for its latest run), the package's (``RunInfo``, ``RunResult``,
    ``DeploymentInfo``, ``QueueInfo``, a flow's result that remembers its
    run), ids as text or UUID, and names. ``flow_name``: for a flow run, the
    flow whose latest run an answer without a run id (a returned value, the
    flow's name) stands for.

    Raises :class:`Unanswerable` with the sentence to show when the answer
    names nothing on this server.
    """
    finders = {
        "flow run": lambda c: _find_flow_run(c, answer, variable, flow_name),
        "deployment": lambda c: _find_deployment(c, answer, variable),
        "work queue": lambda c: _find_work_queue(c, answer, variable, pool),
    }
    if kind not in finders:
        raise ValueError(f"kind is one of {', '.join(finders)}; got {kind!r}.")
    with _client() as c:
        return finders[kind](c)


def _flow_name(flow_id: Any) -> str:
    with _client() as c:
        return str(c.read_flow(flow_id).name)


def _state_name(run: Any) -> str:
    return run.state.name if run.state is not None else "unknown"


def _task_runs(flow_run_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with _client() as c:
        return list(
            c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        )


# --------------------------------------------------------------------------- predictions


def _judge_choice(
    check: CheckResult, choice: Any, variable: str, options: Mapping[str, tuple[bool, str]]
) -> CheckResult:
    """Judge a multiple-choice answer; ``options``: letter -> (right?, why, for that choice)."""
    letters = ", ".join(f'"{k}"' for k in options)
    if choice is None:
        return _nothing_yet(check, variable, f"one of {letters}")
    key = str(choice).strip().lower().strip("()").strip()
    if key not in options:
        check.missing.append(f"`{variable}` is {choice!r}: choose one of {letters}.")
        return check
    right, why = options[key]
    (check.right if right else check.missing).append(f"({key}) {why}")
    if not right:
        check.missing.append("Think again, choose another letter, and run the cell again.")
    return check


def check_retry_prediction(choice: Any) -> CheckResult:
    """Lesson 02: what a task with ``retries=2`` does when every attempt fails."""
    check = CheckResult("Predict: retries=2 and a source that always fails")
    return _judge_choice(
        check,
        choice,
        "my_prediction",
        {
            "a": (
                False,
                "Retries try the same call again; they cannot make a source that always fails "
                "answer. Every attempt meets the same error.",
            ),
            "b": (
                True,
                "Right: 1 attempt + 2 retries = 3 attempts, all fail, so the task ends Failed, "
                "and the flow with it (the run below shows it).",
            ),
            "c": (
                False,
                "Prefect does retry: retries=2 means up to 2 more attempts after the first one "
                "fails, whatever the error.",
            ),
            "d": (
                False,
                "retries=2 is a limit: after the first attempt and 2 retries, Prefect gives up.",
            ),
        },
    )


def check_await_prediction(choice: Any) -> CheckResult:
    """Lesson 03: what ``flow.from_source(...)`` gives in a notebook cell without ``await``."""
    check = CheckResult("Predict: flow.from_source(...) without await, in a notebook")
    return _judge_choice(
        check,
        choice,
        "my_prediction",
        {
            "a": (
                False,
                "In a plain script it would be the flow. But a notebook's kernel runs an event "
                "loop, and in one Prefect's from_source and deploy are asynchronous.",
            ),
            "b": (
                True,
                "Right: a coroutine, a call that has not run yet. Nothing happens until you "
                "`await` it; Python warns if it is never awaited.",
            ),
            "c": (
                False,
                "No error is raised: that is what makes it a trap. The call only seems to have "
                "done nothing.",
            ),
            "d": (
                False,
                "from_source only loads the flow; a deployment is made by .deploy() (or "
                "`prefect deploy`), and that too needs await in a notebook.",
            ),
        },
    )


def check_concurrency_prediction(choice: Any) -> CheckResult:
    """Lesson 05: two workers, a queue limited to 1 run at a time, three runs."""
    check = CheckResult("Predict: two workers, a queue with a concurrency limit of 1")
    return _judge_choice(
        check,
        choice,
        "my_prediction",
        {
            "a": (
                False,
                "Three at once would need the queue to allow three: its limit holds, whatever "
                "the number of workers.",
            ),
            "b": (
                False,
                "Two workers could run two runs, but the queue's limit counts runs, not workers: "
                "it hands out a second run only when the first has finished.",
            ),
            "c": (
                True,
                "Right: the queue's concurrency limit is 1, so one run at a time, one after the "
                "other, on whichever worker polls first.",
            ),
            "d": (
                False,
                "The limit slows the runs down; it does not stop them: each one runs in turn.",
            ),
        },
    )


def check_kill_prediction(choice: Any) -> CheckResult:
    """Lesson 06: what the server shows for the run of a plain worker killed with ``kill -9``."""
    check = CheckResult("Predict: kill -9 of a plain `prefect worker start` mid-run")
    return _judge_choice(
        check,
        choice,
        "my_prediction",
        {
            "a": (
                False,
                "Crashed needs someone to tell the server. A worker killed with -9 cannot, and "
                "Prefect has no watchdog of its own: only the course's workers are watched.",
            ),
            "b": (
                True,
                "Right: the run's own process is a separate process; it lives on, finishes the "
                "flow and reports Completed itself. Only if it dies too does the run stay Running.",
            ),
            "c": (
                False,
                "Nobody asked to cancel it: Cancelled only follows a cancellation.",
            ),
            "d": (
                False,
                "Late is for runs that never started; this one was already running.",
            ),
        },
    )


# --------------------------------------------------------------------------- lesson 02


def check_flaky_run(
    answer: Any,
    meter_id: str = "home-042",
    flaky: float = 0.5,
    flow_name: str = MY_FLOW_NAME,
) -> CheckResult:
    """Lesson 02: a run of the learner's own flow whose flaky source made a task retry.

    ``answer`` names the run: the ``State`` the flow returned with
    ``return_state=True``, a ``FlowRun`` or its id, the flow itself or what it
    returned (then its latest run). The check asks the server: whose flow,
    which parameters, the final state, and how many attempts its tasks took.
    """
    check = CheckResult(f"Exercise: your flow, rescued by a retry ({meter_id})")
    if answer is None:
        return _nothing_yet(check, "my_state", "the State your flow returns with return_state=True")
    try:
        run = find_on_server(answer, "flow run", variable="my_state", flow_name=flow_name)
    except Unanswerable as exc:
        check.missing.append(str(exc))
        return check
    flow = _flow_name(run.flow_id)
    if flow == FLOW_NAME:
        check.missing.append(
            f"that is a run of the course's flow {FLOW_NAME!r}; the exercise is about your own "
            f"flow, {flow_name!r}, from my_energy_flow.py."
        )
        return check
    if flow != flow_name:
        check.missing.append(
            f"that run is of the flow {flow!r}; the file of the exercise names its flow "
            f"{flow_name!r} (@flow(name=...))."
        )
        return check
    check.right.append(f"the server has your flow's run {run.name!r}")
    params = run.parameters or {}
    if params.get("meter_id", meter_id) != meter_id:
        check.missing.append(
            f"the run was for meter {params.get('meter_id')!r}; the exercise asks for {meter_id!r}."
        )
    ran_flaky = params.get("flaky")
    if ran_flaky is None or float(ran_flaky) != flaky:
        check.missing.append(
            f"the run's flaky was {ran_flaky!r}: with flaky={flaky} the meter service fails "
            "now and then, which is what retries are for."
        )
    state = _state_name(run)
    attempts = max((int(t.run_count or 1) for t in _task_runs(run.id)), default=0)
    if state == "Completed":
        check.right.append("it is Completed")
    else:
        check.missing.append(
            f"the server says the run is {state}"
            + (f" ({run.state.message})" if run.state is not None and run.state.message else "")
            + ": a task that fails fails the flow, unless Prefect retries it (and a retry succeeds)."
        )
    if attempts > 1:
        check.right.append(f"a task needed {attempts} attempts: Prefect retried it")
    elif state == "Completed" and not check.missing:
        check.missing.append(
            "every task succeeded at its first attempt, so there was no retry to see: does "
            "ingest pass flaky and the attempt number on to read_meter?"
        )
    elif state != "Completed" and attempts <= 1:
        check.missing.append(
            "no task was tried a second time: does @task give ingest retries and a delay?"
        )
    return check


# --------------------------------------------------------------------------- lesson 03


def _schedule_problem(deployment: Any, kind: str, value: Any) -> tuple[str, str | None]:
    """(the schedule in words, what is wrong with it or None) for a cron or interval wanted."""
    from energy_flows.orchestration import schedule_text

    text = schedule_text(deployment.schedules)
    schedules = [s.schedule for s in deployment.schedules or [] if getattr(s, "active", True)]
    if kind == "cron":
        if any(getattr(s, "cron", None) == value for s in schedules):
            return text, None
        return text, f"its schedule is {text}; the exercise asks for the cron {value!r}."
    wanted = dt.timedelta(seconds=value)
    if any(getattr(s, "interval", None) == wanted for s in schedules):
        return text, None
    return text, f"its schedule is {text}; the exercise asks for an interval of {value} seconds."


def _judge_deployment(
    check: CheckResult,
    answer: Any,
    variable: str,
    *,
    name: str,
    schedule: tuple[str, Any],
    queue: str,
    pool: str,
    flow_name: str,
) -> Any:
    """Find the deployment ``answer`` names and judge its flow, name, schedule, pool and queue."""
    try:
        deployment = find_on_server(answer, "deployment", variable=variable)
    except Unanswerable as exc:
        check.missing.append(str(exc))
        return None
    flow = _flow_name(deployment.flow_id)
    full = f"{flow}/{deployment.name}"
    if flow != flow_name:
        whose = "the course's flow" if flow == FLOW_NAME else f"the flow {flow!r}"
        check.missing.append(
            f"{full} deploys {whose}; the exercise deploys your own, {flow_name!r}."
        )
    if deployment.name != name:
        check.missing.append(
            f"the deployment is called {deployment.name!r}; the exercise asks for {name!r}."
        )
    if not check.missing:
        check.right.append(f"the server holds your deployment {full}")
    text, problem = _schedule_problem(deployment, *schedule)
    if problem:
        check.missing.append(problem)
    else:
        check.right.append(f"its schedule is {text}")
    if deployment.work_pool_name != pool:
        check.missing.append(
            f"its runs go to the work pool {deployment.work_pool_name!r}, not {pool!r}."
        )
    if deployment.work_queue_name != queue:
        default = " (Prefect's default queue, used when none is named)"
        check.missing.append(
            f"its runs go to the queue {deployment.work_queue_name!r}"
            f"{default if deployment.work_queue_name == 'default' else ''}; the exercise asks "
            f"for {queue!r}."
        )
    elif deployment.work_pool_name == pool:
        check.right.append(f"its runs go to {pool} / {queue}")
    if deployment.paused:
        check.missing.append("it is paused: its schedule creates no runs.")
    return deployment


def check_cron_deployment(
    answer: Any,
    name: str = "my-nightly",
    cron: str = "0 2 * * *",
    queue: str = DEFAULT_QUEUE,
    pool: str = DEFAULT_POOL,
    flow_name: str = MY_FLOW_NAME,
) -> CheckResult:
    """Lesson 03: the learner's flow deployed as ``name`` on the cron ``cron``, into ``queue``.

    ``answer``: what ``.deploy()`` returned (the deployment's id), the
    ``"flow/deployment"`` name, Prefect's deployment object or the package's
    ``DeploymentInfo``. The check reads that deployment from the server.
    """
    check = CheckResult(f"Exercise: your flow, deployed as {name!r} on a cron schedule")
    if answer is None:
        return _nothing_yet(check, "nightly", "what .deploy() returns")
    _judge_deployment(
        check,
        answer,
        "nightly",
        name=name,
        schedule=("cron", cron),
        queue=queue,
        pool=pool,
        flow_name=flow_name,
    )
    return check


def check_yaml_deployment(
    answer: Any,
    name: str = "my-hourly",
    interval: int = 1800,
    queue: str = DEFAULT_QUEUE,
    pool: str = DEFAULT_POOL,
    flow_name: str = MY_FLOW_NAME,
    prefect_file: str | Path = "prefect.yaml",
) -> CheckResult:
    """Lesson 03: ``name`` declared in ``prefect.yaml`` and deployed with ``prefect deploy``.

    Reads ``prefect_file`` (next to the notebook): the entry named ``name``,
    its blanks filled in. Then judges the deployment ``answer`` names on the
    server: the learner's flow, every ``interval`` seconds, into ``pool`` /
    ``queue``.
    """
    check = CheckResult(f"Exercise: {name!r} from prefect.yaml, with `prefect deploy`")
    if answer is None:
        return _nothing_yet(check, "my_yaml_deployment", "the deployment's 'flow/deployment' name")
    entry = _yaml_entry(check, Path(prefect_file), name)
    deployment = _judge_deployment(
        check,
        answer,
        "my_yaml_deployment",
        name=name,
        schedule=("interval", interval),
        queue=queue,
        pool=pool,
        flow_name=flow_name,
    )
    if entry is not None and deployment is not None:
        entrypoint = str(entry.get("entrypoint", ""))
        if deployment.entrypoint and entrypoint and deployment.entrypoint != entrypoint:
            check.missing.append(
                f"the server's {name!r} loads {deployment.entrypoint}, but prefect.yaml says "
                f"{entrypoint}: deploy the file again with Prefect's CLI."
            )
    return check


def _yaml_entry(check: CheckResult, path: Path, name: str) -> dict[str, Any] | None:
    """The deployment ``name`` of a prefect.yaml, or None (with what is wrong, in ``check``)."""
    import yaml

    try:
        text = path.read_text()
    except OSError:
        check.missing.append(f"there is no {path.name} next to this notebook: write it first.")
        return None
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        check.missing.append(f"{path.name} is not valid YAML ({str(exc).splitlines()[0]}).")
        return None
    entries = [d for d in document.get("deployments") or [] if isinstance(d, dict)]
    entry = next((d for d in entries if d.get("name") == name), None)
    if entry is None:
        names = ", ".join(repr(d.get("name")) for d in entries) or "none"
        check.missing.append(f"{path.name} declares no deployment {name!r} (it declares {names}).")
        return None
    if "___" in yaml.safe_dump(entry):
        check.missing.append(f"the entry {name!r} in {path.name} still has blanks (___) to fill.")
        return None
    check.right.append(f"{path.name} declares {name!r}")
    return entry


# --------------------------------------------------------------------------- lesson 04


def check_work_queue(
    answer: Any, name: str = "nightly", pool: str = DEFAULT_POOL, limit: int = 1
) -> CheckResult:
    """Lesson 04: the queue ``name`` in ``pool``, at most ``limit`` runs at a time.

    ``answer``: the queue's name, Prefect's ``WorkQueue`` or the package's
    ``QueueInfo``, or its id.
    """
    check = CheckResult(f"Exercise: the queue {name!r} in {pool!r}, {limit} run at a time")
    if answer is None:
        return _nothing_yet(check, "my_queue", "the queue's name")
    try:
        queue = find_on_server(answer, "work queue", variable="my_queue", pool=pool)
    except Unanswerable as exc:
        check.missing.append(str(exc))
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
    if answer is None:
        return _nothing_yet(check, "my_run", "the run you asked for, or its name")
    try:
        run = find_on_server(answer, "flow run", variable="my_run")
    except Unanswerable as exc:
        check.missing.append(str(exc))
        return check
    with _client() as c:
        from_deployment = c.read_deployment(run.deployment_id).name if run.deployment_id else None
    if from_deployment != deployment:
        check.missing.append(
            f"the run {run.name!r} came from {from_deployment or 'no deployment'!r}; the "
            f"exercise asks for a run of the deployment {deployment!r}."
        )
    if run.name != run_name:
        check.missing.append(
            f"the run is named {run.name!r}; the exercise asks for a run named {run_name!r}."
        )
    if not check.missing:
        check.right.append(f"the run {run_name!r} comes from the deployment {deployment!r}")
    state = _state_name(run)
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


# --------------------------------------------------------------------------- lesson 05


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
    if answer is None:
        return _nothing_yet(check, "my_run", "the finished run, as run_deployment returns it")
    try:
        run = find_on_server(answer, "flow run", variable="my_run")
    except Unanswerable as exc:
        check.missing.append(str(exc))
        return check
    with _client() as c:
        from_deployment = c.read_deployment(run.deployment_id).name if run.deployment_id else None
    if from_deployment != deployment:
        check.missing.append(
            f"the run {run.name!r} did not come from the deployment {deployment!r} "
            f"({from_deployment or 'it was called in this notebook, not by a worker'})."
        )
    else:
        check.right.append(f"the run {run.name!r} came from the deployment {deployment!r}")
    if (run.parameters or {}).get("meter_id") != meter_id:
        check.missing.append(
            f"the run's meter_id is {(run.parameters or {}).get('meter_id', 'the default')!r}; "
            f"the exercise asks for {meter_id!r} (a parameter of the run)."
        )
    state = _state_name(run)
    if state != "Completed":
        check.missing.append(
            f"the run is {state}, not Completed: wait until it has finished (run_deployment "
            "waits while its timeout lasts; timeout=0 returns at once)."
        )
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


# --------------------------------------------------------------------------- lesson 06


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
        return _nothing_yet(check, "cancelled", "the runs you cancelled")
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
            f"{_state_name(not_cancelled[0])} on the server, not Cancelled: listing runs does "
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
    with _client() as c:
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


# --------------------------------------------------------------------------- lesson 07


def check_dask_batch(
    scaled: Any, meters: int = 6, dask_workers: int = 3, flow_name: str = "energy-usage-batch"
) -> CheckResult:
    """Lesson 07: ``scaled`` is the table ``energy_usage_batch`` returned from a run on Dask.

    Judges that table and the flow run it came from (by the id in its
    ``attrs``): one row per meter, ``meters`` of them; its tasks ran on a Dask
    cluster of ``dask_workers`` worker processes (the package's
    ``dask_runner`` or prefect-dask's own ``DaskTaskRunner``), not on
    Prefect's default threads; and its flow run is Completed on the server.
    """
    import pandas as pd

    check = CheckResult(f"Exercise: {meters} meters on a Dask cluster of {dask_workers} workers")
    if scaled is None:
        return _nothing_yet(check, "scaled", "the table the batch flow returns")
    if not isinstance(scaled, pd.DataFrame) or "task_runner" not in scaled.attrs:
        check.missing.append(
            f"`scaled` is a {type(scaled).__name__}; keep the table the batch flow returns."
        )
        return check
    if len(scaled) == meters:
        check.right.append(f"one row per meter, {meters} meters")
    else:
        check.missing.append(f"`scaled` has {len(scaled)} row(s), one per meter: ask for {meters}.")
    runner = str(scaled.attrs.get("task_runner"))
    processes = [
        p for p in scaled.attrs.get("task_processes", []) if p != scaled.attrs.get("flow_process")
    ]
    workers = scaled.attrs.get("dask_workers") or len(processes)
    if "Dask" not in runner:
        check.missing.append(
            f"its tasks ran on {runner}, Prefect's default threads inside this kernel's process: "
            "give the flow a Dask task runner (with_options)."
        )
    elif workers != dask_workers:
        check.missing.append(
            f"its tasks ran on Dask, on {workers} worker process(es); the exercise asks for "
            f"{dask_workers}."
        )
    else:
        check.right.append(f"its tasks ran on a Dask cluster of {workers} worker processes")
    try:
        run = find_on_server(scaled, "flow run", variable="scaled")
    except Unanswerable as exc:
        check.missing.append(str(exc))
        return check
    if _flow_name(run.flow_id) != flow_name:
        check.missing.append(f"`scaled` comes from a run of {_flow_name(run.flow_id)!r}.")
    elif _state_name(run) != "Completed":
        check.missing.append(f"its flow run {run.name!r} is {_state_name(run)}, not Completed.")
    else:
        check.right.append(f"its flow run {run.name!r} is Completed on the server")
    return check


def check_burst_workers(answer: Any, queue: str = "burst", pool: str = DEFAULT_POOL) -> CheckResult:
    """Lesson 07: how many Completed runs of ``queue`` each worker ran, as the learner counted.

    ``answer``: a mapping worker name -> count (a dict, a ``Counter``, a
    pandas Series, or a one-column table indexed by worker). The server's
    count comes from the label ``prefect.worker.name`` that a worker puts on
    every run it takes.
    """
    import pandas as pd

    from energy_flows.orchestration.runs import read_queue_runs

    check = CheckResult(f"Exercise: who ran the runs of {queue!r}")
    if answer is None:
        return _nothing_yet(check, "my_counts", "worker name -> number of runs")
    if isinstance(answer, pd.DataFrame) and answer.shape[1] == 1:
        answer = answer.iloc[:, 0]
    if isinstance(answer, pd.Series):
        answer = answer.to_dict()
    if not isinstance(answer, Mapping):
        check.missing.append(
            f"`my_counts` is a {type(answer).__name__}: give worker name -> number of runs "
            "(a dict, or a pandas Series)."
        )
        return check
    with _client() as c:
        runs = read_queue_runs(c, queue, pool, ["Completed"], limit=500)
    truth: dict[str, int] = {}
    for run in runs:
        worker = (run.labels or {}).get("prefect.worker.name", "unknown")
        truth[str(worker)] = truth.get(str(worker), 0) + 1
    given = {str(k): int(v) for k, v in answer.items()}
    total = sum(truth.values())
    if sum(given.values()) != total:
        check.missing.append(
            f"your counts add up to {sum(given.values())}; the queue {queue!r} has {total} "
            "Completed run(s): count only Completed runs of that queue."
        )
    wrong = sorted(w for w in set(given) | set(truth) if given.get(w, 0) != truth.get(w, 0))
    if wrong and not check.missing:
        check.missing.append(
            f"the numbers for {', '.join(map(repr, wrong))} differ from the server's: each run "
            "says which worker took it in its labels."
        )
    if not check.missing:
        check.right.append(
            "the same as the server's: "
            + ", ".join(f"{w} ran {n}" for w, n in sorted(truth.items()))
        )
    return check
