"""The batch flow on Prefect's default task runner and on Dask, side by side.

    python benchmarks/bench_dask.py                          # 100 meters, starts a server
    python benchmarks/bench_dask.py --meters 10 --days 49    # a quick check
    python benchmarks/bench_dask.py --api-url URL            # uses a server that runs already
    python benchmarks/bench_dask.py --workers 2 --memory-limit 768MiB

Runs ``energy_usage_batch`` for ``--meters`` meters, once on Prefect's default
task runner (threads of this process) and once on the package's Dask runner
(``services/cluster.py``: a LocalCluster of ``--workers`` processes, created
and closed by the run). Prints, for each: wall time, seconds per meter, and
the peak memory of this process and all its children (psutil, sampled every
0.1 s: the Dask workers are children), then the ratios Dask / threads. It
also checks that both gave the same rows.

A benchmark, not a test: numbers vary by about 30 % from run to run on a
shared machine; compare configurations side by side in one run. On 2 cores,
Dask pays for starting its processes (each imports Prefect and pandas) and
wins back only what the thread pool loses to the GIL.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class PeakMemory:
    """The largest resident memory of this process plus its children, sampled in a thread."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self._me = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_bytes = 0
        self.peak_children = 0

    def sample(self) -> int:
        import psutil

        total = 0
        procs = [self._me, *self._me.children(recursive=True)]
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        self.peak_children = max(self.peak_children, len(procs) - 1)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self.sample())
            time.sleep(self._interval)

    def __enter__(self) -> PeakMemory:
        self.peak_bytes = self.sample()
        self._thread.start()
        return self

    def __exit__(self, *args: object) -> None:
        self._stop.set()
        self._thread.join()


def _measure(run: Callable[[], Any]) -> tuple[float, float, int, Any]:
    """Seconds, peak MiB (this process and its children), peak child count, and the result."""
    with PeakMemory() as memory:
        start = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - start
    return seconds, memory.peak_bytes / 2**20, memory.peak_children, result


def bench(args: argparse.Namespace) -> tuple[dict[str, tuple[float, float, int]], str]:
    server = None
    home = Path(tempfile.mkdtemp(prefix="energy-flows-bench-"))
    if args.api_url is None:
        from energy_flows.services.process import free_port
        from energy_flows.services.server import PrefectServer

        start = time.perf_counter()
        server = PrefectServer(home=home, port=free_port(), quiet=True).start()
        where = f"server started for the benchmark in {time.perf_counter() - start:.1f} s"
    else:
        from energy_flows.settings import apply_to_current_process

        apply_to_current_process(home, api_url=args.api_url)
        where = f"server at {args.api_url}"
    try:
        import pandas as pd

        from energy_flows.flows import energy_usage_batch
        from energy_flows.services.cluster import dask_runner

        batch = {"n_meters": args.meters, "days": args.days, "test_days": args.test_days}
        on_dask = energy_usage_batch.with_options(
            task_runner=dask_runner(n_workers=args.workers, memory_limit=args.memory_limit)
        )
        rows: dict[str, tuple[float, float, int]] = {}
        # Warm-up: the first run in a process registers the flow and imports the tasks.
        energy_usage_batch(n_meters=1, days=args.days, test_days=args.test_days)
        seconds, mib, children, threads = _measure(lambda: energy_usage_batch(**batch))
        rows["default (threads)"] = (seconds, mib, children)
        seconds, mib, children, dask = _measure(lambda: on_dask(**batch))
        rows[f"dask ({args.workers} processes)"] = (seconds, mib, children)
        pd.testing.assert_frame_equal(threads, dask)
        where += f"; dashboard while it ran: {dask.attrs['dashboard_link']}"

        from energy_flows.prefect_internals import flush_to_server

        flush_to_server()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return rows, where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--test-days", type=int, default=28)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="768MiB")
    parser.add_argument("--api-url", default=None, help="use this running server")
    args = parser.parse_args(argv)

    rows, where = bench(args)
    print(f"{args.meters} meters, {args.days} days hourly each; one run of each runner")
    width = max(len(name) for name in rows)
    print(f"{'task runner':{width}s}  {'seconds':>8s}  {'s/meter':>8s}  {'peak MiB':>8s}  children")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 8}  {'-' * 8}  --------")
    for name, (seconds, mib, children) in rows.items():
        print(
            f"{name:{width}s}  {seconds:8.2f}  {seconds / args.meters:8.3f}  {mib:8.0f}  {children:8d}"
        )
    (t_sec, t_mib, _), (d_sec, d_mib, _) = rows.values()
    print(f"{'time: dask / threads':{width}s}  {d_sec / t_sec:7.2f}x")
    print(f"{'peak memory: dask / threads':{width}s}  {d_mib / t_mib:7.2f}x")
    print("same rows on both runners: yes")
    print(where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
