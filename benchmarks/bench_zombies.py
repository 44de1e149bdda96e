"""How long a run of a dead worker the package did not start stays Running.

    .venv/bin/python benchmarks/bench_zombies.py [--repeat 3] [--kill-after 2]

Starts the classroom server in a temporary home, installs the zombie
automation (:func:`energy_flows.orchestration.ensure_zombie_automation`),
then, ``--repeat`` times: starts a plain ``prefect worker start`` (not the
package's ``Worker``: nothing of the package watches it) with the classroom
environment, triggers a run that sleeps for ten minutes, waits until it is
Running and the server has stored its first heartbeat, waits ``--kill-after``
seconds more, SIGKILLs the process groups of the worker and its flow-run
process, and times until the run is Crashed with the automation's message.
Prints each time and the median; leaves nothing running and deletes the home.

A run is found ``within`` seconds (90) after its last heartbeat, plus up to
5 s (how often the server evaluates such automations). The first heartbeat
is sent as the run starts and stored up to 5 s later, so the default kill
comes 2-7 s after it: about 85-95 s. Killed later in the 30 s between two
heartbeats (``--kill-after 20``), a run is found sooner, down to 60 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from energy_flows import settings  # noqa: E402
from energy_flows.services import api  # noqa: E402
from energy_flows.services.server import PrefectServer  # noqa: E402

PREFECT = str(Path(sys.executable).parent / "prefect")
POOL, QUEUE = "outside-pool", "outside"

FLOW_SOURCE = textwrap.dedent(
    """
    import time
    from prefect import flow

    @flow
    def nap(seconds: float = 600.0) -> float:
        time.sleep(seconds)
        return seconds
    """
)


def wait_for(condition, timeout: float, interval: float = 0.25, what: str = "a step"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"benchmark: {what} did not happen within {timeout:g} s")


def run_state(api_url: str, run_id: str) -> dict:
    return api.call("GET", f"{api_url}/flow_runs/{run_id}")["state"]


def heartbeats(api_url: str, run_id: str) -> int:
    """How many heartbeats of the run the server has stored (its persister flushes every 5 s)."""
    body = {
        "filter": {
            "event": {"name": ["prefect.flow-run.heartbeat"]},
            "resource": {"id": [f"prefect.flow-run.{run_id}"]},
        },
        "limit": 1,
    }
    return int(api.call("POST", f"{api_url}/events/filter", body).get("total") or 0)


def pool_online(api_url: str) -> bool:
    try:
        workers = api.call("POST", f"{api_url}/work_pools/{POOL}/workers/filter", {})
    except (OSError, api.ApiError):
        return False
    return any(w.get("status") == "ONLINE" for w in workers or [])


def start_outside_worker(home: Path, api_url: str, log: Path) -> subprocess.Popen:
    """A plain Prefect worker with the classroom environment, in a session of its own."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                PREFECT,
                "worker",
                "start",
                "--pool",
                POOL,
                "--type",
                "process",
                "--work-queue",
                QUEUE,
            ],
            env=settings.classroom_env(home, api_url=api_url),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_tree(proc: subprocess.Popen) -> list[int]:
    """SIGKILL the process groups of ``proc`` and of all its descendants; returns their pids."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    groups = set()
    for p in tree:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(p.pid))
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    for p in tree:
        with contextlib.suppress(psutil.Error):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    psutil.wait_procs(tree, timeout=10)
    return [p.pid for p in tree]


def deploy(flows: Path) -> str:
    """The ten-minute nap as a deployment of the outside pool (created by its worker)."""
    from prefect import flow

    flow.from_source(str(flows), "nap_flow.py:nap").deploy(
        name="zombie",
        work_pool_name=POOL,
        work_queue_name=QUEUE,
        print_next_steps=False,
        ignore_warnings=True,
    )
    return "nap/zombie"


def measure_once(home: Path, api_url: str, flows: Path, kill_after: float) -> float:
    from prefect.deployments import run_deployment

    worker = start_outside_worker(home, api_url, home / "outside-worker.log")
    try:
        wait_for(lambda: pool_online(api_url), 90, what="the outside worker to come online")
        run = run_deployment(deploy(flows), timeout=0)
        run_id = str(run.id)
        wait_for(
            lambda: run_state(api_url, run_id)["type"] == "RUNNING", 90, what="the run to start"
        )
        # The automation arms on the run's first heartbeat (sent as it starts); a run
        # killed before that reached the server would stay Running for good.
        wait_for(lambda: heartbeats(api_url, run_id), 60, what="the run's first heartbeat")
        time.sleep(kill_after)
        pids = kill_tree(worker)
        killed = time.monotonic()
        if len(pids) < 2:
            raise RuntimeError(f"expected the worker and its flow-run process, found {pids}")
        state = run_state(api_url, run_id)
        if state["type"] != "RUNNING":
            raise RuntimeError(f"the run was {state['type']} right after the kill")
        final = wait_for(
            lambda: (s := run_state(api_url, run_id))["type"] != "RUNNING" and s,
            300,
            what="the run to leave RUNNING",
        )
        seconds = time.monotonic() - killed
        from energy_flows.orchestration.zombies import CRASH_MESSAGE

        if final["type"] != "CRASHED" or final.get("message") != CRASH_MESSAGE:
            raise RuntimeError(f"the run ended {final['type']}: {final.get('message')!r}")
        return seconds
    finally:
        kill_tree(worker)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--kill-after",
        type=float,
        default=2.0,
        help="seconds to wait after the server has the run's first heartbeat (default 2)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ef-bench-zombies-"))
    home = root / "home"
    os.environ["ENERGY_FLOWS_QUIET"] = "1"
    times: list[float] = []
    try:
        server = PrefectServer(home=home, quiet=True).start()
        from energy_flows.orchestration import ensure_zombie_automation

        automation = ensure_zombie_automation()
        print(repr(automation))
        flows = root / "flows"
        flows.mkdir()
        (flows / "nap_flow.py").write_text(FLOW_SOURCE)
        for i in range(args.repeat):
            seconds = measure_once(home, server.api_url, flows, args.kill_after)
            times.append(seconds)
            print(f"run {i + 1}: Crashed {seconds:.1f} s after the SIGKILL", flush=True)
    finally:
        from energy_flows.services.control import stop_all

        stop_all(home, quiet=True)
        shutil.rmtree(root, ignore_errors=True)
    heartbeat, within = settings.FLOW_HEARTBEAT_SECONDS, automation.within_seconds
    median = statistics.median(times)
    print(
        f"\nkilled {args.kill_after:g} s after the first heartbeat was stored; "
        f"heartbeat every {heartbeat} s, within {within:g} s: median {median:.1f} s "
        f"(samples {', '.join(f'{t:.1f}' for t in times)}; "
        f"expected {within - heartbeat:g}-{within + 5:g} s)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
