"""The orchestration API against a real Prefect server and real workers.

Each test works in its own pool (a unique name), so tests sharing the session
server do not see each other's queues and runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pandas as pd
import pytest
from flows_for_tests.standin import needs_start, standin_pipeline

import energy_flows
from energy_flows import orchestration as orch
from energy_flows.errors import OrchestrationError, ServiceError, WaitTimeout
from energy_flows.orchestration.deployments import (
    build_schedule,
    interval_text,
    validate_cron,
    validate_interval,
    validate_rrule,
)

pytestmark = pytest.mark.server


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def pool(prefect_server) -> str:
    """A fresh process pool with the queue ``energy_usage``."""
    name = _unique("orch")
    orch.ensure_work_pool(name)
    orch.ensure_work_queue("energy_usage", pool=name)
    return name


def _past(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)


# ----------------------------------------------------------------- no server needed


def test_public_names_and_constants():
    assert energy_flows.DEFAULT_POOL == "energy-pool"
    assert energy_flows.DEFAULT_QUEUE == "energy_usage"
    assert energy_flows.RUN_STATES == (
        "Scheduled",
        "Late",
        "Pending",
        "Running",
        "Completed",
        "Failed",
        "Crashed",
        "Cancelled",
    )
    for name in ("ensure_work_pool", "deploy_energy_flow", "queue_runs", "run_result", "wait_for"):
        assert callable(getattr(energy_flows, name))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30, "every 30 seconds"), (1, "every second"), (60, "every minute"), (300, "every 5 minutes"),
     (7200, "every 2 hours"), (86400, "every day"), (90, "every 90 seconds"), (0.5, "every 0.5 seconds")],
)  # fmt: skip
def test_interval_in_words(seconds, text):
    assert interval_text(dt.timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "*/5 * *"}, "has 5 fields"),
        ({"cron": "61 * * * *"}, "Invalid cron '61 * * * *': the minute field is 61"),
        ({"cron": "0 25 * * *"}, "the hour field is 25, outside its range 0-23"),
        ({"cron": "0 6 * * fry"}, "the day of week field 'fry' contains 'fry'"),
        ({"cron": "H * * * *"}, "hashed"),
        ({"interval": 0}, "more than 0 seconds"),
        ({"interval": -5}, "more than 0 seconds"),
        ({"interval": dt.timedelta(0)}, "more than 0 seconds"),
        ({"interval": "30"}, "number of seconds"),
        ({"rrule": "FREQ=DAILY;INTERVAL=1"}, "no start (DTSTART)"),
        ({"rrule": "DTSTART:20250101T060000\nRRULE:FREQ=SOMETIMES"}, "Invalid rrule"),
        ({"interval": 10, "cron": "* * * * *"}, "not interval and cron"),
        ({"interval": 10, "timezone": "Mars/Olympus"}, "Unknown timezone"),
        ({"timezone": "UTC"}, "only makes sense"),
    ],
)
def test_bad_schedules_are_refused_with_the_reason(kwargs, message):
    args = {"interval": None, "cron": None, "rrule": None, "timezone": None, **kwargs}
    with pytest.raises(OrchestrationError, match=None) as info:
        build_schedule(**args)
    assert message in str(info.value)


def test_good_schedules_validate():
    assert validate_cron("*/5 * * * *") == "*/5 * * * *"
    assert validate_interval(12.5) == dt.timedelta(seconds=12.5)  # 10 s at least (the floor)
    rule = "DTSTART:20250101T060000\nRRULE:FREQ=DAILY;INTERVAL=1"
    assert validate_rrule(rule) == rule
    assert build_schedule(None, None, None, None) is None


# ----------------------------------------------------------------- pools and queues


def test_work_pool_is_idempotent_and_updates_say_what_changed(prefect_server):
    name = _unique("pool")
    created = orch.ensure_work_pool(name)
    assert created.changes == ("created",)
    assert (created.type, created.status, created.paused) == ("process", "NOT_READY", False)
    again = orch.ensure_work_pool(name)
    assert again.changes == () and again.id == created.id
    assert orch.ensure_work_pool(name, concurrency_limit=2).changes == (
        "concurrency_limit None → 2",
    )
    assert orch.ensure_work_pool(name).concurrency_limit == 2  # None keeps the limit
    assert orch.ensure_work_pool(name, concurrency_limit=3).changes == ("concurrency_limit 2 → 3",)
    removed = orch.ensure_work_pool(name, concurrency_limit="unlimited")
    assert removed.changes == ("concurrency_limit 3 → None",) and removed.concurrency_limit is None
    paused = orch.pause_work_pool(name)
    assert (paused.status, paused.paused, paused.changes) == ("PAUSED", True, ("paused",))
    assert orch.pause_work_pool(name).changes == ()
    assert orch.resume_work_pool(name).changes == ("resumed",)
    assert "Work pool" in created._repr_html_() and "created" in created._repr_html_()


def test_the_pool_gets_the_fast_flow_run_command(prefect_server):
    from prefect.client.orchestration import get_client

    from energy_flows.orchestration import flow_run_command

    name = _unique("pool")
    orch.ensure_work_pool(name)
    with get_client(sync_client=True) as c:
        template = c.read_work_pool(name).base_job_template
    assert template["variables"]["properties"]["command"]["default"] == flow_run_command()


@pytest.mark.server
def test_a_pool_and_queue_made_with_prefects_command_serve_the_packages_workers(
    prefect_server, worker_factory, tmp_path
):
    """What lessons 03-04 do: `prefect work-pool create`, `prefect work-queue create`, then
    Prefect's own .deploy(); the package's worker runs it, through the fast run command."""
    import os
    import subprocess
    import sys
    import time

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from energy_flows.orchestration import flow_run_command

    pool, queue = _unique("cli-pool"), "cli-queue"

    def prefect(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            env={**os.environ, "PREFECT_CLI_PROMPT": "false"},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    prefect("work-pool", "create", pool, "--type", "process")
    prefect("work-queue", "create", queue, "--pool", pool, "--limit", "2")
    with get_client(sync_client=True) as c:
        template = c.read_work_pool(pool).base_job_template
    assert not template["variables"]["properties"]["command"].get("default")  # Prefect's own

    (tmp_path / "noop.py").write_text(
        "from prefect import flow\n\n@flow(name='cli-noop')\ndef noop() -> int:\n    return 1\n"
    )
    flow.from_source(str(tmp_path), "noop.py:noop").deploy(
        name="cli", work_pool_name=pool, work_queue_name=queue,
        print_next_steps=False, ignore_warnings=True,
    )  # fmt: skip
    worker_factory(pool=pool, queues=[queue])
    with get_client(sync_client=True) as c:
        template = c.read_work_pool(pool).base_job_template
    assert template["variables"]["properties"]["command"]["default"] == flow_run_command()

    started = time.monotonic()
    run = run_deployment("cli-noop/cli", timeout=120, poll_interval=0.5)
    assert run.state is not None and run.state.is_completed(), run.state
    assert time.monotonic() - started < 30  # picked up within a second, started the fast way
    assert orch.ensure_work_pool(pool).changes == ()  # it has the command already
    # A pool made with Prefect's command and no worker yet: lesson_setup's ensure_work_pool
    # gives it the course's run command too.
    other = _unique("cli-pool")
    prefect("work-pool", "create", other, "--type", "process")
    assert orch.ensure_work_pool(other).changes == ("flow runs start with the course's launcher",)


def test_work_pool_bad_inputs(prefect_server):
    name = _unique("pool")
    orch.ensure_work_pool(name)
    with pytest.raises(OrchestrationError, match="already exists with type 'process'"):
        orch.ensure_work_pool(name, type="docker")
    with pytest.raises(OrchestrationError, match="whole number ≥ 0"):
        orch.ensure_work_pool(name, concurrency_limit=-1)
    with pytest.raises(OrchestrationError, match="non-empty name"):
        orch.ensure_work_pool("  ")
    with pytest.raises(OrchestrationError, match="ensure_work_pool\\('nope-"):
        orch.pause_work_pool(_unique("nope"))


def test_work_queue_is_idempotent_updates_and_pauses(prefect_server):
    pool = _unique("pool")
    orch.ensure_work_pool(pool)
    queue = orch.ensure_work_queue("energy_usage", pool=pool)
    assert queue.changes == ("created",)
    assert (queue.pool, queue.status, queue.concurrency_limit) == (pool, "NOT_READY", None)
    assert orch.ensure_work_queue("energy_usage", pool=pool).changes == ()
    updated = orch.ensure_work_queue("energy_usage", pool=pool, concurrency_limit=1, priority=1)
    assert set(updated.changes) == {
        "concurrency_limit None → 1",
        f"priority {queue.priority} → 1",
    }
    assert orch.ensure_work_queue("energy_usage", pool=pool, priority=1).changes == ()
    assert orch.pause_work_queue("energy_usage", pool).status == "PAUSED"
    status = orch.queue_status(pool, "energy_usage")
    assert status.loc[0, "status"] == "PAUSED" and bool(status.loc[0, "paused"])
    assert orch.resume_work_queue("energy_usage", pool).changes == ("resumed",)
    with pytest.raises(OrchestrationError, match="priority must be a whole number ≥ 1"):
        orch.ensure_work_queue("energy_usage", pool=pool, priority=0)


def test_work_queue_in_an_unknown_pool_says_how_to_create_it(prefect_server):
    missing = _unique("missing")
    with pytest.raises(OrchestrationError) as info:
        orch.ensure_work_queue("energy_usage", pool=missing)
    assert f"ensure_work_pool('{missing}')" in str(info.value)


# ----------------------------------------------------------------- deployments


def test_deploy_redeploy_and_list(pool):
    info = orch.deploy(standin_pipeline, "standin", interval=30, work_pool=pool,
                       parameters={"days": "3"})  # fmt: skip
    assert info.changes == ("created",)
    assert info.full_name == "standin-energy/standin"
    assert info.parameters == {"days": 3}  # converted to the annotation's type
    assert (info.schedule, info.work_pool, info.work_queue) == (
        "every 30 seconds",
        pool,
        "energy_usage",
    )
    assert info.url and info.id in info.url
    same = orch.deploy(
        standin_pipeline, "standin", interval=30, work_pool=pool, parameters={"days": 3}
    )
    assert same.changes == () and same.id == info.id
    cron = orch.deploy(standin_pipeline, "standin", cron="*/5 * * * *", work_pool=pool,
                       parameters={"days": 3}, paused=True)  # fmt: skip
    assert set(cron.changes) == {
        "schedule every 30 seconds → cron '*/5 * * * *' (UTC)",
        "paused False → True",
    }
    assert cron.paused
    unscheduled = orch.deploy(standin_pipeline, "standin", work_pool=pool, parameters={"days": 3})
    assert unscheduled.schedule == "none" and not unscheduled.paused

    frame = orch.list_deployments()
    assert list(frame.columns) == [
        "name", "flow", "schedule", "next_run", "work_pool", "work_queue", "paused", "id",
    ]  # fmt: skip
    row = frame[frame["id"] == info.id].iloc[0]
    assert (row["name"], row["flow"], row["schedule"]) == ("standin", "standin-energy", "none")
    assert (row["work_pool"], row["work_queue"], row["paused"]) == (pool, "energy_usage", False)
    assert str(frame["next_run"].dtype).startswith("datetime64")
    assert "Deployment" in info._repr_html_()


def test_deploy_to_a_new_queue_reports_it(pool):
    info = orch.deploy(standin_pipeline, _unique("dep"), work_pool=pool, work_queue="other")
    assert info.changes == ("created", f"work queue 'other' created in pool '{pool}'")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"parameters": {"dayz": 3}}, "has no parameter 'dayz'. It takes: meter_id: str"),
        ({"parameters": {"days": "three"}}, "Parameter 'days' of flow 'standin-energy' must be int; got 'three'"),
        ({"parameters": {"scale": [1]}}, "must be float"),
        ({"cron": "* * *"}, "has 5 fields"),
        ({"interval": 0}, "more than 0 seconds"),
        ({"rrule": "RRULE:FREQ=DAILY"}, "DTSTART"),
        ({"work_pool": "no-such-pool"}, "Create it with ensure_work_pool('no-such-pool')"),
        ({"paused": "yes"}, "paused must be True or False"),
    ],
)  # fmt: skip
def test_deploy_refuses_bad_input_before_prefect(pool, kwargs, message):
    name = _unique("bad")
    kwargs.setdefault("work_pool", pool)
    with pytest.raises(OrchestrationError) as info:
        orch.deploy(standin_pipeline, name, **kwargs)
    assert message in str(info.value)
    assert name not in set(orch.list_deployments()["name"])


def test_deploy_refuses_missing_required_parameters_and_notebook_flows(pool):
    with pytest.raises(OrchestrationError, match="needs a value for 'start'"):
        orch.deploy(needs_start, "x", work_pool=pool)
    assert orch.deploy(needs_start, _unique("ok"), work_pool=pool,
                       parameters={"start": "2024-01-01"}).changes == ("created",)  # fmt: skip

    namespace: dict = {}
    code = "from prefect import flow\n@flow(name='cell-flow')\ndef cell_flow(x: int = 1):\n    return x\n"
    exec(compile(code, "<ipython-input-3-abc>", "exec"), namespace)
    with pytest.raises(OrchestrationError, match="defined in a notebook cell"):
        orch.deploy(namespace["cell_flow"], "cell", work_pool=pool)
    with pytest.raises(OrchestrationError, match="needs a Prefect flow"):
        orch.deploy(print, "not-a-flow", work_pool=pool)  # type: ignore[arg-type]


def test_everything_works_inside_a_running_event_loop(pool):
    """A notebook kernel runs an event loop: no call may hand back a coroutine."""

    async def notebook_cell():
        info = orch.deploy(standin_pipeline, "in-loop", interval=60, work_pool=pool)
        energy = orch.deploy_energy_flow(work_pool=pool, parameters={"days": 35, "test_days": 7})
        run = orch.trigger(info.full_name, flow_run_name="in-loop-run")
        return (
            info,
            energy,
            run,
            orch.list_deployments(),
            orch.queue_runs("energy_usage", pool),
            orch.queue_status(pool),
            orch.ensure_work_queue("energy_usage", pool=pool),
            orch.run_result(run),
        )

    info, energy, run, listed, runs, status, queue, result = asyncio.run(notebook_cell())
    assert isinstance(info, orch.DeploymentInfo) and isinstance(energy, orch.DeploymentInfo)
    assert energy.full_name == "energy-usage-pipeline/energy-usage"
    assert isinstance(run, orch.RunInfo) and run.state == "Scheduled"
    assert isinstance(listed, pd.DataFrame) and isinstance(runs, pd.DataFrame)
    assert "in-loop-run" in set(runs["name"])
    assert isinstance(status, pd.DataFrame) and isinstance(queue, orch.QueueInfo)
    assert (
        isinstance(result, orch.RunResult)
        and result.result is None
        and "no result yet" in result.note
    )


# ----------------------------------------------------------------- runs in a queue


def test_looking_at_a_queue_never_polls_it(pool):
    """queue_runs / queue_status / wait_for must not flip the queue to READY."""
    info = orch.deploy(standin_pipeline, "watched", work_pool=pool)
    run = orch.trigger(info.full_name, flow_run_name="missed", scheduled_time=_past(30))
    orch.trigger(info.full_name, flow_run_name="future", scheduled_time=_past(-3600))
    for _ in range(3):
        runs = orch.queue_runs("energy_usage", pool)
        status = orch.queue_status(pool, ["energy_usage"])
    assert list(runs.columns) == [
        "name", "state", "deployment", "scheduled", "lateness_s", "started", "ended", "duration_s", "id",
    ]  # fmt: skip
    assert list(runs["name"]) == ["missed", "future"]  # sorted by scheduled time
    assert runs.loc[0, "lateness_s"] >= 29 and runs.loc[1, "lateness_s"] == 0
    late = orch.wait_for(until="late", queue="energy_usage", pool=pool, timeout=30)
    assert list(late["name"]) == ["missed"] and set(late["state"]) == {"Late"}
    assert list(orch.queue_runs("energy_usage", pool, states="Scheduled")["name"]) == ["future"]

    status = orch.queue_status(pool, ["energy_usage"])
    assert list(status.columns) == [
        "queue", "pool", "status", "paused", "concurrency_limit", "priority", "scheduled", "late",
        "pending", "running", "completed", "failed", "crashed", "cancelled", "last_polled",
        "workers_online",
    ]  # fmt: skip
    row = status.iloc[0]
    assert row["status"] == "NOT_READY" and pd.isna(row["last_polled"])
    assert (row["scheduled"], row["late"], row["workers_online"]) == (1, 1, 0)
    assert orch.ensure_work_queue("energy_usage", pool=pool).status == "NOT_READY"

    with pytest.raises(WaitTimeout) as info_timeout:
        orch.wait_for(run, timeout=1.5, queue="energy_usage", pool=pool)
    assert "no worker polls energy_usage" in str(info_timeout.value)
    assert "Worker(pool=" in str(info_timeout.value)
    with pytest.raises(WaitTimeout, match=r"1 run is still Late in energy_usage.*no worker polls"):
        orch.wait_for(until="empty", queue="energy_usage", pool=pool, timeout=1.5)
    assert orch.queue_status(pool, "energy_usage").loc[0, "status"] == "NOT_READY"

    cancelled = orch.cancel_late_runs("energy_usage", pool)
    assert list(cancelled["name"]) == ["missed"]
    after = orch.queue_status(pool, "energy_usage").iloc[0]
    assert (after["late"], after["cancelled"], after["status"]) == (0, 1, "NOT_READY")
    assert len(orch.cancel_late_runs("energy_usage", pool)) == 0


def test_run_state_and_queue_errors(pool):
    with pytest.raises(OrchestrationError, match="Unknown run state 'Lat'"):
        orch.queue_runs("energy_usage", pool, states=["Lat"])
    with pytest.raises(OrchestrationError, match="ensure_work_queue\\('nope'"):
        orch.queue_runs("nope", pool)
    with pytest.raises(OrchestrationError, match="no queue 'nope'"):
        orch.queue_status(pool, ["nope"])
    with pytest.raises(OrchestrationError, match="until must be"):
        orch.wait_for("energy_usage", until="done", pool=pool)  # type: ignore[arg-type]
    with pytest.raises(OrchestrationError, match="needs the run"):
        orch.wait_for(pool=pool)


def test_trigger_errors(pool):
    info = orch.deploy(standin_pipeline, _unique("trig"), work_pool=pool)
    with pytest.raises(OrchestrationError, match="There is no deployment 'nope'"):
        orch.trigger("nope")
    with pytest.raises(OrchestrationError, match="has no parameter 'dayz'"):
        orch.trigger(info.full_name, parameters={"dayz": 1})
    with pytest.raises(OrchestrationError, match="refused a run"):
        orch.trigger(info.full_name, parameters={"days": "many"})
    by_name = orch.trigger(info.name, flow_run_name="by-name")
    by_info = orch.trigger(info, flow_run_name="by-info")
    assert by_name.deployment == by_info.deployment == info.name


def test_a_worker_runs_it_and_the_notebook_reads_the_result(pool, worker_factory):
    info = orch.deploy(standin_pipeline, "worked", work_pool=pool, parameters={"days": 2})
    run = orch.trigger(info.full_name, parameters={"meter_id": "house-7", "scale": 2.0},
                       flow_run_name="worked-run")  # fmt: skip
    worker_factory(pool=pool, queues=["energy_usage"])
    done = orch.wait_for(run, timeout=90, queue="energy_usage", pool=pool)
    assert done.state == "Completed" and done.name == "worked-run"
    assert done.parameters == {"days": 2, "meter_id": "house-7", "scale": 2.0}  # merged

    result = orch.run_result(done)
    assert result.state == "Completed" and result.note == ""
    assert result.metrics == {"mae_kwh": 0.2, "rmse_kwh": 0.4}
    assert len(result.forecast) == 48
    assert list(result.artifacts.columns) == ["key", "type", "description", "data"]
    assert {"energy-report-house-7", "energy-report-house-7-metrics"} <= set(
        result.artifacts["key"]
    )
    assert list(result.logs.columns) == ["timestamp", "level", "message"]
    assert result.logs["message"].str.contains("forecasting house-7 for 2 days").any()
    html = result._repr_html_()
    assert "Completed" in html and "mae_kwh" in html and "Forecast" in html

    status = orch.queue_status(pool, "energy_usage").iloc[0]
    assert (status["status"], status["completed"], status["workers_online"]) == ("READY", 1, 1)
    assert pd.notna(status["last_polled"])
    assert orch.workers(pool)["status"].tolist() == ["ONLINE"]
    assert orch.wait_for(until="empty", queue="energy_usage", pool=pool, timeout=10).shape[0] == 1
    finished = orch.queue_runs("energy_usage", pool, states=["Completed"]).iloc[0]
    assert finished["duration_s"] >= 0 and pd.notna(finished["started"])


def test_the_energy_flow_runs_on_a_worker(pool, worker_factory):
    info = orch.deploy_energy_flow(
        "energy-test",
        work_pool=pool,
        parameters={"meter_id": "home-042", "days": 35, "test_days": 7},
    )
    assert info.flow_name == "energy-usage-pipeline"
    worker_factory(pool=pool, queues=["energy_usage"])
    runs = [orch.trigger(info.full_name), orch.trigger(info.full_name, parameters={"seed": 1})]
    done = orch.wait_for(runs, timeout=120, queue="energy_usage", pool=pool)
    assert [r.state for r in done] == ["Completed", "Completed"]
    result = orch.run_result(done[0])
    assert result.metrics is not None and "mae_kwh" in result.metrics.columns
    assert result.forecast is not None and len(result.forecast) > 0
    assert any(str(k).startswith("energy-report-home-042") for k in result.artifacts["key"])


def test_no_server_configured_is_a_clear_error(prefect_server):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}):
        with pytest.raises(ServiceError, match=r"PrefectServer\(\)\.start\(\)"):
            orch.list_deployments()
