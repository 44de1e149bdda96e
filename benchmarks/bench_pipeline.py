"""How long does the energy pipeline take, with and without Prefect?

    python benchmarks/bench_pipeline.py                 # starts a server in a temp home
    python benchmarks/bench_pipeline.py --api-url URL   # uses a server that runs already
    python benchmarks/bench_pipeline.py --core-only     # no Prefect at all

One meter, one year of hourly readings. Prints a small table of medians:

* core: simulate -> validate -> clean -> features -> fit -> forecast -> evaluate,
  plain function calls (the target is under 0.5 s on a 2-core machine);
* flow: the same steps as the ``energy_usage_pipeline`` flow, called in-process
  against a running Prefect server (tasks, states, logs, artifacts, results);
* overhead: flow minus core, and the ratio.

A benchmark, not a test: numbers vary by about 30 % from run to run on a
shared machine; compare configurations side by side in one run.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _median_seconds(call: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def bench_core(repeat: int) -> dict[str, float]:
    from energy_flows.data import simulate_meter
    from energy_flows.forecasting import run_core_pipeline

    def simulate() -> object:
        return simulate_meter("home-001", start="2024-01-01", days=365, seed=42)

    raw = simulate()

    def pipeline() -> object:
        return run_core_pipeline(raw, "home-001", test_days=28, horizon_hours=24)

    def both() -> object:
        return run_core_pipeline(simulate(), "home-001", test_days=28, horizon_hours=24)

    both()  # warm-up: first calls pay pandas' lazy imports
    return {
        "simulate 1 year": _median_seconds(simulate, repeat)[0],
        "validate..evaluate": _median_seconds(pipeline, repeat)[0],
        "core pipeline (simulate..evaluate)": _median_seconds(both, repeat)[0],
    }


def bench_flow(repeat: int, api_url: str | None) -> tuple[dict[str, float], str]:
    server = None
    home = Path(tempfile.mkdtemp(prefix="energy-flows-bench-"))
    if api_url is None:
        from energy_flows.services.server import PrefectServer

        with socket.socket() as probe:  # a free port: 4200 may be another server's
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        start = time.perf_counter()
        server = PrefectServer(home=home, port=port, quiet=True).start()
        where = f"server started for the benchmark in {time.perf_counter() - start:.1f} s"
    else:
        from energy_flows.settings import apply_to_current_process

        apply_to_current_process(home, api_url=api_url)
        where = f"server at {api_url}"
    try:
        from energy_flows.flows import energy_usage_pipeline

        def run() -> object:
            state = energy_usage_pipeline(meter_id="home-001", return_state=True)
            if not state.is_completed():
                raise RuntimeError(f"the benchmark flow run ended {state.name}")
            return state

        first = _median_seconds(run, 1)[0]  # first run registers the flow, imports tasks
        median = _median_seconds(run, repeat)[0]
        from energy_flows.prefect_internals import flush_to_server

        flush_to_server()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return {"flow in-process, first run": first, "flow in-process": median}, where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--api-url", default=None, help="use this running server")
    parser.add_argument("--core-only", action="store_true")
    args = parser.parse_args(argv)

    rows = bench_core(args.repeat)
    note = ""
    if not args.core_only:
        flow_rows, note = bench_flow(args.repeat, args.api_url)
        rows.update(flow_rows)
        core = rows["core pipeline (simulate..evaluate)"]
        rows["overhead of Prefect (flow - core)"] = rows["flow in-process"] - core

    width = max(len(name) for name in rows)
    print(f"one meter, one year hourly; median of {args.repeat} runs")
    print(f"{'step':{width}s}  {'seconds':>8s}")
    print(f"{'-' * width}  {'-' * 8}")
    for name, seconds in rows.items():
        print(f"{name:{width}s}  {seconds:8.3f}")
    if "flow in-process" in rows:
        ratio = rows["flow in-process"] / rows["core pipeline (simulate..evaluate)"]
        print(f"{'flow / core':{width}s}  {ratio:7.1f}x")
        print(note)
    core_ok = rows["core pipeline (simulate..evaluate)"] < 0.5
    print(f"core pipeline under 0.5 s: {'yes' if core_ok else 'NO'}")
    return 0 if core_ok else 1


if __name__ == "__main__":
    sys.exit(main())
