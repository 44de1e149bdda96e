"""Workers as managed processes: online, runs, stop with runs in flight, server death."""

from __future__ import annotations

import os
import signal
import textwrap
import time
import uuid

import psutil
import pytest

from energy_flows.errors import ServiceError
from energy_flows.orchestration import flow_run_command, wait_for
from energy_flows.services import api, control
from energy_flows.services.server import PrefectServer
from energy_flows.services.worker import Worker
from energy_flows.waiting import wait_until

pytestmark = pytest.mark.server

FLOW_SOURCE = textwrap.dedent(
    """
    import time
    from prefect import flow

    @flow
    def nap(seconds: float = 0.0) -> float:
        time.sleep(seconds)
        return seconds

    @flow
    def process_probe() -> dict:
        import gc, sys
        return {
            "collector_on": gc.isenabled(),
            "frozen_objects": gc.get_freeze_count(),
            "rfc3987_syntax_loaded": sys.modules.get("rfc3987_syntax") is not None,
        }
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def nap_flow_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flows")
    (folder / "nap_flow.py").write_text(FLOW_SOURCE)
    return folder


def _deploy(folder, pool: str, queue: str, flow_name: str = "nap") -> str:
    from prefect import flow

    name = f"{flow_name}-{uuid.uuid4().hex[:6]}"
    flow.from_source(str(folder), f"nap_flow.py:{flow_name}").deploy(
        name=name,
        work_pool_name=pool,
        work_queue_name=queue,
        job_variables={"command": flow_run_command()},
        print_next_steps=False,
    )
    return f"{flow_name.replace('_', '-')}/{name}"


def _run(deployment: str, seconds: float | None = None):
    from prefect.deployments import run_deployment

    parameters = {} if seconds is None else {"seconds": seconds}
    return run_deployment(deployment, parameters=parameters, timeout=0)


def _state(run_id) -> str:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state.type.value


def test_worker_online_runs_a_flow_and_stops_fast(worker_factory, prefect_server, nap_flow_dir):
    worker = worker_factory(pool="test-pool", queues=["q1", "q2"], limit=2)
    assert worker.status() == "running"
    html = worker._repr_html_()
    assert "test-pool" in html and "q1, q2" in html and str(worker.pid) in html
    workers = api.call("POST", f"{prefect_server.api_url}/work_pools/test-pool/workers/filter", {})
    assert any(w["name"] == worker.name and w["status"] == "ONLINE" for w in workers)
    pool = api.call("GET", f"{prefect_server.api_url}/work_pools/test-pool")
    assert pool["base_job_template"]["variables"]["properties"]["command"]["default"] == (
        flow_run_command()
    )

    deployment = _deploy(nap_flow_dir, "test-pool", "q2")
    run = _run(deployment, 0)
    assert wait_for(run.id, timeout=60, progress=False).state == "Completed"
    # The fast launcher's preload is silent: no RuntimeWarning per run in the worker's log.
    assert "found in sys.modules" not in worker.logs(tail=200)

    again = Worker(pool="test-pool", queues=["q1", "q2"], limit=2, home=prefect_server.home)
    assert again.start().reused and again.pid == worker.pid
    with pytest.raises(ServiceError, match="already runs"):
        Worker(pool="other", queues=["x"], name=worker.name, home=prefect_server.home).start()

    pid, started = worker.pid, time.monotonic()
    message = worker.stop()
    # ~0.6 s on an idle 2-core machine (benchmarks/bench_services.py); the
    # bound here leaves room for a machine busy with other tests.
    assert time.monotonic() - started < 5.0, message
    assert _gone(pid) and worker.status() == "stopped"
    assert "Stopped worker" in message and "in flight" not in message
    assert "[watchdog" in worker.logs(tail=5)


def test_flow_runs_start_through_the_fast_launcher(worker_factory, nap_flow_dir):
    """The run's own process: optional import kept out, start-up objects frozen, collector on.

    The launcher pauses the garbage collector only while Prefect imports; the
    flow's code must run with it back on, like in any Python process.
    """
    from energy_flows.orchestration import run_result

    worker_factory(pool="probe-pool", queues=["probe"])
    run = _run(_deploy(nap_flow_dir, "probe-pool", "probe", flow_name="process_probe"))
    assert wait_for(run.id, timeout=60, progress=False).state == "Completed"
    seen = run_result(run.id).result
    assert seen["collector_on"] is True
    assert seen["frozen_objects"] > 10_000  # Prefect's modules, classes and models
    assert seen["rfc3987_syntax_loaded"] is False


def test_a_pool_made_with_prefects_cli_gets_the_fast_launcher(worker_factory, nap_flow_dir):
    """`prefect work-pool create P --type process` (lesson 03's command), a plain deployment:
    the package's Worker (or ensure_work_pool) gives the pool the fast launch command, and
    the run uses it."""
    import subprocess
    import sys
    from pathlib import Path

    from prefect import flow, get_client

    from energy_flows.orchestration import ensure_work_pool, run_result

    pool = f"cli-{uuid.uuid4().hex[:6]}"
    prefect = str(Path(sys.executable).parent / "prefect")
    made = subprocess.run(
        [prefect, "work-pool", "create", pool, "--type", "process"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    with get_client(sync_client=True) as c:  # Prefect's default so far: no command of ours
        template = c.read_work_pool(pool).base_job_template
    assert not template["variables"]["properties"]["command"].get("default")
    flow.from_source(str(nap_flow_dir), "nap_flow.py:process_probe").deploy(
        name="plain", work_pool_name=pool, work_queue_name="q", print_next_steps=False
    )
    worker_factory(pool=pool, queues=["q"])
    info = ensure_work_pool(pool)
    assert info.flow_run_command == flow_run_command()
    assert flow_run_command() in info._repr_html_()  # shown where the pool is inspected
    run = _run("process-probe/plain")
    assert wait_for(run.id, timeout=60, progress=False).state == "Completed"
    seen = run_result(run.id).result
    assert seen["frozen_objects"] > 10_000 and seen["rfc3987_syntax_loaded"] is False


def test_stopping_a_worker_crashes_its_runs_in_flight(worker_factory, nap_flow_dir):
    worker = worker_factory(pool="flight-pool", queues=["slow"])
    run = _run(_deploy(nap_flow_dir, "flight-pool", "slow"), 120)
    wait_until(lambda: _state(run.id) == "RUNNING", 60, what="the run to be RUNNING")
    message = worker.stop()
    assert "in flight" in message and run.name in message and "Crashed" in message
    assert _state(run.id) == "CRASHED"


def test_worker_needs_a_server(fresh_home):
    with pytest.raises(ServiceError, match=r"Start the server first"):
        Worker(quiet=True).start()


def test_server_death_stops_its_workers(fresh_home):
    server = PrefectServer(quiet=True).start()
    worker = Worker(pool="p", queues=["q"], quiet=True).start()
    worker_pid = worker.pid
    os.kill(server.pid, signal.SIGKILL)
    # The worker's watchdog watches the server: it stops the worker within seconds.
    wait_until(lambda: _gone(worker_pid), 15, what="the orphaned worker to stop")
    assert worker.status() == "stopped"
    assert control.running(fresh_home).empty
    # Its watchdog says why, once it has stopped the worker's leftovers (a moment later).
    said = lambda: "stopped (dependency-gone" in worker.logs(tail=5)  # noqa: E731
    wait_until(said, 10, what="the watchdog's last word", missing=lambda: worker.logs(tail=5))


def test_basic_auth_server_and_worker(fresh_home, monkeypatch):
    """A server exposed beyond loopback must have auth: with it on, the package still works.

    The server refuses API calls without the password; the package's own HTTP
    calls (worker online check, queue creation) send ``PREFECT_API_AUTH_STRING``
    like Prefect's client does.
    """
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "teacher:s3cret")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "teacher:s3cret")
    server = PrefectServer(quiet=True).start()
    try:
        pools = f"{server.api_url}/work_pools/filter"
        assert api.call("POST", pools, {}) == []  # with the password
        monkeypatch.delenv("PREFECT_API_AUTH_STRING")
        with pytest.raises(api.ApiError) as refused:
            api.call("POST", pools, {})
        assert refused.value.status == 401
        monkeypatch.setenv("PREFECT_API_AUTH_STRING", "teacher:s3cret")
        worker = Worker(pool="auth-pool", queues=["auth-queue"], quiet=True).start()
        assert worker.status() == "running"
        queues = api.call("POST", f"{server.api_url}/work_pools/auth-pool/queues/filter", {})
        assert "auth-queue" in {q["name"] for q in queues}
    finally:
        server.stop()
