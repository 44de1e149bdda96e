"""A class sharing one server: a password on the server, a classmate's worker joining it.

The instructor's server is started with ``PrefectServer(auth=True)``; a
classmate, in another home and another environment (a terminal with nothing
of the instructor's settings), joins it with ``energy-flows up --server URL
--worker POOL/QUEUE`` and the password in ``$PREFECT_API_AUTH_STRING``. Real
server, real worker, real runs, a real SIGKILL.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from flows_for_tests.nap import nap

from energy_flows import orchestration as orch
from energy_flows import settings
from energy_flows.errors import OrchestrationError
from energy_flows.orchestration import flow_run_command
from energy_flows.services import registry
from energy_flows.services.server import PrefectServer
from energy_flows.services.worker import Worker
from energy_flows.views import runs_with_workers
from energy_flows.waiting import wait_until

pytestmark = pytest.mark.server


def _classmate(home: Path, *args: str, password: str | None) -> subprocess.CompletedProcess:
    """``energy-flows`` as a classmate runs it: their own home, none of our settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ENERGY_FLOWS_"))}
    env["ENERGY_FLOWS_HOME"] = str(home)
    if password is not None:
        env["PREFECT_API_AUTH_STRING"] = password
    return subprocess.run(
        [sys.executable, "-m", "energy_flows.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _status_without_password(url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_classmates_worker_joins_a_server_with_a_password(fresh_home, tmp_path):
    server = PrefectServer(auth=True, quiet=True).start()
    secret = server.auth_string
    assert secret is not None and secret.startswith("class:") and len(secret) > 20
    path = settings.auth_path(fresh_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "the password is readable by its user only"
    # The server refuses whoever has no password; health checks stay open.
    assert _status_without_password(f"{server.api_url}/flows/") == 401
    assert _status_without_password(f"{server.api_url}/health") == 200
    # This kernel sends it (Prefect's client and the package's own calls).
    pool, queue = f"class-{uuid.uuid4().hex[:6]}", "shared"
    orch.ensure_work_pool(pool)
    deployment = orch.deploy(
        nap,
        "nap-shared",
        work_pool=pool,
        work_queue=queue,
        job_variables={"command": flow_run_command()},
    ).full_name

    classmate = tmp_path / "classmate"
    refused = _classmate(
        classmate,
        *("up", "--server", server.api_url, "--worker", f"{pool}/{queue}"),
        password="class:wrong",
    )
    assert refused.returncode != 0
    assert "refused the one given (HTTP 401)" in refused.stderr, refused.stderr
    assert "Nothing was started" in refused.stderr
    assert not registry.worker_records(classmate)
    assert not settings.auth_path(classmate).exists(), "a refused password is not kept"

    joined = _classmate(
        classmate,
        *("up", "--server", server.api_url, "--worker", f"{pool}/{queue}"),
        password=secret,
    )
    assert joined.returncode == 0, joined.stderr
    assert f"polls {pool}/{queue} on {server.api_url}" in joined.stdout
    [worker] = registry.worker_records(classmate)
    assert worker.remote and worker.auth and worker.api_url == server.api_url
    assert secret not in " ".join(worker.argv), "the password is never on a command line"
    typo = _classmate(
        classmate,
        *("up", "--server", server.api_url, "--worker", f"{pool}/other"),
        password=secret + "x",
    )
    assert typo.returncode != 0 and "HTTP 401" in typo.stderr
    assert settings.auth_string(classmate) == secret, "a wrong password loses the right one"

    run = orch.wait_for(orch.trigger(deployment, parameters={"seconds": 0}), timeout=90)
    assert run.state == "Completed"
    table = runs_with_workers(orch.queue_runs(queue, pool, states=["Completed"]))
    assert list(table["worker"]) == [worker.name], "the classmate's worker ran it"

    # kill -9 of the classmate's worker mid-run: the run still ends Crashed, on our server.
    in_flight = orch.trigger(deployment, parameters={"seconds": 120})
    wait_until(
        lambda: orch.read_run(in_flight).state == "Running", 60, what="the run to be Running"
    )
    os.kill(worker.pid, signal.SIGKILL)
    wait_until(
        lambda: orch.read_run(in_flight).state == "Crashed",
        15,
        what="the killed worker's run to be Crashed",
    )

    down = _classmate(classmate, "down", password=None)
    assert down.returncode == 0, down.stderr
    assert not [r for r in registry.worker_records(classmate) if r.alive()]
    server.stop()


def test_a_bad_password_or_address_says_what_to_change(fresh_home):
    for bad in ("no-colon", ":nouser", "user:", "user:with space", 42):
        with pytest.raises(OrchestrationError, match="user and password joined by a colon"):
            PrefectServer(auth=bad)  # type: ignore[arg-type]
    with pytest.raises(OrchestrationError, match="not shown, in case it is a real password"):
        Worker(server="http://127.0.0.1:4200/api", auth="user:pass word")
    with pytest.raises(OrchestrationError, match="auth goes with server="):
        Worker(auth="class:secret")
    with pytest.raises(OrchestrationError, match="is the API address of a Prefect server"):
        Worker(server="127.0.0.1:4200")
    assert not settings.auth_path(fresh_home).exists(), "nothing was written"
