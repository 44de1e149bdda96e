"""The notebook widgets, driven from code: fields set, buttons clicked, results checked.

Static snapshots are tested on hand-made data; the rest runs against the
session's real Prefect server (``prefect_server``) and real workers.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import pandas as pd
import pytest

from energy_flows import views
from energy_flows.errors import OrchestrationError
from energy_flows.vocabulary import BAD_COLOUR
from energy_flows.widgets import (
    DeploymentBuilder,
    LogTail,
    QueueMonitor,
    QueueSnapshot,
    explain_cron,
    parameter_fields,
    stop_all_views,
)
from tests.notebooks.nbval_plugin import sanitized

DEAD_API = "http://127.0.0.1:9/api"  # nothing listens on port 9


def wait(condition: Any, timeout: float = 30, what: str = "condition") -> Any:
    from energy_flows.waiting import wait_until

    return wait_until(condition, timeout, what=what, interval=0.1)


# --------------------------------------------------------------------------- no server


def test_explain_cron_says_why() -> None:
    assert explain_cron("*/5 * * * *") is None
    assert explain_cron("0 6 * * mon-fri") is None
    assert "5 fields" in explain_cron("*/5 * *")
    assert "minute field is 61, outside its range 0-59" in explain_cron("61 * * * *")
    assert "hour field '2x'" in explain_cron("0 2x * * *")
    assert "step" in explain_cron("*/0 * * * *")
    assert "empty" in explain_cron("  ")


def test_parameter_fields_follow_the_flow_signature() -> None:
    from energy_flows.flows import energy_usage_pipeline

    fields = parameter_fields(energy_usage_pipeline)
    kinds = {name: f.kind for name, f in fields.items()}
    assert kinds["meter_id"] == "str"
    assert kinds["days"] == "int"
    assert kinds["flaky"] == "float"
    assert fields["days"].widget.value == 365

    def fn(flag: bool = True, when: list[int] | None = None, count: int | None = None) -> None:
        pass

    fields = parameter_fields(fn)
    assert [f.kind for f in fields.values()] == ["bool", "json", "json"]
    fields["when"].widget.value = "[1, 2"
    with pytest.raises(ValueError, match="not valid JSON"):
        fields["when"].value()


def test_builder_validates_as_you_type() -> None:
    b = DeploymentBuilder()
    assert b.errors == []
    assert "ready to deploy" in b.message.value
    b.set(schedule="cron", cron="*/5 * *")  # what a learner has typed so far
    assert len(b.errors) == 1 and "5 fields" in b.errors[0]
    assert "5 fields" in b.message.value and BAD_COLOUR in b.message.value
    assert b.cron_field.layout.display is None and b.interval_field.layout.display == "none"
    b.set(cron="*/5 * * * *", parameters={"days": 60, "test_days": 14})
    assert b.errors == [] and b.parameters == {"days": 60, "test_days": 14}
    b.set(schedule="interval", interval=0)
    assert b.errors == [
        "interval must be more than 0 seconds; got 0 s. "
        "Example: interval=30 runs the flow every 30 seconds."
    ]
    b.set(interval=30, name="")
    assert b.errors == ["A deployment needs a non-empty name; got ''."]
    with pytest.raises(OrchestrationError, match="no parameter 'nope'"):
        b.set(parameters={"nope": 1})
    with pytest.raises(OrchestrationError, match="was not created"):
        b.deploy()
    assert "needs a non-empty name" in b.output.value


def test_builder_static_snapshot_is_stable() -> None:
    b = DeploymentBuilder(
        schedule="cron", cron="0 6 * * *", parameters={"days": 60, "test_days": 14}
    )
    bundle = b._repr_mimebundle_()
    assert bundle["text/plain"].startswith(
        "DeploymentBuilder deployment 'energy-usage': cron '0 6 * * *', pool 'energy-pool', "
        'queue \'energy_usage\', paused no, parameters {"days": 60, "test_days": 14}\n  ✓ ready to deploy'
    )
    # ... and the same deployment with Prefect's own API and as a prefect.yaml entry
    assert 'cron="0 6 * * *",' in bundle["text/plain"]
    assert 'parameters={"days": 60, "test_days": 14},' in bundle["text/plain"]
    assert "  schedules:\n  - cron: 0 6 * * *" in bundle["text/plain"]
    assert "<th style='text-align:left'>parameter days</th><td>60</td>" in bundle["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    b.set(cron="0 25 * * *")
    assert repr(b).endswith("✗ the hour field is 25, outside its range 0-23.")


def _snapshot(later: float = 0, **counts: int) -> QueueSnapshot:
    """A snapshot of one queue at 12:00:07 UTC (plus ``later`` seconds)."""

    def at(clock: str) -> pd.Timestamp:
        return pd.Timestamp(f"2025-01-01 {clock}", tz="UTC") + pd.Timedelta(seconds=later)

    row = {
        "queue": "energy_usage",
        "pool": "energy-pool",
        "status": "READY",
        "paused": False,
        "concurrency_limit": 1,
        "priority": 1,
        **{s: 0 for s in ("scheduled", "late", "pending", "running", "completed")},
        **{s: 0 for s in ("failed", "crashed", "cancelled")},
        "last_polled": at("12:00:05"),
        "workers_online": 1,
    }
    row.update(counts)
    return QueueSnapshot(
        time=at("12:00:07.250"),
        pool="energy-pool",
        queues=pd.DataFrame([row]),
        workers=pd.DataFrame(
            [
                {
                    "name": "worker-1",
                    "status": "ONLINE",
                    "last_heartbeat": at("12:00:03.9"),
                }
            ]
        ),
        next_runs=pd.DataFrame(
            [
                {
                    "name": "lesson-run",
                    "state": "Late",
                    "deployment": "energy-usage",
                    "queue": "energy_usage",
                    "scheduled": at("11:59:50"),
                }
            ]
        ),
    )


def test_monitor_static_snapshot_text_and_html() -> None:
    m = QueueMonitor(api_url=DEAD_API, autostart=False)
    m._snapshot = _snapshot(late=2, completed=3)
    assert repr(m) == (
        "QueueMonitor energy-pool/energy_usage: status READY, Late 2, Scheduled 0, Pending 0, "
        "Running 0, Completed 3, Failed 0, Crashed 0, Cancelled 0; concurrency limit 1\n"
        "  workers online: 1 — worker-1 (ONLINE, heartbeat 12:00:03 UTC)\n"
        "  next runs: lesson-run (Late, 11:59:50 UTC)\n"
        "  snapshot at 12:00:07 UTC"
    )
    html = m._repr_mimebundle_()["text/html"]
    assert "<td style='background:#fde0c5;color:#8a3b00;font-weight:bold'>2</td>" in html
    assert "Workers online: 1" in html and "worker-1" in html and "lesson-run" in html

    # Exact times are kept (the snapshot's time has its 0.25 s) and shown to the second.
    assert m.snapshot.time.microsecond == 250_000

    # A stored lesson output compares equal when only the clock has moved: the lessons'
    # nbval sanitizer replaces clock times, so the monitor needs no "stable" mode.
    text, html = repr(m), m.snapshot_html()
    m._snapshot = _snapshot(later=3600 + 17.5, late=2, completed=3)
    assert repr(m) != text
    assert sanitized(repr(m)) == sanitized(text)
    assert sanitized(m.snapshot_html()) == sanitized(html)
    assert "12:00" not in sanitized(html) and "13:00" not in sanitized(m.snapshot_html())
    assert "Late 2" in sanitized(repr(m)) and "Completed 3" in sanitized(repr(m))


def test_monitor_stops_and_says_so_when_the_server_is_gone() -> None:
    m = QueueMonitor(api_url=DEAD_API, autostart=False, max_failures=2)
    assert "does not answer (try 1 of 2)" in repr(m)
    m.refresh()
    assert m.snapshot.server_stopped
    assert "server stopped" in repr(m) and "PrefectServer().start()" in repr(m)
    assert "server stopped" in m.status.value

    live = QueueMonitor(api_url=DEAD_API, interval=0.1, max_failures=3)
    assert live.running
    wait(lambda: not live.running, 10, "the monitor to stop by itself")
    assert live.snapshot.server_stopped
    assert live.start_button.disabled is False


def test_log_tail_of_a_file(tmp_path: Any) -> None:
    log = tmp_path / "w.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    tail = LogTail(log, lines=5, interval=0.1)
    assert tail.lines == [f"line {i}" for i in range(45, 50)]
    assert repr(tail).startswith(f"LogTail: log file {log}, last 5 lines\nline 45")
    tail.follow_button.click()
    assert tail.running
    with log.open("a") as f:
        f.write("new line\n")
    wait(lambda: tail.lines[-1] == "new line", 10, "the new line")
    assert "new line" in tail.view.value
    tail.stop_button.click()
    assert not tail.running
    missing = LogTail(tmp_path / "nope.log")
    assert "does not exist" in repr(missing)
    with pytest.raises(TypeError):
        LogTail(42)


# --------------------------------------------------------------------------- real server

POOL = "widget-pool"
QUEUE = "widget-queue"


@pytest.fixture(scope="module")
def pool_and_queue(prefect_server: Any) -> tuple[str, str]:
    from energy_flows.orchestration import ensure_work_pool, ensure_work_queue

    ensure_work_pool(POOL)
    ensure_work_queue(QUEUE, pool=POOL, concurrency_limit=1)
    return POOL, QUEUE


def test_builder_deploys_from_code_and_by_click(pool_and_queue: tuple[str, str]) -> None:
    from energy_flows.orchestration import list_deployments

    pool, queue = pool_and_queue
    b = DeploymentBuilder(work_pool=pool, work_queue=queue)
    b.set(name="builder-cron", schedule="cron", cron="*/5 * * * *", paused=True)
    b.set(parameters={"days": 60, "test_days": 14})
    info = b.deploy()
    assert info.name == "builder-cron" and info.paused
    assert "✓ deployed" in b.output.value and "\n  ✓ deployed\n" in repr(b)

    # a bad cron: the message says why before the click; the click changes nothing
    b.set(name="builder-bad", cron="*/5 * * *")
    assert "5 fields" in b.message.value
    b.deploy_button.click()
    assert "✗" in b.output.value and "5 fields" in b.output.value
    assert b.result is None and "5 fields" in b.last_error

    b.set(name="builder-click", cron="0 6 * * *")
    b.deploy_button.click()
    assert "✓ deployed" in b.output.value, b.output.value
    names = set(list_deployments()["name"])
    assert {"builder-cron", "builder-click"} <= names
    assert "builder-bad" not in names

    # an error Prefect's side finds (a pool that does not exist) is shown in place too
    b.set(name="builder-nopool", work_pool="no-such-pool")
    b.deploy_button.click()
    assert "no-such-pool" in b.output.value and b.result is None


def test_monitor_late_run_worker_and_timeline(
    pool_and_queue: tuple[str, str], worker_factory: Any
) -> None:
    from energy_flows.orchestration import (
        deploy_energy_flow,
        queue_runs,
        run_result,
        trigger,
        wait_for,
    )

    pool, queue = pool_and_queue
    deploy_energy_flow(
        "monitor-check", work_pool=pool, work_queue=queue, parameters={"days": 60, "test_days": 14}
    )
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    run = trigger(
        "energy-usage-pipeline/monitor-check", flow_run_name="late-one", scheduled_time=past
    )
    wait_for(queue, until="late", queue=queue, pool=pool, timeout=30, progress=False)

    monitor = QueueMonitor(queue, pool, autostart=False)
    snap = monitor.refresh()
    assert snap.count("Late") >= 1
    text = monitor._repr_mimebundle_()["text/plain"]
    shown = re.match(rf"QueueMonitor {pool}/{queue}: status NOT_READY, Late (\d+),", text)
    assert shown and int(shown[1]) == snap.count("Late") >= 1, text
    assert "concurrency limit 1" in text and "workers online: 0" in text
    assert "late-one" in QueueMonitor(queue, pool, autostart=False).snapshot_html()

    # background refresh: the kernel's thread is free while the history grows
    monitor.interval = 0.3
    monitor.start_button.click()
    assert monitor.running and "live" in monitor.status.value
    worker = worker_factory(pool=pool, queues=[queue])
    final = wait_for(run, until="completed", timeout=90, progress=False)
    assert final.state == "Completed"
    wait(lambda: worker.name in monitor.snapshot.workers_online, 20, "the worker in the monitor")
    wait(lambda: monitor.snapshot.count("Completed") >= 1, 20, "a Completed count")
    monitor.stop_button.click()
    assert not monitor.running and "stopped" in monitor.status.value
    assert f"workers online: 1 — {worker.name}" in repr(monitor)
    history = monitor.history
    assert {"time", "queue", "late", "completed"} <= set(history.columns)
    assert history["late"].max() >= 1 and history["completed"].iloc[-1] >= 1
    views.plot_queue_counts(history)

    # the timeline knows which worker ran the run: the worker labelled the run with its name
    flow_run = views.read_flow_runs([str(run.id)])[str(run.id)]
    assert flow_run.labels[views.WORKER_LABEL] == worker.name == views.worker_of(flow_run)
    runs = views.runs_with_workers(queue_runs(queue, pool))
    assert runs.loc[runs["id"] == str(run.id), "worker"].item() == worker.name
    # the fallback for runs without the label finds the same name in the run's log
    assert views.workers_from_run_logs([str(run.id)]) == {str(run.id): worker.name}
    # Exact start and end times (runs tables show whole seconds): the bar has a length.
    mine = runs.loc[runs["id"] == str(run.id)].iloc[0]
    assert mine["ended"] > mine["started"]
    assert mine["started"] != mine["started"].floor("s") or mine["ended"] != mine["ended"].floor(
        "s"
    )
    fig = views.plot_run_timeline(runs)
    assert worker.name in [t.get_text() for t in fig.axes[0].get_yticklabels()]

    # the run's logs, and the worker's log file
    run_logs = LogTail(run, lines=50)
    assert any(f"Worker '{worker.name}' submitting flow run" in line for line in run_logs.lines)
    assert "logs of flow run late-one" in repr(run_logs)
    worker_log = LogTail(worker, lines=10)
    assert worker_log.path == worker.log_path and worker_log.lines
    assert repr(worker_log).startswith(f"LogTail: log of the worker {worker.name}")

    # and what the run computed
    result = run_result(run)
    fig = views.plot_forecast(result.result)
    assert [line.get_label() for line in fig.axes[0].get_lines()][:2] == ["actual", "predicted"]


def test_monitor_counts_and_lists_one_snapshot_while_runs_turn_late(
    pool_and_queue: tuple[str, str],
) -> None:
    """Runs turning Late one after another: every refresh counts what it lists.

    Six runs whose start times lie 0-5 s in the past turn Late (5 s after their
    start) one a second, while the monitor refreshes; each snapshot's Late and
    Scheduled counts equal the Late and Scheduled runs its list shows.
    """
    from energy_flows.orchestration import deploy_energy_flow, ensure_work_queue, trigger

    pool, _ = pool_and_queue
    queue = "widget-turning-late"
    ensure_work_queue(queue, pool=pool)
    deploy_energy_flow("turning-late", work_pool=pool, work_queue=queue, parameters={"days": 60})
    now = dt.datetime.now(dt.UTC)
    for i in range(6):
        trigger(
            "energy-usage-pipeline/turning-late",
            flow_run_name=f"turning-late-{i}",
            scheduled_time=now - dt.timedelta(seconds=i),
        )
    monitor = QueueMonitor(queue, pool, autostart=False, next_runs=50)
    seen = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        snap = monitor.refresh()
        assert snap.problem is None, snap.problem
        listed = snap.next_runs["state"].value_counts().to_dict()
        assert snap.count("Late") == listed.get("Late", 0), (snap.queues, snap.next_runs)
        assert snap.count("Scheduled") == listed.get("Scheduled", 0), snap.next_runs
        assert f"Late {snap.count('Late')}," in monitor.snapshot_text()
        seen.add(snap.count("Late"))
        if snap.count("Late") == 6:
            break
    assert 6 in seen and len(seen) >= 2, seen  # the refreshes watched runs turn Late


def test_no_view_thread_survives() -> None:
    stop_all_views()
    import threading

    time.sleep(0.2)
    names = [t.name for t in threading.enumerate() if t.name.startswith("energy-flows ")]
    assert names == []


@pytest.mark.server
def test_the_builders_prefect_code_and_yaml_deploy_what_the_form_holds(prefect_server, tmp_path):
    """What the form shows 'ready to copy' works: Prefect's code, and prefect deploy on the yaml."""
    import asyncio
    import os
    import subprocess
    import sys
    import textwrap

    from prefect import get_client

    from energy_flows.orchestration import ensure_work_pool

    ensure_work_pool("builder-pool")
    b = DeploymentBuilder(
        name="builder-code", schedule="cron", cron="0 6 * * *", parameters={"days": 60}
    ).set(work_pool="builder-pool", work_queue="builder-queue")
    body = textwrap.indent(b.prefect_code(), "    ")
    namespace: dict = {}
    exec(f"async def deploy_it():\n{body}\n", namespace)  # the code the form shows
    asyncio.run(namespace["deploy_it"]())

    b.set(name="builder-yaml", schedule="interval", interval=120)
    (tmp_path / "prefect.yaml").write_text(b.prefect_yaml() + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "deploy", "--all"],
        cwd=tmp_path,
        env={**os.environ, "PREFECT_CLI_PROMPT": "false"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    with get_client(sync_client=True) as client:
        coded = client.read_deployment_by_name("energy-usage-pipeline/builder-code")
        yamled = client.read_deployment_by_name("energy-usage-pipeline/builder-yaml")
    for deployment in (coded, yamled):
        assert (deployment.work_pool_name, deployment.work_queue_name) == (
            "builder-pool",
            "builder-queue",
        )
        assert deployment.parameters == {"days": 60}
    assert coded.schedules[0].schedule.cron == "0 6 * * *"
    assert yamled.schedules[0].schedule.interval.total_seconds() == 120
