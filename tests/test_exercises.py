"""The lessons' self-checks, driven against a real server with right and wrong answers.

For every exercise: solved the Prefect way (Prefect's own API or CLI, as the
lesson's solution does) the check accepts it; the package's objects are
accepted too; a wrong answer is rejected with its message, a hint that never
holds the solution's code. The learner's own flow is the one lesson 02's
solution writes, read from the notebook. Names are unique to these tests, so
the session server's other objects never interfere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import nbformat
import pytest

from energy_flows.exercises import (
    CheckResult,
    check_await_prediction,
    check_burst_workers,
    check_concurrency_prediction,
    check_cron_deployment,
    check_deployment_run,
    check_flaky_run,
    check_kill_prediction,
    check_late_run,
    check_no_late_runs,
    check_retry_prediction,
    check_work_queue,
    check_yaml_deployment,
)
from tools.lesson_solutions import solutions

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
POOL = "exercise-pool"
QUEUE = "exercise-queue"

#: Every solution line of every lesson: a check's hint must hold none of them.
SOLUTION_LINES = {
    line.strip()
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    for item in solutions(nbformat.read(path, as_version=4))
    for line in item.code.splitlines()
    if len(line.strip()) > 12 and not line.strip().startswith(("#", "from ", "import "))
}


def _past() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


def _says(result: CheckResult, *fragments: str) -> bool:
    """Whether one missing line contains every fragment."""
    return any(all(f in line for f in fragments) for line in result.missing)


def _rejected(result: CheckResult, *fragments: str) -> None:
    """Not done, says the fragments in one line, and gives no line of any solution away."""
    assert not result.ok, result
    assert _says(result, *fragments), result
    for line in result.missing:
        leaked = [s for s in SOLUTION_LINES if s in line]
        assert not leaked, f"the hint gives the answer away: {line!r} holds {leaked}"


def _prefect(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Prefect's own command, as a learner's `!prefect ...` runs it (this process's server)."""
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        env={**os.environ, "PREFECT_CLI_PROMPT": "false", "COLUMNS": "120"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_check_result_reads_well_as_text_and_html():
    done = CheckResult("Exercise: x", right=["a is right"])
    assert done.ok and bool(done)
    assert repr(done) == "✓ Exercise: x: done, well done!\n  ✓ a is right"
    not_yet = CheckResult("Exercise: x", right=["a is right"], missing=["b <is> missing"])
    assert not not_yet
    assert repr(not_yet).splitlines() == [
        "✗ Exercise: x: not yet.",
        "  ✓ a is right",
        "  ✗ b <is> missing",
    ]
    assert "b &lt;is&gt; missing" in not_yet._repr_html_()


def test_expect_notes_the_right_part_or_the_hint_and_says_which():
    check = CheckResult("Exercise: x")
    assert check.expect(True, "never shown", "a is right") is True
    assert check.expect(True, "never shown") is True  # nothing to say when right
    assert check.expect(False, "b is missing: do c", "never shown") is False
    assert (check.right, check.missing) == (["a is right"], ["b is missing: do c"])


def test_unanswered_exercises_give_a_hint_not_the_answer():
    for check, variable in (
        (check_flaky_run, "my_state"),
        (check_cron_deployment, "nightly"),
        (check_yaml_deployment, "my_yaml_deployment"),
        (check_work_queue, "my_queue"),
        (check_late_run, "my_run"),
        (check_deployment_run, "my_run"),
        (check_no_late_runs, "cancelled"),
        (check_burst_workers, "my_counts"),
        (check_retry_prediction, "my_prediction"),
    ):
        result = check(None)
        assert len(result.missing) == 1, result
        _rejected(result, f"`{variable}` is still None: replace None with your answer")


@pytest.mark.parametrize(
    ("check", "right"),
    [
        (check_retry_prediction, "b"),
        (check_await_prediction, "b"),
        (check_concurrency_prediction, "c"),
        (check_kill_prediction, "b"),
    ],
)
def test_predictions_explain_the_choice_made(check: Any, right: str):
    accepted = check(f" {right.upper()} ")
    assert accepted.ok and accepted.right[0].startswith(f"({right}) Right:"), accepted
    explanations = set()
    for wrong in sorted({"a", "b", "c", "d"} - {right}):
        result = check(wrong)
        _rejected(result, f"({wrong}) ")
        assert "Right" not in repr(result) and f"({right})" not in repr(result), result
        explanations.add(result.missing[0])
    assert len(explanations) == 3, "each wrong choice has its own explanation"
    _rejected(check("e"), "choose one of")


# --------------------------------------------------------------------------- lesson 02


@pytest.fixture(scope="module")
def my_flow_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The flow file lesson 02's solution writes (without its %%writefile line)."""
    lesson = nbformat.read(NOTEBOOKS / "02_energy_flow.ipynb", as_version=4)
    [written] = [s for s in solutions(lesson) if s.code.startswith("%%writefile")]
    folder = tmp_path_factory.mktemp("learner")
    path = folder / "my_energy_flow.py"
    path.write_text(written.code.split("\n", 1)[1])
    return path


def _load(path: Path, function: str = "my_energy_flow") -> Any:
    from prefect.flows import load_flow_from_entrypoint

    return load_flow_from_entrypoint(f"{path}:{function}")


@pytest.mark.server
def test_check_flaky_run_accepts_the_learners_flow_run_however_given(prefect_server, my_flow_file):
    my_flow = _load(my_flow_file)
    state = my_flow(flaky=0.5, return_state=True)  # the lesson's solution
    right = check_flaky_run(state)
    assert right.ok, right
    assert any("a task needed 2 attempts" in r for r in right.right), right
    run_id = state.state_details.flow_run_id
    assert check_flaky_run(run_id).ok  # the run's id, as a UUID
    assert check_flaky_run(str(run_id)).ok  # ... or as text
    assert check_flaky_run(my_flow).ok  # the flow itself: its latest run
    assert check_flaky_run(state.result()).ok  # what the flow returned: its latest run too


@pytest.mark.server
def test_check_flaky_run_rejects_wrong_runs_with_a_hint(prefect_server, my_flow_file):
    from energy_flows.flows import energy_usage_pipeline

    my_flow = _load(my_flow_file)
    steady = my_flow(flaky=0.0, return_state=True)
    _rejected(check_flaky_run(steady), "flaky was 0.0")

    course = energy_usage_pipeline(meter_id="home-042", days=60, flaky=0.5, return_state=True)
    _rejected(check_flaky_run(course), "the course's flow")

    # The blanks filled in wrong: no retries, so the flaky meter fails the run.
    no_retries = my_flow_file.with_name("no_retries.py")
    no_retries.write_text(my_flow_file.read_text().replace("retries=2", "retries=0"))
    failed = _load(no_retries)(flaky=0.5, return_state=True)
    assert failed.is_failed()
    _rejected(check_flaky_run(failed), "Failed", "unless Prefect retries it")
    _rejected(check_flaky_run(failed), "no task was tried a second time")

    _rejected(check_flaky_run(str(uuid.uuid4())), "no flow run with the id")
    # Something without a run's id stands for the flow's latest run; with no run, it names none.
    _rejected(check_flaky_run(3.5, flow_name="never-ran"), "names no flow run")


# --------------------------------------------------------------------------- lesson 03


@pytest.fixture(scope="module")
def exercise_pool(prefect_server):
    from energy_flows.orchestration import ensure_work_pool, ensure_work_queue

    ensure_work_pool(POOL)
    ensure_work_queue(QUEUE, pool=POOL)
    return POOL


def _deploy_my_flow(my_flow_file: Path, name: str, **deploy: Any) -> Any:
    """Prefect's own way, as lesson 03's solution (sync here: no event loop in a test)."""
    from prefect import flow

    remote = flow.from_source(str(my_flow_file.parent), f"{my_flow_file.name}:my_energy_flow")
    return remote.deploy(
        name=name,
        work_pool_name=POOL,
        print_next_steps=False,
        ignore_warnings=True,
        **deploy,
    )


@pytest.mark.server
def test_check_cron_deployment_accepts_prefects_deploy(exercise_pool, my_flow_file):
    from energy_flows.orchestration import deploy

    name, cron = "ex-nightly", "0 2 * * *"

    def check(answer: Any) -> CheckResult:
        return check_cron_deployment(answer, name=name, queue=QUEUE, pool=POOL)

    deployment_id = _deploy_my_flow(my_flow_file, name, work_queue_name=QUEUE, cron=cron)
    right = check(deployment_id)  # what .deploy() returns: the id
    assert right.ok, right
    assert right.right[0] == f"the server holds your deployment my-energy-flow/{name}"
    assert check(str(deployment_id)).ok
    assert check(f"my-energy-flow/{name}").ok
    info = deploy(_load(my_flow_file), name, cron=cron, work_pool=POOL, work_queue=QUEUE)
    assert check(info).ok  # the package's DeploymentInfo

    # No queue named: Prefect's default queue.
    _deploy_my_flow(my_flow_file, "ex-default-queue", cron=cron)
    default = check_cron_deployment("my-energy-flow/ex-default-queue", name="ex-default-queue",
                                    queue=QUEUE, pool=POOL)  # fmt: skip
    _rejected(default, "'default'", "Prefect's default queue", f"asks for {QUEUE!r}")

    _deploy_my_flow(my_flow_file, "ex-afternoon", work_queue_name=QUEUE, cron="0 14 * * *")
    afternoon = check_cron_deployment("my-energy-flow/ex-afternoon", name="ex-afternoon",
                                      queue=QUEUE, pool=POOL)  # fmt: skip
    _rejected(afternoon, "cron '0 14 * * *'", "asks for the cron '0 2 * * *'")

    from energy_flows.orchestration import deploy_energy_flow

    course = deploy_energy_flow(name, cron=cron, work_pool=POOL, work_queue=QUEUE)
    _rejected(check(course), "the course's flow")
    _rejected(check(f"my-energy-flow/{name}-typo"), "no deployment")

    from energy_flows import DeploymentBuilder

    _rejected(check(DeploymentBuilder(name=name)), "the form itself")


@pytest.mark.server
def test_check_yaml_deployment_reads_the_file_and_the_server(exercise_pool, my_flow_file):
    folder = my_flow_file.parent
    entry = f"""
  - name: ex-hourly
    entrypoint: {my_flow_file.name}:my_energy_flow
    work_pool:
      name: {POOL}
      work_queue_name: {QUEUE}
    schedules:
      - interval: 1800
"""
    (folder / "prefect.yaml").write_text(f"name: exercise\n\ndeployments:{entry}")

    def check(answer: Any) -> CheckResult:
        return check_yaml_deployment(
            answer, name="ex-hourly", queue=QUEUE, pool=POOL, prefect_file=folder / "prefect.yaml"
        )

    _rejected(check("my-energy-flow/ex-hourly"), "no deployment")  # not deployed yet
    done = _prefect("deploy", "--name", "ex-hourly", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    right = check("my-energy-flow/ex-hourly")
    assert right.ok, right
    assert "prefect.yaml declares 'ex-hourly'" in right.right

    (folder / "prefect.yaml").write_text(
        f"deployments:{entry.replace(f'name: {POOL}', 'name: ___')}"
    )
    _rejected(check("my-energy-flow/ex-hourly"), "still has blanks")
    (folder / "prefect.yaml").write_text(f"deployments:{entry.replace('ex-hourly', 'ex-other')}")
    _rejected(check("my-energy-flow/ex-hourly"), "declares no deployment 'ex-hourly'")
    (folder / "prefect.yaml").write_text(
        f"deployments:{entry.replace('ex-hourly', 'ex-slow').replace('1800', '3600')}"
    )
    assert _prefect("deploy", "--name", "ex-slow", cwd=folder).returncode == 0
    slow = check_yaml_deployment("my-energy-flow/ex-slow", name="ex-slow", queue=QUEUE,
                                 pool=POOL, prefect_file=folder / "prefect.yaml")  # fmt: skip
    _rejected(slow, "asks for an interval of 1800 seconds")


# --------------------------------------------------------------------------- lesson 04


@pytest.mark.server
def test_check_work_queue_accepts_a_queue_made_with_prefects_command(exercise_pool):
    from prefect import get_client

    from energy_flows.orchestration import ensure_work_queue

    def check(answer: Any, name: str = "ex-nightly-queue") -> CheckResult:
        return check_work_queue(answer, name=name, pool=POOL)

    made = _prefect("work-queue", "create", "ex-nightly-queue", "--pool", POOL, "--limit", "1")
    assert made.returncode == 0, made.stdout + made.stderr
    assert check("ex-nightly-queue").ok
    with get_client(sync_client=True) as client:
        queue = client.read_work_queue_by_name("ex-nightly-queue", work_pool_name=POOL)
    assert check(queue).ok  # Prefect's WorkQueue
    assert check(str(queue.id)).ok
    assert check(ensure_work_queue("ex-nightly-queue", pool=POOL)).ok  # the package's QueueInfo

    assert _prefect("work-queue", "create", "ex-unlimited", "--pool", POOL).returncode == 0
    _rejected(check("ex-unlimited", name="ex-unlimited"), "no limit", "at most 1 run")
    _rejected(check("ex-missing", name="ex-missing"), "has no queue 'ex-missing'")
    _rejected(check("ex-unlimited"), "that is the queue 'ex-unlimited'")


@pytest.mark.server
def test_check_late_run_accepts_prefects_run_deployment(exercise_pool):
    from prefect.deployments import run_deployment

    from energy_flows.lessons import wait_until_late
    from energy_flows.orchestration import deploy_energy_flow, trigger

    deployment = "ex-late"
    deploy_energy_flow(deployment, work_pool=POOL, work_queue=QUEUE)

    def check(run: Any) -> CheckResult:
        return check_late_run(run, deployment=deployment, run_name="ex-late-run")

    run = run_deployment(f"energy-usage-pipeline/{deployment}", flow_run_name="ex-late-run",
                         timeout=0)  # fmt: skip
    soon = check(run)
    if not soon.ok:  # asked a moment ago: still Scheduled
        _rejected(soon, "still Scheduled", "Run this cell again")
    wait_until_late([run])
    assert check(run).ok, check(run)  # Prefect's FlowRun
    assert check(run.id).ok and check(str(run.id)).ok
    assert check("ex-late-run").ok  # its name

    other = trigger(deployment, flow_run_name="waiting-run-x", scheduled_time=_past())
    wait_until_late([other])
    _rejected(check(other), "named 'waiting-run-x'", "named 'ex-late-run'")
    future = trigger(
        deployment,
        flow_run_name="ex-late-run",
        scheduled_time=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    _rejected(check(future), "still Scheduled")
    _rejected(check(dataclasses.replace(other, id=str(uuid.uuid4()))), "no flow run with the id")


# --------------------------------------------------------------------------- lesson 05


@pytest.mark.server
def test_check_deployment_run_accepts_the_run_run_deployment_waited_for(
    prefect_server, worker_factory
):
    from prefect.deployments import run_deployment

    from energy_flows.flows import energy_usage_pipeline
    from energy_flows.orchestration import deploy_energy_flow, ensure_work_pool, run_result

    pool, queue, deployment = "exercise-run-pool", "exercise-run-queue", "exercise-run"
    ensure_work_pool(pool)
    deploy_energy_flow(deployment, parameters={"days": 60}, work_pool=pool, work_queue=queue)
    worker_factory(pool=pool, queues=[queue])

    def check(answer: Any, meter_id: str = "home-007") -> CheckResult:
        return check_deployment_run(answer, meter_id=meter_id, deployment=deployment)

    my_run = run_deployment(
        f"energy-usage-pipeline/{deployment}",
        parameters={"meter_id": "home-007"},
        flow_run_name="ex-home-007",
        timeout=120,
        poll_interval=1,
    )
    right = check(my_run)  # Prefect's FlowRun
    assert right.ok, right
    assert right.right[1] == "a worker ran it to Completed", right
    assert right.right[2].startswith("its result is readable here: MAE"), right
    outcome = run_result(my_run.id)
    assert check(outcome).ok  # the package's RunResult
    assert check(outcome.name).ok  # its name (the flow renamed the run when it started)

    local = energy_usage_pipeline(meter_id="home-007", days=60)
    _rejected(check(local.flow_run_id), "did not come from the deployment")
    _rejected(check(dataclasses.replace(outcome, result=local)), "made by another run")
    _rejected(check(my_run, meter_id="home-008"), "meter_id is 'home-007'", "'home-008'")
    unfinished = run_deployment(f"energy-usage-pipeline/{deployment}", timeout=0)
    if check(unfinished).missing:  # it may already have finished on a fast machine
        assert _says(check(unfinished), "not Completed") or _says(check(unfinished), "meter_id")


# --------------------------------------------------------------------------- lesson 06


@pytest.mark.server
def test_check_no_late_runs_accepts_runs_cancelled_with_prefects_client(exercise_pool):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, WorkQueueFilter
    from prefect.states import Cancelled

    from energy_flows.lessons import wait_until_late
    from energy_flows.orchestration import cancel_late_runs, deploy_energy_flow, trigger

    queue, deployment = "exercise-late-queue", "exercise-late-2"
    deploy_energy_flow(deployment, work_pool=POOL, work_queue=queue)

    def leave_two_behind() -> list[Any]:
        runs = [
            trigger(deployment, flow_run_name=f"forgotten-{i}", scheduled_time=_past())
            for i in (1, 2)
        ]
        wait_until_late(runs)
        return runs

    def check(answer: Any) -> CheckResult:
        return check_no_late_runs(answer, queue=queue, pool=POOL)

    def cancel_with_prefect() -> list[Any]:  # lesson 06's solution
        with get_client(sync_client=True) as client:
            late = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state={"name": {"any_": ["Late"]}}),
                work_queue_filter=WorkQueueFilter(name={"any_": [queue]}),
            )
            for run in late:
                client.set_flow_run_state(run.id, Cancelled())
        return late

    leave_two_behind()
    right = check(cancel_with_prefect())
    assert right.ok, right
    assert right.right[1] == "among them 'forgotten-2', the run the lesson left Late", right

    _rejected(check(cancel_with_prefect()), "is empty")  # nothing left to cancel

    runs = leave_two_behind()
    _rejected(check([runs[1]]), "'forgotten-2'", "Late on the server, not Cancelled")
    table = cancel_late_runs(queue, POOL)  # the package's helper, its table
    assert check(table).ok, check(table)

    runs = leave_two_behind()
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(uuid.UUID(runs[1].id), Cancelled())
    _rejected(check([runs[1].id]), "still holds runs that were Late", "'forgotten-1'")
    cancel_late_runs(queue, POOL)


# --------------------------------------------------------------------------- lesson 07


@pytest.mark.server
def test_check_burst_workers_compares_counts_with_the_servers(prefect_server, worker_factory):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, WorkQueueFilter

    from energy_flows.orchestration import deploy_energy_flow, ensure_work_pool, trigger, wait_for

    pool, queue = "exercise-burst-pool", "exercise-burst"
    ensure_work_pool(pool)
    deploy_energy_flow("exercise-burst", parameters={"days": 60}, work_pool=pool, work_queue=queue)
    worker_factory(pool=pool, queues=[queue], name="ex-agent-1")
    runs = [trigger("exercise-burst", flow_run_name=f"ex-burst-{i}") for i in (1, 2)]
    wait_for(runs, timeout=120, progress=False)

    with get_client(sync_client=True) as client:  # lesson 07's solution
        burst_runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state={"type": {"any_": ["COMPLETED"]}}),
            work_queue_filter=WorkQueueFilter(name={"any_": [queue]}),
        )
    counts = Counter(run.labels["prefect.worker.name"] for run in burst_runs)

    def check(answer: Any) -> CheckResult:
        return check_burst_workers(answer, queue=queue, pool=pool)

    assert counts == {"ex-agent-1": 2}
    assert check(counts).ok, check(counts)
    import pandas as pd

    assert check(pd.Series(counts)).ok
    _rejected(check({"ex-agent-1": 1}), "add up to 1", "2 Completed")
    _rejected(check({"ex-agent-1": 1, "someone": 1}), "differ from the server's")
    _rejected(check(["ex-agent-1"]), "is a list")
