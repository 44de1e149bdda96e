"""A burst of runs: SQLite without and with the burst fix, or SQLite against PostgreSQL, side by side.

    .venv/bin/python benchmarks/bench_burst.py [--runs 100] [--workers 2] [--load] [--repeat 1]
    .venv/bin/python benchmarks/bench_burst.py --sides after postgres --runs 200 --workers 4

Each side starts a ``PrefectServer`` in a fresh temporary home, ``--workers``
``Worker`` processes on one queue, deploys a flow that returns at once, times a
few single runs (what a lesson waits for), then triggers ``--runs`` runs at
once with ``energy_flows.trigger`` (``--trigger-threads`` calls in flight) and
waits for all of them with ``energy_flows.wait_for``. It reports how the runs ended, the wall time, and
what the server and worker logs say about SQLite contention: lines with
``database is locked``, HTTP 503 answers, tracebacks, the server log's size,
and the messages of Crashed runs.

The sides (two of them side by side, ``--sides``):

* ``before``: the classroom environment without :data:`BURST_SETTINGS` (what
  the "Recovery" issue measured: 59/60 Completed, one run Crashed at
  submission on ``503 ... /flow_runs/<id>/labels``, a 10.8 MB server log);
* ``after``: the classroom environment as it is (``energy_flows/settings.py``), on SQLite;
* ``postgres``: the same on PostgreSQL (``PrefectServer(database="postgres")``,
  lesson 07), to compare with ``after``;
* ``prefect-retries``: ``after``, but ``trigger()`` creates each run as it did
  before it queued its creations: every call at once, each refusal retried by
  Prefect's client after 2, 4, 8 ... s (``--sides prefect-retries after``
  compares the two ways of creating a burst's runs).

HTTP 503 answers are counted where they really are: by the server (each
request it refused with 503 because the database was busy, logged as
"Exception in ASGI application" with that cause), and as received by the
``trigger()`` calls of this process (every answer of their HTTP client).

Besides the runs' states and the logs, each side reports the peak memory of
what serves the burst: the server, PostgreSQL (with its backends) and the
workers with their flow-run processes, sampled every half second.

``--load`` keeps one CPU busy with a spinning process during both sides, like
a 2-core laptop with something else running. ``--only after`` runs one side.
Everything started is stopped, also on Ctrl-C or an error. The burst is a
benchmark, not a timed test: timings on a shared machine vary by ~30 %.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from energy_flows import settings  # noqa: E402

#: The entries of ``prefect_settings()`` that answer the burst issue; the
#: ``before`` side leaves them out.
BURST_SETTINGS = (
    "PREFECT_CLIENT_MAX_RETRIES",
    "PREFECT_CLIENT_RETRY_JITTER_FACTOR",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE",
)

POOL = "burst-pool"
QUEUE = "burst"

FLOW_SOURCE = textwrap.dedent(
    """
    from prefect import flow

    @flow
    def nap(seconds: float = 0.0) -> float:
        import time
        time.sleep(seconds)
        return seconds
    """
)

LOCKED = re.compile(r"database is locked", re.IGNORECASE)
#: An HTTP 503 as a Prefect client reports it in a worker's log (not "12:00:01.503").
HTTP_503 = re.compile(r"503 Service Unavailable|status code 503\b|HTTP 503\b")
#: The first line of a record in Prefect's logs: "21:00:47.443 | ERROR   | ...".
RECORD = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3} \| ")
#: What Prefect's server answers 503 for (``is_client_retryable_exception``): the shortened
#: busy-SQLite line (``services/serverlog.py``) or one of these exceptions in the traceback.
RETRYABLE = re.compile(
    r"SQLite was busy|DBAPIError|OperationalError|QueryCanceledError|"
    r"ConnectionDoesNotExistError|CannotConnectNowError|InvalidRequestError|"
    r"DetachedInstanceError"
)


class _Stop(Exception):
    """SIGTERM: stop like on Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Stop


def classroom_without_burst_fix():
    """``prefect_settings`` of the classroom, minus :data:`BURST_SETTINGS`."""
    original = settings.prefect_settings

    def without(*args: Any, **kwargs: Any) -> dict[str, str]:
        env = original(*args, **kwargs)
        for key in BURST_SETTINGS:
            env.pop(key, None)
        return env

    return original, without


def _use_settings(side: str) -> None:
    """Make this process and every process it starts use one side's settings."""
    for key in BURST_SETTINGS:  # a previous side's server put them into os.environ
        os.environ.pop(key, None)
    settings.prefect_settings = _SIDES[side]
    if "prefect.context" in sys.modules:
        import prefect.context

        prefect.context.refresh_global_settings_context()


_ORIGINAL, _WITHOUT = classroom_without_burst_fix()
_SIDES = {
    "before": _WITHOUT,
    "after": _ORIGINAL,
    "postgres": _ORIGINAL,
    "prefect-retries": _ORIGINAL,
}
#: The database each side's server runs on.
_DATABASE = {
    "before": "sqlite",
    "after": "sqlite",
    "postgres": "postgres",
    "prefect-retries": "sqlite",
}


class PeakMemory:
    """Samples, in a thread, the memory of a home's services and all their children.

    ``peak_mb`` is the largest sum of resident memory seen (MB): the server,
    PostgreSQL and its backends, the workers and their flow-run processes.
    """

    def __init__(self, home: Path, interval: float = 0.5) -> None:
        import threading

        self.home, self.interval, self.peak_mb = home, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        from energy_flows.services import registry

        while not self._stop.wait(self.interval):
            total = 0
            for rec in registry.live_records(self.home):
                try:
                    top = psutil.Process(rec.pid)
                    for proc in (top, *top.children(recursive=True)):
                        total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_mb = max(self.peak_mb, total / 1e6)


def count_lines(path: Path) -> dict[str, int]:
    """Lines of a log: busy database, HTTP 503 mentions, tracebacks, size; and answered 503s.

    ``answered_503`` counts the server's "Exception in ASGI application" records
    whose cause Prefect answers with 503 (see :data:`RETRYABLE`): in a server's
    log, one per request it refused that way.
    """
    counts = {"locked": 0, "http_503": 0, "answered_503": 0, "tracebacks": 0, "bytes": 0}
    if not path.exists():
        return counts
    counts["bytes"] = path.stat().st_size
    record: list[str] = []

    def close(lines: list[str]) -> None:
        if lines and "Exception in ASGI application" in lines[0]:
            if RETRYABLE.search("".join(lines)):
                counts["answered_503"] += 1

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if LOCKED.search(line):
                counts["locked"] += 1
            if HTTP_503.search(line):
                counts["http_503"] += 1
            if line.startswith("Traceback (most recent call last)"):
                counts["tracebacks"] += 1
            if RECORD.match(line):
                close(record)
                record = []
            record.append(line)
    close(record)
    return counts


class ClientAnswers:
    """Counts the HTTP status codes the clients of this process receive (``trigger()``'s).

    Wraps ``httpx.HTTPTransport.handle_request`` while it is active, below every
    retry: each answer is counted, also the ones a client asks again for without
    a word (Prefect's, and the package's busy-server retries).
    """

    def __init__(self) -> None:
        import threading

        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> ClientAnswers:
        import httpx

        self._original = httpx.HTTPTransport.handle_request
        original, statuses, lock = self._original, self.statuses, self._lock

        def handle_request(transport: Any, request: Any) -> Any:
            response = original(transport, request)
            with lock:
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            return response

        httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        import httpx

        httpx.HTTPTransport.handle_request = self._original  # type: ignore[method-assign]


def creation_with_prefect_retries(side: str) -> None:
    """``prefect-retries``: ``trigger()`` creates runs as before: at once, through Prefect's retries.

    That is, without the lock that queues the creations of one process and with a
    plain client, whose busy answers Prefect retries after 2, 4, 8 ... s.
    """
    from energy_flows.orchestration import common, runs

    if not hasattr(runs, "_queued"):
        runs._queued = (runs._create_run, runs.client)  # type: ignore[attr-defined]

    def plain_create(c: Any, deployment_id: Any, parameters: Any, name: Any, state: Any) -> Any:
        return c.create_flow_run_from_deployment(
            deployment_id, parameters=parameters, name=name, state=state
        )

    def plain_client(**_: Any) -> Any:
        return common.client()

    if side == "prefect-retries":
        runs._create_run, runs.client = plain_create, plain_client  # type: ignore[assignment]
    else:
        runs._create_run, runs.client = runs._queued  # type: ignore[attr-defined]


def deploy_nap(folder: Path) -> str:
    from prefect import flow

    from energy_flows.orchestration import flow_run_command

    (folder / "nap_flow.py").write_text(FLOW_SOURCE)
    flow.from_source(str(folder), "nap_flow.py:nap").deploy(
        name="burst",
        work_pool_name=POOL,
        work_queue_name=QUEUE,
        job_variables={"command": flow_run_command()},
        print_next_steps=False,
    )
    return "nap/burst"


def crash_messages(run_ids: list[str]) -> dict[str, int]:
    from prefect import get_client

    messages: dict[str, int] = {}
    with get_client(sync_client=True) as client:
        for run_id in run_ids:
            state = client.read_flow_run(run_id).state
            text = (state.message or "").strip() if state else ""
            text = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", text)[:240]
            text = f"{state.name if state else '?'}: {text}"
            messages[text] = messages.get(text, 0) + 1
    return messages


def one_side(
    side: str,
    root: Path,
    runs: int,
    workers: int,
    timeout: float,
    trigger_threads: int,
    worker_limit: int | None = None,
) -> dict[str, Any]:
    from energy_flows import PrefectServer, Worker

    _use_settings(side)
    creation_with_prefect_retries(side)
    home = root / side
    result: dict[str, Any] = {"side": side, "home": str(home)}
    server = PrefectServer(home=home, quiet=True, database=_DATABASE[side])
    try:
        server.start()
        for i in range(workers):
            Worker(
                POOL, [QUEUE], name=f"burst-{i + 1}", limit=worker_limit, home=home, quiet=True
            ).start()
        flows = root / f"{side}-flows"
        flows.mkdir()
        deployment = deploy_nap(flows)
        result["single_run_s"] = single_run_seconds(deployment)
        result |= burst(deployment, runs, trigger_threads, timeout, server.api_url, home)
    finally:
        server.stop()
    logs = home / "logs"
    result["server_log"] = count_lines(logs / "server.log")
    worker_totals = {"locked": 0, "http_503": 0, "answered_503": 0, "tracebacks": 0, "bytes": 0}
    for path in logs.glob("worker-*.log"):
        for key, value in count_lines(path).items():
            worker_totals[key] += value
    result["worker_logs"] = worker_totals
    return result


def single_run_seconds(deployment: str) -> float:
    """What a lesson waits for: one run, picked up and completed (median of three)."""
    from energy_flows import trigger, wait_for

    singles = []
    for _ in range(3):
        started = time.monotonic()
        run = trigger(deployment, parameters={"seconds": 0})
        done = wait_for(run, timeout=120, progress=False)
        singles.append(time.monotonic() - started)
        if done.state != "Completed":
            raise RuntimeError(f"a single run ended {done.state}")
    return statistics.median(singles)


def burst(
    deployment: str, runs: int, threads: int, timeout: float, api_url: str, home: Path
) -> dict[str, Any]:
    """Trigger ``runs`` runs at once from ``threads`` threads, wait for them, say how they ended."""
    from energy_flows import trigger, wait_for
    from energy_flows.errors import OrchestrationError, WaitTimeout
    from energy_flows.orchestration.runs import read_run
    from energy_flows.services import api

    def one(i: int) -> Any:
        try:
            return trigger(deployment, parameters={"seconds": 0}, flow_run_name=f"b{i:03d}")
        except OrchestrationError as exc:  # e.g. 503 on every retry: count it, go on
            return exc

    result: dict[str, Any] = {}
    started = time.monotonic()
    with PeakMemory(home) as memory:
        with ClientAnswers() as http, ThreadPoolExecutor(threads) as pool:
            answers = list(pool.map(one, range(runs)))  # at once, as a class would
        result["trigger_s"] = time.monotonic() - started
        result["trigger_503"] = http.statuses.get(503, 0)
        refused = [str(a) for a in answers if isinstance(a, Exception)]
        result["refused"] = len(refused)
        triggered = [a for a in answers if not isinstance(a, Exception)]
        try:
            final = wait_for(triggered, timeout=timeout, progress=False)
        except WaitTimeout:
            if api.healthy(api_url, timeout=10):
                final = [read_run(r) for r in triggered]
            else:  # the server stopped answering: nothing more can be read
                final = [replace(r, state="server not answering") for r in triggered]
        result["wall_s"] = time.monotonic() - started
    result["peak_mb"] = memory.peak_mb
    states: dict[str, int] = {}
    for r in final:
        states[r.state] = states.get(r.state, 0) + 1
    result["states"] = states
    bad = [r.id for r in final if r.state in ("Crashed", "Failed")]
    messages = crash_messages(bad) if bad else {}
    for text in refused:
        key = "trigger() refused: " + re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", text)[:240]
        messages[key] = messages.get(key, 0) + 1
    result["messages"] = messages
    return result


def start_hog() -> subprocess.Popen[bytes]:
    """One process spinning on a CPU: the other engineer's job on a 2-core laptop."""
    return subprocess.Popen(
        [sys.executable, "-c", "while True: pass"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


ROWS = [
    ("Completed", lambda r: r["states"].get("Completed", 0), "d"),
    ("Crashed", lambda r: r["states"].get("Crashed", 0), "d"),
    ("Failed", lambda r: r["states"].get("Failed", 0), "d"),
    ("not final", lambda r: sum(n for s, n in r["states"].items() if s not in _FINAL), "d"),
    ("trigger() refused (503 on every retry)", lambda r: r["refused"], "d"),
    ("burst wall time (s)", lambda r: r["wall_s"], ".1f"),
    ("triggering the runs (s)", lambda r: r["trigger_s"], ".1f"),
    ("trigger(): HTTP 503 answers received", lambda r: r["trigger_503"], "d"),
    ("one run to Completed, median of 3 (s)", lambda r: r["single_run_s"], ".2f"),
    ("peak memory, server+db+workers (MB)", lambda r: r["peak_mb"], ".0f"),
    ("server.log: 'database is locked' lines", lambda r: r["server_log"]["locked"], "d"),
    ("server.log: HTTP 503 answered", lambda r: r["server_log"]["answered_503"], "d"),
    ("server.log: tracebacks", lambda r: r["server_log"]["tracebacks"], "d"),
    ("server.log size (kB)", lambda r: r["server_log"]["bytes"] / 1000, ".1f"),
    ("worker logs: 'database is locked' lines", lambda r: r["worker_logs"]["locked"], "d"),
    ("worker logs: HTTP 503 reported", lambda r: r["worker_logs"]["http_503"], "d"),
    ("worker logs: tracebacks", lambda r: r["worker_logs"]["tracebacks"], "d"),
]
_FINAL = ("Completed", "Failed", "Crashed", "Cancelled")


def report(results: list[dict[str, Any]], sides: list[str]) -> None:
    sides = [s for s in sides if any(r["side"] == s for r in results)]
    by_side = {s: [r for r in results if r["side"] == s] for s in sides}
    print()
    header = f"{'measure (median; all repeats in brackets)':<42}"
    for s in sides:
        header += f" {s:>24}"
    if len(sides) == 2:
        header += f" {'ratio':>6}"
    print(header)
    for name, get, fmt in ROWS:
        line = f"{name:<42}"
        medians = []
        for s in sides:
            values = [get(r) for r in by_side[s]]
            med = statistics.median(values)
            medians.append(med)
            every = "/".join(format(v, fmt) for v in values)
            cell = format(med, fmt) if fmt != "d" else format(round(med), "d")
            line += f" {cell + ' [' + every + ']' if len(values) > 1 else cell:>24}"
        if len(sides) == 2:
            a, b = medians
            line += f" {b / a:>6.2f}" if a else f" {'':>6}"
        print(line)
    for s in sides:
        for i, r in enumerate(by_side[s], 1):
            for message, n in r["messages"].items():
                print(f"{s} #{i}: {n} x {message}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="runs triggered at once")
    parser.add_argument("--workers", type=int, default=2, help="workers on the queue")
    parser.add_argument("--load", action="store_true", help="keep one CPU busy meanwhile")
    parser.add_argument("--repeat", type=int, default=1, help="bursts per side")
    parser.add_argument("--only", choices=list(_SIDES), help="run one side only")
    parser.add_argument(
        "--sides",
        nargs=2,
        choices=list(_SIDES),
        default=["before", "after"],
        help="the two sides to compare (default: before after; lesson 07: after postgres)",
    )
    parser.add_argument(
        "--trigger-threads", type=int, default=10, help="trigger() calls in flight at once"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for a burst")
    parser.add_argument(
        "--worker-limit",
        type=int,
        default=None,
        help="runs one worker starts at once (default: no limit; 200 at once swamp 2 cores)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the homes (and their logs)")
    args = parser.parse_args()
    sides = [args.only] if args.only else list(args.sides)

    signal.signal(signal.SIGTERM, _on_sigterm)
    os.environ["ENERGY_FLOWS_QUIET"] = "1"
    root = Path(tempfile.mkdtemp(prefix="ef-burst-"))
    hog = start_hog() if args.load else None
    results: list[dict[str, Any]] = []
    homes: list[Path] = []
    try:
        for i in range(args.repeat):
            for side in sides:
                folder = root / f"{i + 1}"
                folder.mkdir(exist_ok=True)
                homes.append(folder / side)
                print(f"burst {i + 1}/{args.repeat}, {side}: {args.runs} runs, "
                      f"{args.workers} workers{', loaded' if hog else ''}, load average "
                      f"{os.getloadavg()[0]:.1f} ...", flush=True)  # fmt: skip
                r = one_side(
                    side,
                    folder,
                    args.runs,
                    args.workers,
                    args.timeout,
                    args.trigger_threads,
                    args.worker_limit,
                )
                results.append(r)
                print(f"  -> {r['states']}, refused {r['refused']}, wall {r['wall_s']:.0f} s, "
                      f"one run {r['single_run_s']:.1f} s, server.log "
                      f"{r['server_log']['tracebacks']} tracebacks / "
                      f"{r['server_log']['bytes'] / 1000:.0f} kB", flush=True)  # fmt: skip
    except (KeyboardInterrupt, _Stop):
        print("interrupted: stopping what was started", file=sys.stderr)
        return 130
    finally:
        from energy_flows.services.control import stop_all

        for home in homes:
            if (home / "state").is_dir():
                stop_all(home, quiet=True)
        if hog is not None:
            hog.kill()
            hog.wait()
        if args.keep:
            print(f"homes kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
        if results:
            report(results, sides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
