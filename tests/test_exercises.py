"""The lessons' self-checks, driven against a real server with right and wrong answers.

Each check must say "done" for the answer the lesson's solution gives, and for a
wrong answer say precisely what is missing. Names are unique to these tests, so
the session server's other objects never interfere.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from energy_flows.exercises import (
    CheckResult,
    check_cron_deployment,
    check_deployment_run,
    check_flaky_run,
    check_late_run,
    check_no_late_runs,
)

POOL = "exercise-pool"
QUEUE = "exercise-queue"


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


def test_unanswered_exercises_say_what_to_write():
    for check, variable in (
        (check_flaky_run, "my_result"),
        (check_cron_deployment, "nightly"),
        (check_late_run, "my_run"),
        (check_deployment_run, "my_outcome"),
    ):
        result = check(None)
        assert not result.ok
        assert f"`{variable}` is still None" in result.missing[0]


def test_wrong_types_are_named():
    assert "is a str" in check_flaky_run("home-042").missing[0]
    assert "is a int" in check_late_run(3).missing[0]
    assert "is a dict" in check_deployment_run({}).missing[0]


@pytest.fixture(scope="module")
def exercise_pool(prefect_server):
    from energy_flows.orchestration import ensure_work_pool, ensure_work_queue

    ensure_work_pool(POOL)
    ensure_work_queue(QUEUE, pool=POOL)
    return POOL


@pytest.mark.server
def test_check_flaky_run_right_and_wrong(prefect_server):
    from energy_flows.flows import energy_usage_pipeline

    steady = energy_usage_pipeline(meter_id="home-042", days=60, flaky=0.0)
    wrong = check_flaky_run(steady)
    assert not wrong.ok
    assert any("flaky=0.0" in m and "flaky=0.5" in m for m in wrong.missing), wrong

    other = check_flaky_run(steady, meter_id="home-043")
    assert "the exercise asks for 'home-043'" in other.missing[0]

    flaky = energy_usage_pipeline(meter_id="home-042", days=60, flaky=0.5)
    right = check_flaky_run(flaky)
    assert right.ok, right
    assert any("ingest needed 2 attempts" in r for r in right.right), right


@pytest.mark.server
def test_check_cron_deployment_right_and_wrong(exercise_pool):
    from energy_flows.orchestration import deploy_energy_flow

    name = "exercise-nightly"
    missing = check_cron_deployment("anything", name=name)
    assert "has no deployment 'exercise-nightly'" in missing.missing[0]

    info = deploy_energy_flow(name, interval=3600, work_pool=POOL, work_queue=QUEUE)
    wrong = check_cron_deployment(info, name=name, queue=QUEUE)
    assert any("not cron '0 2 * * *'" in m for m in wrong.missing), wrong

    info = deploy_energy_flow(name, cron="0 2 * * *", work_pool=POOL, work_queue=QUEUE)
    right = check_cron_deployment(info, name=name, queue=QUEUE)
    assert right.ok, right
    wrong_queue = check_cron_deployment(info, name=name, queue="energy_usage")
    assert any("not 'energy_usage'" in m for m in wrong_queue.missing)


@pytest.mark.server
def test_check_late_run_right_and_wrong(exercise_pool):
    from energy_flows.orchestration import deploy_energy_flow, trigger, wait_for

    deploy_energy_flow("exercise-late", work_pool=POOL, work_queue=QUEUE)
    future = trigger(
        "exercise-late",
        flow_run_name="exercise-future-run",
        scheduled_time=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    not_yet = check_late_run(future, deployment="exercise-late")
    assert any("still Scheduled" in m for m in not_yet.missing), not_yet

    other_deployment = check_late_run(future, deployment="energy-usage")
    assert any("not 'energy-usage'" in m for m in other_deployment.missing)

    past = trigger(
        "exercise-late",
        flow_run_name="exercise-late-run",
        scheduled_time=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
    )
    wait_for(QUEUE, until="late", pool=POOL, timeout=60, progress=False)
    deadline = time.monotonic() + 30
    right = check_late_run(past, deployment="exercise-late")
    while not right.ok and time.monotonic() < deadline:
        time.sleep(1)
        right = check_late_run(past, deployment="exercise-late")
    assert right.ok, right


@pytest.mark.server
def test_check_no_late_runs_right_and_wrong(exercise_pool):
    from energy_flows.orchestration import (
        cancel_late_runs,
        deploy_energy_flow,
        queue_runs,
        trigger,
        wait_for,
    )

    queue = "exercise-late-queue"
    deploy_energy_flow("exercise-late-2", work_pool=POOL, work_queue=queue)
    trigger(
        "exercise-late-2",
        flow_run_name="exercise-late-2-run",
        scheduled_time=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
    )
    wait_for(queue, until="late", pool=POOL, timeout=60, progress=False)
    wrong = check_no_late_runs(queue, POOL)
    assert not wrong.ok
    assert "still holds Late runs" in wrong.missing[0] and "cancel_late_runs" in wrong.missing[0]

    cancel_late_runs(queue, POOL)
    assert queue_runs(queue, POOL, states=["Late"]).empty
    right = check_no_late_runs(queue, POOL)
    assert right.ok, right


@pytest.mark.server
def test_check_deployment_run_right_and_wrong(prefect_server, worker_factory):
    from energy_flows.orchestration import (
        deploy_energy_flow,
        ensure_work_pool,
        run_result,
        trigger,
        wait_for,
    )

    pool, queue = "exercise-run-pool", "exercise-run-queue"
    ensure_work_pool(pool)
    deploy_energy_flow("exercise-run", parameters={"days": 60}, work_pool=pool, work_queue=queue)
    worker_factory(pool=pool, queues=[queue])
    run = trigger(
        "exercise-run", parameters={"meter_id": "home-007"}, flow_run_name="exercise-run-1"
    )
    done = wait_for(run, timeout=120, queue=queue, pool=pool, progress=False)
    assert done.state == "Completed", done
    outcome = run_result(run)

    right = check_deployment_run(outcome, deployment="exercise-run")
    assert right.ok, right
    assert any("MAE" in r for r in right.right)

    wrong_meter = check_deployment_run(outcome, meter_id="home-008", deployment="exercise-run")
    assert any("meter_id is 'home-007'" in m for m in wrong_meter.missing), wrong_meter

    wrong_deployment = check_deployment_run(outcome, deployment="energy-usage")
    assert any(
        "did not come from the deployment 'energy-usage'" in m for m in wrong_deployment.missing
    )
