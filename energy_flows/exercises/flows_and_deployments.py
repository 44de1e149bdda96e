"""Lessons 02 and 03: the learner's own flow, its deployments (Python API and prefect.yaml)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energy_flows.exercises.answers import (
    FLOW_NAME,
    MY_FLOW_NAME,
    flow_name_of,
    found_on_server,
    state_name,
    task_runs_of,
)
from energy_flows.exercises.verdict import CheckResult, not_answered
from energy_flows.vocabulary import DEFAULT_POOL, DEFAULT_QUEUE

__all__ = ["check_cron_deployment", "check_flaky_run", "check_yaml_deployment"]


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
    run = found_on_server(
        check,
        answer,
        "flow run",
        variable="my_state",
        expected="the State your flow returns with return_state=True",
        flow_name=flow_name,
    )
    if run is None:
        return check
    flow = flow_name_of(run.flow_id)
    if flow == FLOW_NAME:
        check.missing.append(
            f"that is a run of the course's flow {FLOW_NAME!r}; the exercise is about your own "
            f"flow, {flow_name!r}, from my_energy_flow.py."
        )
        return check
    if not check.expect(
        flow == flow_name,
        f"that run is of the flow {flow!r}; the file of the exercise names its flow "
        f"{flow_name!r} (@flow(name=...)).",
        f"the server has your flow's run {run.name!r}",
    ):
        return check
    params = run.parameters or {}
    check.expect(
        params.get("meter_id", meter_id) == meter_id,
        f"the run was for meter {params.get('meter_id')!r}; the exercise asks for {meter_id!r}.",
    )
    ran_flaky = params.get("flaky")
    check.expect(
        ran_flaky is not None and float(ran_flaky) == flaky,
        f"the run's flaky was {ran_flaky!r}: with flaky={flaky} the meter service fails "
        "now and then, which is what retries are for.",
    )
    state = state_name(run)
    attempts = max((int(t.run_count or 1) for t in task_runs_of(run.id)), default=0)
    check.expect(
        state == "Completed",
        f"the server says the run is {state}"
        + (f" ({run.state.message})" if run.state is not None and run.state.message else "")
        + ": a task that fails fails the flow, unless Prefect retries it (and a retry succeeds).",
        "it is Completed",
    )
    _judge_attempts(check, state, attempts)
    return check


def _judge_attempts(check: CheckResult, state: str, attempts: int) -> None:
    """Lesson 02: did a task of the run need a second attempt (a retry)?"""
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


@dataclass(frozen=True)
class _Wanted:
    """The deployment an exercise asks for: ``schedule`` is ("cron", text) or ("interval", s)."""

    name: str
    schedule: tuple[str, Any]
    pool: str
    queue: str
    flow_name: str


def _judge_deployment(check: CheckResult, answer: Any, variable: str, wanted: _Wanted) -> Any:
    """Find the deployment ``answer`` names and judge its flow, name, schedule, pool and queue."""
    deployment = found_on_server(check, answer, "deployment", variable=variable)
    if deployment is None:
        return None
    flow = flow_name_of(deployment.flow_id)
    full = f"{flow}/{deployment.name}"
    whose = "the course's flow" if flow == FLOW_NAME else f"the flow {flow!r}"
    check.expect(
        flow == wanted.flow_name,
        f"{full} deploys {whose}; the exercise deploys your own, {wanted.flow_name!r}.",
    )
    check.expect(
        deployment.name == wanted.name,
        f"the deployment is called {deployment.name!r}; the exercise asks for {wanted.name!r}.",
    )
    if not check.missing:
        check.right.append(f"the server holds your deployment {full}")
    text, problem = _schedule_problem(deployment, *wanted.schedule)
    check.expect(problem is None, problem or "", f"its schedule is {text}")
    check.expect(
        deployment.work_pool_name == wanted.pool,
        f"its runs go to the work pool {deployment.work_pool_name!r}, not {wanted.pool!r}.",
    )
    if deployment.work_queue_name != wanted.queue:
        default = " (Prefect's default queue, used when none is named)"
        check.missing.append(
            f"its runs go to the queue {deployment.work_queue_name!r}"
            f"{default if deployment.work_queue_name == 'default' else ''}; the exercise asks "
            f"for {wanted.queue!r}."
        )
    elif deployment.work_pool_name == wanted.pool:
        check.right.append(f"its runs go to {wanted.pool} / {wanted.queue}")
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
        return not_answered(check, "nightly", "what .deploy() returns")
    _judge_deployment(
        check, answer, "nightly", _Wanted(name, ("cron", cron), pool, queue, flow_name)
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
        return not_answered(check, "my_yaml_deployment", "the deployment's 'flow/deployment' name")
    entry = _yaml_entry(check, Path(prefect_file), name)
    wanted = _Wanted(name, ("interval", interval), pool, queue, flow_name)
    deployment = _judge_deployment(check, answer, "my_yaml_deployment", wanted)
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
