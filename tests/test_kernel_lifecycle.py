"""Real Jupyter kernels start services, then end every way a learner's kernel can end.

Shutdown, restart and SIGKILL must take every process the package started
with them (within a few seconds); the interrupt button must not.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from energy_flows.services import api, control, registry
from energy_flows.waiting import wait_until
from tests.conftest import started_kernel

jupyter_client = pytest.importorskip("jupyter_client")

pytestmark = [pytest.mark.server, pytest.mark.timeout(240)]

#: A process the package started must be gone this soon after its kernel.
GONE_WITHIN = 5.0

START_SERVER = """
import json, os
from energy_flows import PrefectServer
server = PrefectServer(quiet=True).start()
print(json.dumps({"kernel": os.getpid(), "pids": [server.pid, server.record.watchdog_pid]}))
"""

START_WORKER = """
from energy_flows import Worker
worker = Worker(pool="kernel-pool", queues=["kernel-queue"], quiet=True).start()
print(json.dumps({"pids": [worker.pid, worker.record.watchdog_pid]}))
"""

START_SLEEPER = """
import json, os, sys
from energy_flows.services import process
from energy_flows.settings import classroom_env, ensure_home
home = ensure_home()
s = process.spawn([sys.executable, "-c", "import time; time.sleep(120)"], classroom_env(home),
                  home / "logs" / "sleeper.log")
print(json.dumps({"kernel": os.getpid(), "pids": [s.pid, s.watchdog_pid]}))
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _assert_all_gone(pids: list[int]) -> float:
    started = time.monotonic()
    wait_until(
        lambda: all(_gone(p) for p in pids),
        GONE_WITHIN,
        what=f"the package's processes {pids} to end with their kernel",
        missing=lambda: "still alive: " + ", ".join(str(p) for p in pids if not _gone(p)),
    )
    return time.monotonic() - started


def _run(client, code: str, timeout: float = 120) -> dict:
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = client.execute_interactive(code, timeout=timeout, output_hook=hook)
    text = "".join(out)
    assert reply["content"]["status"] == "ok", text
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[tuple]:
    """A real ipykernel with its own ENERGY_FLOWS_HOME; cleaned up whatever the test did."""
    with started_kernel(tmp_path) as (manager, client, home):
        yield manager, client, home


def test_shutdown_stops_server_and_worker(kernel):
    manager, client, home = kernel
    server = _run(client, START_SERVER)
    worker = _run(client, START_WORKER)
    pids = server["pids"] + worker["pids"]
    assert not any(_gone(p) for p in pids)
    manager.shutdown_kernel(now=False)
    _assert_all_gone(pids)
    assert control.running(home).empty


def test_interrupt_keeps_the_server_then_sigkill_stops_it(kernel):
    manager, client, home = kernel
    info = _run(client, START_SERVER)
    api_url = registry.server_record(home).api_url
    msg_id = client.execute("import time; time.sleep(60)")
    time.sleep(1.0)
    manager.interrupt_kernel()
    reply = client.get_shell_msg(timeout=20)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    time.sleep(1.0)
    assert not any(_gone(p) for p in info["pids"]), "the interrupt button stopped the server"
    assert api.healthy(api_url)
    assert _run(client, "print(json.dumps(server.status()))") == "running"

    os.kill(info["kernel"], signal.SIGKILL)
    _assert_all_gone(info["pids"])
    assert registry.live_server(home) is None


def test_restart_stops_what_the_old_kernel_started(kernel):
    """The learner's most common "start over": Kernel > Restart, with a server and a worker."""
    manager, client, home = kernel
    server = _run(client, START_SERVER)
    worker = _run(client, START_WORKER)
    manager.restart_kernel(now=False)
    _assert_all_gone(server["pids"] + worker["pids"])
    client.wait_for_ready(timeout=60)
    assert _run(client, "import os, json; print(json.dumps(os.getpid()))") != server["kernel"]
    assert control.running(home).empty


def test_sigkill_stops_a_spawned_child(kernel):
    _manager, client, _home = kernel
    info = _run(client, START_SLEEPER)
    os.kill(info["kernel"], signal.SIGKILL)
    _assert_all_gone(info["pids"])


#: Lets a kernel import the tests' small flows.
TESTS_DIR = str(Path(__file__).resolve().parent)

RUNS_IN_FLIGHT = """
import json, sys, time
from energy_flows import PrefectServer, Worker, ensure_work_pool, ensure_work_queue, trigger
from energy_flows.orchestration import deploy, read_run
from energy_flows.orchestration import flow_run_command
from flows_for_tests.nap import nap
server = PrefectServer(quiet=True).start()
ensure_work_pool("restart-pool")
ensure_work_queue("q", pool="restart-pool", concurrency_limit=3)
info = deploy(nap, "restart-nap", work_pool="restart-pool", work_queue="q",
              job_variables={"command": flow_run_command()})
worker = Worker("restart-pool", ["q"], name="agent-1", quiet=True).start()
runs = [trigger(info.full_name, parameters={"seconds": 300}) for _ in range(3)]
while any(read_run(r).state not in ("Pending", "Running") for r in runs):
    time.sleep(0.2)
print(json.dumps({"runs": [r.id for r in runs]}))
"""

AFTER_RESTART = """
import json, sys, uuid
from prefect import get_client
from energy_flows import PrefectServer, Worker, trigger, wait_for
server = PrefectServer(quiet=True).start()
with get_client(sync_client=True) as client:
    old = [client.read_flow_run(uuid.UUID(i)).state for i in OLD_RUNS]
Worker("restart-pool", ["q"], name="agent-1", quiet=True).start()
fresh = wait_for([trigger("nap/restart-nap", parameters={"seconds": 0}) for _ in range(3)],
                 timeout=120)
print(json.dumps({
    "old": [s.name for s in old], "messages": [s.message for s in old],
    "crashed_at": [s.timestamp.timestamp() for s in old], "new": [r.state for r in fresh],
}))
"""


@pytest.mark.timeout(420)
def test_restart_with_runs_in_flight_leaves_no_zombie(kernel):
    """Lesson 05's trap: Restart Kernel while a worker's runs hold the queue's limit of 3.

    The runs end Crashed within 10 s, saying the kernel ended, and the same
    cells run again in the new kernel: the queue is not blocked.
    """
    manager, client, _home = kernel
    path_line = f"import sys; sys.path.insert(0, {TESTS_DIR!r})\n"
    before = _run(client, path_line + RUNS_IN_FLIGHT, timeout=240)
    restarted = time.time()
    manager.restart_kernel(now=False)
    client.wait_for_ready(timeout=60)
    old = f"OLD_RUNS = {before['runs']!r}\n"
    after = _run(client, path_line + old + AFTER_RESTART, timeout=240)
    assert after["old"] == ["Crashed"] * 3, after
    assert all(
        "the notebook kernel (or program) that started it ended" in m for m in after["messages"]
    )
    assert all(t - restarted < 10 for t in after["crashed_at"]), after["crashed_at"]
    assert after["new"] == ["Completed"] * 3


#: Lesson 07's batch on Dask, big enough to be running when the kernel is restarted.
DASK_BATCH = """
from energy_flows.flows import energy_usage_batch
from energy_flows.services.cluster import dask_runner
energy_usage_batch.with_options(task_runner=dask_runner(n_workers=2))(n_meters=100)
"""

AFTER_DASK_RESTART = """
import json
from prefect import get_client
from energy_flows import PrefectServer
server = PrefectServer(quiet=True).start()
with get_client(sync_client=True) as c:
    runs = c.read_flow_runs()
print(json.dumps([{"name": r.name, "state": r.state.name, "message": r.state.message}
                  for r in runs]))
"""


def _dask_workers(kernel_pid: int) -> list[psutil.Process]:
    """The kernel's Dask worker processes (multiprocessing children, not its helper)."""
    try:
        children = psutil.Process(kernel_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "--multiprocessing-fork" in line and "resource_tracker" not in line:
            found.append(child)
    return found


@pytest.mark.timeout(300)
def test_restart_during_a_dask_batch_leaves_no_dask_process(kernel):
    """Lesson 07's Dask batch, then Kernel > Restart while its workers compute.

    The Dask workers are the kernel's children, not processes the package
    records: they end because each watches its parent (``distributed``), and
    the run the kernel was running ends in a final state.
    """
    manager, client, _home = kernel
    info = _run(client, START_SERVER)
    client.execute(DASK_BATCH)  # not waited for: the cell is still running at the restart
    workers = wait_until(
        lambda: w if len(w := _dask_workers(info["kernel"])) >= 2 else None,
        120,
        what="the batch's two Dask workers to start",
    )
    restarted = time.monotonic()
    manager.restart_kernel(now=False)
    wait_until(
        lambda: all(_gone(w.pid) for w in workers) and all(_gone(p) for p in info["pids"]),
        15,
        what="the Dask workers and the server to end with their kernel",
        missing=lambda: (
            "still alive: " + ", ".join(str(w.pid) for w in workers if not _gone(w.pid))
        ),
    )
    print(f"Dask workers gone {time.monotonic() - restarted:.1f} s after the restart")
    client.wait_for_ready(timeout=60)
    # Nothing stuck: the batch's run, Running when its kernel died, is final now. Crashed
    # when the kernel died first (reconciled at the server's start), Failed when the
    # restart's interrupt reached the flow while it could still report (Prefect then
    # records the interrupted step as its error); never Running or Pending.
    runs = _run(client, AFTER_DASK_RESTART)
    assert len(runs) == 1 and runs[0]["state"] in ("Crashed", "Failed"), runs
