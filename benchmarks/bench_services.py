"""Classroom services vs plain Prefect, measured side by side in one run.

    .venv/bin/python benchmarks/bench_services.py [--repeat 3]

Measures (medians of ``--repeat`` runs, each side in turn):

* server start to healthy, fresh home and existing home:
  ``PrefectServer().start()`` vs plain ``prefect server start``; a fresh home
  once with the database template ready (the usual case) and once without;
* reuse: a second ``PrefectServer().start()`` and a second ``energy-flows up``;
* ``run_deployment`` to COMPLETED for a trivial flow: through ``Worker``
  vs a plain ``prefect worker start --pool plain --type process`` (defaults);
* time to stop an idle worker;
* peak RSS of server + worker + one flow run.

Targets on a 2-core machine: existing-home start <= 0.6 x plain, pick-up
<= 0.35 x plain, worker stop < 2 s, reuse < 0.5 s, peak RSS < 600 MB.
Timings on a shared machine vary by ~30 %: look at the ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# A kernel imports Prefect right after its server answers (launch.prepare_kernel);
# import it here first, so the start times below measure the server alone, as
# they do on the plain side.
import prefect  # noqa: E402, F401

from energy_flows.orchestration import flow_run_command  # noqa: E402
from energy_flows.services import api, database  # noqa: E402
from energy_flows.services.server import PrefectServer, free_port  # noqa: E402
from energy_flows.services.worker import Worker  # noqa: E402

PREFECT = str(Path(sys.executable).parent / "prefect")


def wait_for(condition, timeout: float = 120, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark step timed out")


def plain_env(prefect_home: Path, api_url: str | None = None) -> dict[str, str]:
    """Prefect's defaults: only the home (and the API URL for clients) set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ENERGY_FLOWS"))}
    env["PREFECT_HOME"] = str(prefect_home)
    # Keep the plain server from rewriting the UI bundle inside site-packages,
    # which other processes on this machine share.
    env["PREFECT_UI_STATIC_DIRECTORY"] = str(prefect_home / "ui")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def plain_server_start(prefect_home: Path) -> float:
    port = free_port()
    log = open(prefect_home.parent / "plain-server.log", "ab")
    started = time.monotonic()
    proc = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-prompt"],
        env=plain_env(prefect_home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: api.healthy(f"http://127.0.0.1:{port}/api"))
        return time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def our_server_start(home: Path) -> tuple[float, PrefectServer]:
    started = time.monotonic()
    server = PrefectServer(home=home, quiet=True).start()
    return time.monotonic() - started, server


def run_to_completed(api_url: str, deployment: str) -> float:
    from prefect.deployments import run_deployment

    started = time.monotonic()
    run = run_deployment(deployment, timeout=0)

    def done():
        state = api.call("GET", f"{api_url}/flow_runs/{run.id}")["state"]["type"]
        if state in ("FAILED", "CRASHED", "CANCELLED"):
            raise RuntimeError(f"run ended {state}")
        return state == "COMPLETED"

    wait_for(done, interval=0.05)
    return time.monotonic() - started


def deploy(pool: str, name: str, command: str | None) -> str:
    from prefect import flow

    job_variables = {"command": command} if command else {}
    flow.from_source(str(HERE), "trivial_flow.py:noop").deploy(
        name=name, work_pool_name=pool, job_variables=job_variables, print_next_steps=False
    )
    return f"noop/{name}"


def tree_rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in (proc, *proc.children(recursive=True)):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ef-bench-"))
    results: list[tuple[str, float, float | None, str]] = []
    samples: dict[str, tuple[list[float], list[float]]] = {}
    os.environ["ENERGY_FLOWS_QUIET"] = "1"
    try:
        # -- server start: fresh home --------------------------------------
        plain_home = root / "plain" / "prefect"
        plain_home.mkdir(parents=True)
        plain_fresh = plain_server_start(plain_home)
        # The first home on a machine builds the database template (make setup
        # does that, so learners don't); every later new home copies it.
        cache = os.environ.get("ENERGY_FLOWS_CACHE")
        os.environ["ENERGY_FLOWS_CACHE"] = str(root / "cache")
        try:
            ours_first, server = our_server_start(root / "first")
            server.stop()
        finally:
            os.environ.pop("ENERGY_FLOWS_CACHE")
            if cache is not None:
                os.environ["ENERGY_FLOWS_CACHE"] = cache
        database.seed_home(root / "warm-up")  # the user's template, built if missing
        ours_fresh, server = our_server_start(root / "ours")
        server.stop()
        results.append(("server start, fresh home (s)", ours_fresh, plain_fresh, ""))
        results.append(
            ("server start, fresh home, no template yet (s)", ours_first, plain_fresh, "")
        )

        # -- server start: existing home -------------------------------------
        plain_times, our_times = [], []
        for _ in range(args.repeat):
            plain_times.append(plain_server_start(plain_home))
            seconds, server = our_server_start(root / "ours")
            our_times.append(seconds)
            server.stop()
        samples["server start, existing home"] = (our_times, plain_times)
        results.append(
            (
                "server start, existing home (s)",
                statistics.median(our_times),
                statistics.median(plain_times),
                "target <= 0.6",
            )
        )

        # -- reuse -------------------------------------------------------------
        _, server = our_server_start(root / "ours")
        started = time.monotonic()
        PrefectServer(home=root / "ours", quiet=True).start()
        results.append(("reuse: PrefectServer().start() (s)", time.monotonic() - started, None,
                        "target < 0.5"))  # fmt: skip
        env = dict(os.environ, ENERGY_FLOWS_HOME=str(root / "ours"))
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "energy_flows.cli", "up"], env=env,
                       capture_output=True, check=True)  # fmt: skip
        results.append(("reuse: `energy-flows up` incl. interpreter (s)",
                        time.monotonic() - started, None, "target < 0.5"))  # fmt: skip

        # -- pick-up latency: run_deployment to COMPLETED ------------------------
        worker = Worker(pool="ours", queues=["default"], home=root / "ours", quiet=True).start()
        plain_log = open(root / "plain-worker.log", "ab")
        plain_worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "plain", "--type", "process"],
            env=plain_env(root / "plain-worker-home", server.api_url),
            stdout=plain_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(lambda: _pool_online(server.api_url, "plain"))
            ours_dep = deploy("ours", "ours", flow_run_command())
            plain_dep = deploy("plain", "plain", None)
            run_to_completed(server.api_url, ours_dep)  # warm both once
            run_to_completed(server.api_url, plain_dep)
            ours_runs, plain_runs, peak = [], [], 0
            for _ in range(args.repeat):
                plain_runs.append(run_to_completed(server.api_url, plain_dep))
                stop = threading.Event()
                peaks = [0]

                def sample(stop=stop, peaks=peaks):
                    while not stop.is_set():
                        peaks[0] = max(peaks[0], tree_rss([server.pid, worker.pid]))
                        time.sleep(0.05)

                sampler = threading.Thread(target=sample)
                sampler.start()
                ours_runs.append(run_to_completed(server.api_url, ours_dep))
                stop.set()
                sampler.join()
                peak = max(peak, peaks[0])
            samples["run_deployment to COMPLETED"] = (ours_runs, plain_runs)
            results.append(
                (
                    "run_deployment to COMPLETED (s)",
                    statistics.median(ours_runs),
                    statistics.median(plain_runs),
                    "target <= 0.35",
                )
            )
        finally:
            plain_worker.terminate()
            try:
                plain_worker.wait(15)
            except subprocess.TimeoutExpired:
                plain_worker.kill()
            plain_log.close()

        started = time.monotonic()
        worker.stop()
        results.append(("worker stop, idle (s)", time.monotonic() - started, None, "target < 2"))
        results.append(("peak RSS server+worker+run (MB)", peak / 2**20, None, "target < 600"))
        server.stop()
    finally:
        from energy_flows.services.control import stop_all

        stop_all(root / "ours", quiet=True)
        shutil.rmtree(root, ignore_errors=True)

    print(f"\n{'measure':<48} {'energy-flows':>12} {'plain':>8} {'ratio':>6}  note")
    for name, ours, plain, note in results:
        ratio = f"{ours / plain:.2f}" if plain else ""
        plain_text = f"{plain:.2f}" if plain is not None else ""
        print(f"{name:<48} {ours:>12.2f} {plain_text:>8} {ratio:>6}  {note}")
    for name, (ours_list, plain_list) in samples.items():
        ours_text = ", ".join(f"{x:.2f}" for x in ours_list)
        plain_text = ", ".join(f"{x:.2f}" for x in plain_list)
        print(f"samples, {name}: energy-flows [{ours_text}]  plain [{plain_text}]")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


def _pool_online(api_url: str, pool: str) -> bool:
    try:
        workers = api.call("POST", f"{api_url}/work_pools/{pool}/workers/filter", {})
    except (OSError, api.ApiError):
        return False
    return any(w.get("status") == "ONLINE" for w in workers or [])


if __name__ == "__main__":
    sys.exit(main())
