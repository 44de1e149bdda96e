"""The lessons' self-checks, driven against a real server with right and wrong answers.

Each check must judge the answer it is given, not whatever the server holds:
in a notebook, Run All executes the solution cell, so the server already has
the solution's deployment, runs and cancellations when a learner fills in the
exercise. Every test therefore runs the solution first, then checks None, wrong
answers and the right one. Names are unique to these tests, so the session
server's other objects never interfere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

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


def _past() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


def _says(result: CheckResult, *fragments: str) -> bool:
    """Whether one missing line contains every fragment."""
    return any(all(f in line for f in fragments) for line in result.missing)


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
        (check_no_late_runs, "cancelled"),
    ):
        result = check(None)
        assert not result.ok
        assert result.missing == [result.missing[0]]
        assert f"`{variable}` is still None: replace None with" in result.missing[0]


def test_wrong_types_are_named_without_asking_the_server():
    assert "is a str" in check_flaky_run("home-042").missing[0]
    assert "is a str" in check_cron_deployment("energy-nightly").missing[0]
    assert "is a int" in check_late_run(3).missing[0]
    assert "is a dict" in check_deployment_run({}).missing[0]
    assert "is a int" in check_no_late_runs(3).missing[0]


@pytest.fixture(scope="module")
def exercise_pool(prefect_server):
    from energy_flows.orchestration import ensure_work_pool, ensure_work_queue

    ensure_work_pool(POOL)
    ensure_work_queue(QUEUE, pool=POOL)
    return POOL


# --------------------------------------------------------------------------- lesson 02


@pytest.mark.server
def test_check_flaky_run_judges_the_run_that_made_the_result(prefect_server):
    from energy_flows import run_core_pipeline, simulate_meter
    from energy_flows.flows import energy_usage_pipeline

    # The learner's first try, before Run All reached the solution: no flaky source.
    steady = energy_usage_pipeline(meter_id="home-042", days=60, flaky=0.0)
    # The solution cell: the latest run for home-042 is now a right one.
    solution = energy_usage_pipeline(meter_id="home-042", days=60, flaky=0.5)
    assert solution.flow_run_id and solution.flow_run_id != steady.flow_run_id
    right = check_flaky_run(solution)
    assert right.ok, right
    assert any("ingest needed 2 attempts" in r for r in right.right), right

    assert "`my_result` is still None" in check_flaky_run(None).missing[0]

    # The steady result is judged by its own run, not by the solution's later one.
    wrong = check_flaky_run(steady)
    assert not wrong.ok
    assert _says(wrong, "flaky=0.0", "flaky=0.5"), wrong
    assert _says(wrong, "no retry to see") is False  # one thing to do, said once

    # A result of the right meter that no flow run made.
    made_by_hand = run_core_pipeline(simulate_meter("home-042", days=60), "home-042")
    by_hand = check_flaky_run(made_by_hand)
    assert not by_hand.ok
    assert _says(by_hand, "not made by a run of the flow", "energy_usage_pipeline("), by_hand

    # A result whose run this server never saw.
    elsewhere = check_flaky_run(dataclasses.replace(solution, flow_run_id=str(uuid.uuid4())))
    assert _says(elsewhere, "no record of the run"), elsewhere

    assert check_flaky_run(solution).ok


# --------------------------------------------------------------------------- lesson 03


@pytest.mark.server
def test_check_cron_deployment_judges_the_object_it_is_given(exercise_pool):
    from energy_flows import DeploymentBuilder
    from energy_flows.orchestration import deploy_energy_flow

    name, cron = "exercise-nightly", "0 2 * * *"
    where = {"work_pool": POOL, "work_queue": QUEUE}

    def check(info):
        return check_cron_deployment(info, name=name, queue=QUEUE)

    solution = deploy_energy_flow(name, cron=cron, **where)
    right = check(solution)
    assert right.ok, right
    assert right.right[0] == f"the server holds your deployment energy-usage-pipeline/{name}"

    assert "`nightly` is still None" in check(None).missing[0]

    # The name as a string: the server has that deployment, but it is not an answer.
    as_text = check(name)
    assert not as_text.ok and "is a str" in as_text.missing[0], as_text

    # A typo in the name and the wrong hour: both said, though the solution exists.
    typo = check(deploy_energy_flow("exercise-nighty", cron="0 14 * * *", **where))
    assert not typo.ok
    assert _says(typo, "called 'exercise-nighty'", f"asks for {name!r}"), typo
    assert _says(typo, "cron '0 14 * * *'", "not cron '0 2 * * *'"), typo

    # The right name on the wrong queue.
    wrong_queue = check(deploy_energy_flow(name, cron=cron, work_pool=POOL, work_queue="other"))
    assert _says(wrong_queue, "go to 'other'", f"work_queue={QUEUE!r}"), wrong_queue

    # The form itself instead of what it deployed.
    builder = check(DeploymentBuilder(name=name, schedule="cron", cron=cron))
    assert _says(builder, "the form itself", "builder.deploy()"), builder

    # A made-up object with an id the server does not know.
    made_up = check(dataclasses.replace(solution, id=str(uuid.uuid4())))
    assert _says(made_up, "no deployment with the id"), made_up

    # An old object after the deployment was changed on the server.
    deploy_energy_flow(name, interval=3600, **where)
    stale = check(solution)
    assert _says(stale, "has changed since your call", "run your cell again"), stale

    again = deploy_energy_flow(name, cron=cron, **where)
    assert again.id == solution.id
    assert check(again).ok


# --------------------------------------------------------------------------- lesson 04


@pytest.mark.server
def test_check_late_run_judges_the_run_it_is_given(exercise_pool):
    from energy_flows.lessons import wait_until_late
    from energy_flows.orchestration import deploy_energy_flow, trigger

    deployment = "exercise-late"
    deploy_energy_flow(deployment, **{"work_pool": POOL, "work_queue": QUEUE})

    def check(run):
        return check_late_run(run, deployment=deployment)

    solution = trigger(deployment, flow_run_name="my-late-run", scheduled_time=_past())
    # Another run of the queue, Late too: not the one the exercise asks for.
    other = trigger(deployment, flow_run_name="waiting-run-1", scheduled_time=_past())
    late = wait_until_late([solution, other], timeout=60)
    right = check(solution)
    assert right.ok, right

    assert "`my_run` is still None" in check(None).missing[0]

    not_new = check(other)
    assert not not_new.ok
    assert _says(not_new, "'waiting-run-1'", "named 'my-late-run'"), not_new

    future = trigger(
        deployment,
        flow_run_name="my-late-run",
        scheduled_time=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    scheduled = check(future)
    assert _says(scheduled, "still Scheduled", "wait_until_late(my_run)"), scheduled

    table = check(late)
    assert _says(table, "is a table", "wait_until_late(my_run)"), table

    made_up = check(dataclasses.replace(solution, id=str(uuid.uuid4())))
    assert _says(made_up, "no run with the id"), made_up

    assert check(solution).ok


# --------------------------------------------------------------------------- lesson 05


@pytest.mark.server
def test_check_deployment_run_judges_the_outcome_it_is_given(prefect_server, worker_factory):
    from energy_flows.flows import energy_usage_pipeline
    from energy_flows.orchestration import (
        deploy_energy_flow,
        ensure_work_pool,
        run_result,
        trigger,
        wait_for,
    )

    pool, queue, deployment = "exercise-run-pool", "exercise-run-queue", "exercise-run"
    ensure_work_pool(pool)
    deploy_energy_flow(deployment, parameters={"days": 60}, work_pool=pool, work_queue=queue)
    worker_factory(pool=pool, queues=[queue])
    run7 = trigger(deployment, parameters={"meter_id": "home-007"}, flow_run_name="ex-home-007")
    done7 = wait_for(run7, timeout=120, queue=queue, pool=pool, progress=False)
    assert done7.state == "Completed", done7

    def check(outcome):
        return check_deployment_run(outcome, deployment=deployment)

    solution = run_result(run7)
    right = check(solution)
    assert right.ok, right
    assert right.right[1] == "a worker ran it to Completed", right
    assert right.right[2].startswith("its result is readable here: MAE"), right

    assert "`my_outcome` is still None" in check(None).missing[0]

    # The flow called here, in this process, instead of a worker's run of the deployment.
    local = energy_usage_pipeline(meter_id="home-007", days=60)
    here = check(run_result(local.flow_run_id))
    assert _says(here, "did not come from the deployment", f"trigger({deployment!r}"), here

    the_run = check(done7)
    assert _says(the_run, "the run itself", "run_result(run)"), the_run

    swapped = check(dataclasses.replace(solution, result=local))
    assert _says(swapped, "made by another run"), swapped

    other_meter = check_deployment_run(solution, meter_id="home-008", deployment=deployment)
    assert _says(other_meter, "meter_id is 'home-007'", '"meter_id": "home-008"'), other_meter

    assert check(solution).ok


# --------------------------------------------------------------------------- lesson 06


@pytest.mark.server
def test_check_no_late_runs_judges_the_table_it_is_given(exercise_pool):
    from energy_flows.lessons import wait_until_late
    from energy_flows.orchestration import (
        cancel_late_runs,
        deploy_energy_flow,
        queue_runs,
        trigger,
    )

    queue, deployment = "exercise-late-queue", "exercise-late-2"
    deploy_energy_flow(deployment, work_pool=POOL, work_queue=queue)

    def leave_one_behind():
        wait_until_late(
            trigger(deployment, flow_run_name="forgotten", scheduled_time=_past()), timeout=60
        )

    def check(table):
        return check_no_late_runs(table, queue=queue, pool=POOL)

    leave_one_behind()
    solution = cancel_late_runs(queue, POOL)
    right = check(solution)
    assert right.ok, right
    assert right.right == [
        "the runs in `cancelled` are Cancelled on the server",
        "among them 'forgotten', the run the lesson left Late",
        f"{queue!r} had no Late run left after your call",
    ]

    assert "`cancelled` is still None" in check(None).missing[0]

    # After the solution, the learner's own call finds nothing left to cancel.
    empty = check(cancel_late_runs(queue, POOL))
    assert not empty.ok
    assert _says(empty, "is empty", "Run the cell of section 3 again"), empty

    # A listing of the Late runs is not a cancellation.
    leave_one_behind()
    listing = queue_runs(queue, POOL, states=["Late"])
    listed = check(listing)
    assert _says(listed, "'forgotten'", "still Late", "cancel_late_runs() cancels them"), listed

    columns = check(listing[["name", "state"]])
    assert _says(columns, "has the columns name, state"), columns

    mine = cancel_late_runs(queue, POOL)
    assert check(mine).ok, check(mine)
    assert check(solution).ok
