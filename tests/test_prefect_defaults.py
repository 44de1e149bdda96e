"""What the lessons say plain Prefect does where the course changes it, checked on plain Prefect.

Lesson 00's table ("Prefect's default / this course") and the sentences beside
it in lessons 02, 04, 05 and 06 tell a learner what they will see next week,
with Prefect alone. Each test here checks one of those sentences against a
plain ``prefect server start`` and plain ``prefect worker start`` processes:
Prefect's defaults, a ``PREFECT_HOME`` of their own, none of the course's
settings or launchers. (Two things only are set, neither of which changes
what is checked: the UI bundle is copied into the home rather than into
site-packages, and telemetry is off.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from energy_flows.services import api
from energy_flows.services.database import template_path
from energy_flows.services.process import free_port
from energy_flows.waiting import wait_until

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

FLOW = """
import time

from prefect import flow


@flow(name="plain-nap")
def nap(seconds: float = 0.0) -> float:
    time.sleep(seconds)
    return seconds
"""


def plain_env(prefect_home: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """Prefect's defaults: no variable of the course, a home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ENERGY_FLOWS"))}
    env["PREFECT_HOME"] = str(prefect_home)
    env["PREFECT_UI_STATIC_DIRECTORY"] = str(prefect_home / "ui")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["DO_NOT_TRACK"] = "1"
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


def _prefect(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


@dataclass
class PlainPrefect:
    """A plain Prefect server, started with ``--port`` only, and a folder with a flow."""

    home: Path
    port: int
    flows: Path

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def env(self, **extra: str) -> dict[str, str]:
        return plain_env(self.home, self.api_url, **extra)

    def python(self, code: str) -> str:
        """Run ``code`` as a client of this server (a plain process); return its last line."""
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=self.env(),
            cwd=self.flows,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip().splitlines()[-1]

    def deploy(self, pool: str) -> str:
        """The nap flow, deployed to ``pool`` (a process pool, made by `prefect work-pool create`)."""
        subprocess.run(
            _prefect("work-pool", "create", pool, "--type", "process"),
            env=self.env(),
            capture_output=True,
            check=True,
            timeout=120,
        )
        self.python(
            f"""
            from prefect import flow
            flow.from_source({str(self.flows)!r}, "plain_flow.py:nap").deploy(
                name={pool!r}, work_pool_name={pool!r}, print_next_steps=False,
                ignore_warnings=True,
            )
            print("ok")
            """
        )
        return f"plain-nap/{pool}"

    def trigger(self, deployment: str, seconds: float) -> str:
        return self.python(
            f"""
            from prefect.deployments import run_deployment
            run = run_deployment({deployment!r}, parameters={{"seconds": {seconds}}}, timeout=0)
            print(run.id)
            """
        )

    def run(self, run_id: str) -> dict:
        return api.call("GET", f"{self.api_url}/flow_runs/{run_id}")

    def state(self, run_id: str) -> str:
        return str(self.run(run_id)["state"]["name"])

    def worker(self, pool: str) -> subprocess.Popen:
        """A plain `prefect worker start` for ``pool``, in a session of its own."""
        with open(self.home / f"worker-{pool}.log", "ab") as log:
            return subprocess.Popen(
                _prefect("worker", "start", "--pool", pool, "--name", f"plain-{pool}"),
                # Polling every second instead of 10 s only makes the test quicker to pick up.
                env=self.env(PREFECT_WORKER_QUERY_SECONDS="1"),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


def _stop(proc: subprocess.Popen) -> None:
    """Kill ``proc`` and everything it started (the test's own clean-up)."""
    with contextlib.suppress(psutil.Error):
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        for p in tree:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(tree, timeout=10)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainPrefect]:
    root = tmp_path_factory.mktemp("plain-prefect")
    home, flows = root / "prefect", root / "flows"
    home.mkdir()
    flows.mkdir()
    (flows / "plain_flow.py").write_text(FLOW)
    # An empty, migrated database (what a first start would make, minus the wait).
    shutil.copyfile(template_path(), home / "prefect.db")
    port = free_port()
    with open(root / "server.log", "ab") as log:
        server = subprocess.Popen(
            _prefect("server", "start", "--host", "127.0.0.1", "--port", str(port)),
            env=plain_env(home),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: api.healthy(f"http://127.0.0.1:{port}/api"), 120, what="plain server")
        yield PlainPrefect(home, port, flows)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            _stop(server)


def test_a_server_started_with_port_alone_sends_its_ui_to_4200(plain: PlainPrefect) -> None:
    """Lesson 00: `--port` needs PREFECT_SERVER_API_PORT too, or the UI calls the API on 4200."""
    with urllib.request.urlopen(f"http://127.0.0.1:{plain.port}/ui-settings", timeout=10) as r:
        settings = json.load(r)
    assert plain.port != 4200
    assert settings["api_url"] == "http://127.0.0.1:4200/api", settings


def test_the_defaults_the_course_changes(plain: PlainPrefect) -> None:
    """Lesson 00's table, Prefect's column: the values a plain process reads."""
    values = json.loads(
        plain.python(
            """
            import json
            from prefect.settings import get_current_settings
            s = get_current_settings()
            print(json.dumps({
                "late after": s.server.services.late_runs.after_seconds.total_seconds(),
                "late loop": s.server.services.late_runs.loop_seconds,
                "worker polls": s.worker.query_seconds,
                "worker heartbeat": s.worker.heartbeat_seconds,
                "flow heartbeat": s.flows.heartbeat_frequency,
                "persist results": s.results.persist_by_default,
            }))
            """
        )
    )
    assert values == {
        "late after": 15.0,
        "late loop": 5.0,
        "worker polls": 10.0,
        "worker heartbeat": 30.0,
        "flow heartbeat": 180,
        "persist results": False,
    }


def test_a_pool_made_with_prefects_command_has_prefects_run_command(plain: PlainPrefect) -> None:
    """Lesson 00: the course's pools start runs with its launcher; Prefect's with its own."""
    plain.deploy("command-pool")
    pool = api.call("GET", f"{plain.api_url}/work_pools/command-pool")
    command = pool["base_job_template"]["variables"]["properties"]["command"]
    assert not command.get("default"), (
        command
    )  # the worker falls back to `python -m prefect.engine`


def test_a_run_nobody_takes_turns_late_15_seconds_after_its_start(plain: PlainPrefect) -> None:
    """Lessons 00 and 04: Late after 15 s with Prefect's defaults (5 s in the course).

    Judged by the server's own clock: the time of the Late state against the
    time the run was due.
    """
    from datetime import datetime

    deployment = plain.deploy("late-pool")
    run_id = plain.trigger(deployment, 0)
    wait_until(lambda: plain.state(run_id) == "Late", 60, what="the run to turn Late")
    run = plain.run(run_id)
    late_at = datetime.fromisoformat(run["state"]["timestamp"])
    due = datetime.fromisoformat(run["expected_start_time"])
    assert (late_at - due).total_seconds() >= 15, (late_at, due)


def _running_with_process(plain: PlainPrefect, run_id: str, worker: subprocess.Popen) -> int:
    """Wait until the run is Running; return the pid of its process (the worker's child)."""
    wait_until(lambda: plain.state(run_id) == "Running", 90, what="the run to be Running")
    children = psutil.Process(worker.pid).children(recursive=True)
    assert children, "the worker started no process for the run"
    return children[-1].pid


def _logged(plain: PlainPrefect, run_id: str, text: str) -> bool:
    """Whether the run has sent a log line containing ``text`` to the server."""
    body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
    return any(
        text in line["message"] for line in api.call("POST", f"{plain.api_url}/logs/filter", body)
    )


def test_a_plain_worker_stopped_with_ctrl_c_leaves_its_run_running(plain: PlainPrefect) -> None:
    """Lessons 00 and 05: without the course's watchdog, the run stays Running in the API."""
    deployment = plain.deploy("sigint-pool")
    worker = plain.worker("sigint-pool")
    try:
        # A nap longer than every wait below: the run cannot end Completed meanwhile.
        run_id = plain.trigger(deployment, 600)
        child = _running_with_process(plain, run_id, worker)
        worker.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
        worker.wait(180)  # a plain worker's shutdown takes a while on a busy machine
        wait_until(lambda: not psutil.pid_exists(child), 30, what="the run's process to end")
        time.sleep(5)
        assert plain.state(run_id) == "Running"
    finally:
        _stop(worker)
        with contextlib.suppress(psutil.Error, NameError):
            psutil.Process(child).kill()


def test_a_plain_worker_killed_leaves_its_run_to_finish_on_its_own(plain: PlainPrefect) -> None:
    """Lesson 06: kill -9 of the worker; the run's process lives on and reports Completed."""
    deployment = plain.deploy("kill-pool")
    worker = plain.worker("kill-pool")
    try:
        run_id = plain.trigger(deployment, 4)
        child = _running_with_process(plain, run_id, worker)
        # The run's console is a pipe to the worker: a run that writes to it after the kill
        # ends Crashed ("Execution was aborted by Python system exit call"; docs/prefect-facts.md).
        # Kill once its start-up lines are out; the nap writes nothing until it has finished.
        wait_until(lambda: _logged(plain, run_id, "Beginning flow run"), 60, what="its first log")
        time.sleep(1)
        os.kill(worker.pid, signal.SIGKILL)  # `kill -9 <pid>`: the worker alone
        worker.wait(10)
        assert psutil.pid_exists(child)
        wait_until(lambda: plain.state(run_id) == "Completed", 60, what="the run to complete")
        # docs/architecture.md: a worker names a run Submitting before it starts its process,
        # so a run still named Pending has not got that far (recovery.crash_orphans).
        history = api.call("GET", f"{plain.api_url}/flow_run_states/?flow_run_id={run_id}")
        names = [state["name"] for state in sorted(history, key=lambda s: s["timestamp"])]
        assert names[names.index("Pending") :][:3] == ["Pending", "Submitting", "Running"], names
    finally:
        _stop(worker)
        with contextlib.suppress(psutil.Error, NameError):
            psutil.Process(child).kill()


def test_results_are_not_kept_unless_asked_for(plain: PlainPrefect) -> None:
    """Lesson 02: a worker's run of a flow without persist_result leaves no result to read."""
    deployment = plain.deploy("result-pool")
    worker = plain.worker("result-pool")
    try:
        run_id = plain.trigger(deployment, 0)
        wait_until(lambda: plain.state(run_id) == "Completed", 90, what="the run to complete")
    finally:
        _stop(worker)
    outcome = plain.python(
        f"""
        import uuid
        from prefect import get_client
        from prefect.exceptions import MissingResult
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(uuid.UUID({run_id!r})).state
        try:
            state.result(_sync=True)
            print("read")
        except MissingResult:
            print("MissingResult")
        """
    )
    assert outcome == "MissingResult"
    assert uuid.UUID(run_id)
