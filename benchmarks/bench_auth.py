"""What a password on the Prefect server costs: start, every API call, a `!prefect` command.

    .venv/bin/python benchmarks/bench_auth.py [--repeat 3] [--calls 300]

Alternates, ``--repeat`` times, a server without a password and one with
(``PrefectServer(auth=False)`` / ``auth=True``), each in a fresh temporary
home, and times: the start (until ``start()`` returns), ``--calls`` sequential
API calls (``POST /api/flows/filter`` through the package's one HTTP helper,
which sends the password when the server asks for it), and Prefect's own
``prefect work-pool ls`` as a lesson's ``!prefect`` cell runs it. Then how
long JupyterLab's proxy takes to find a server's password
(``proxy_auth.server_auth``): the first request to a port, and every later
one. Prints medians and the ratios with/without; leaves nothing running.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from energy_flows.jupyter import proxy_auth  # noqa: E402
from energy_flows.lessons import use_prefect_command  # noqa: E402
from energy_flows.services import api  # noqa: E402
from energy_flows.services.server import PrefectServer  # noqa: E402


def one_round(auth: bool, calls: int) -> dict[str, float]:
    """Start a server (with or without a password) in a fresh home; time what uses it."""
    os.environ.pop("PREFECT_API_AUTH_STRING", None)  # the previous round's home
    home = Path(tempfile.mkdtemp(prefix="ef-bench-auth-"))
    os.environ["ENERGY_FLOWS_HOME"] = str(home)
    times: dict[str, float] = {}
    server = None
    try:
        started = time.perf_counter()
        server = PrefectServer(home=home, auth=auth, quiet=True).start()
        times["start"] = time.perf_counter() - started
        assert (server.auth_string is not None) == auth
        url = f"{server.api_url}/flows/filter"
        api.call("POST", url, {"limit": 1})  # warm
        started = time.perf_counter()
        for _ in range(calls):
            api.call("POST", url, {"limit": 1})
        times["call_ms"] = (time.perf_counter() - started) / calls * 1000
        script = use_prefect_command(home)
        started = time.perf_counter()
        done = subprocess.run([str(script), "work-pool", "ls"], capture_output=True, text=True)
        times["cli"] = time.perf_counter() - started
        assert done.returncode == 0, done.stderr
        port = server.port
        proxy_auth._FOUND.clear()
        proxy_auth._MISSED.clear()
        started = time.perf_counter()
        found = proxy_auth.server_auth(port)
        times["proxy_first_ms"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        for _ in range(1000):
            proxy_auth.server_auth(port)
        times["proxy_next_ms"] = (time.perf_counter() - started) / 1000 * 1000
        assert (found is not None) == auth
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    rounds: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.repeat):
        for auth in (False, True):
            rounds[auth].append(one_round(auth, args.calls))
    print(f"{'median of ' + str(args.repeat):<28}{'no password':>14}{'password':>12}{'ratio':>8}")
    labels = {
        "start": "server start (s)",
        "call_ms": f"API call, {args.calls} in a row (ms)",
        "cli": "prefect work-pool ls (s)",
        "proxy_first_ms": "proxy: first lookup (ms)",
        "proxy_next_ms": "proxy: next lookups (ms)",
    }
    for key, label in labels.items():
        off = statistics.median(r[key] for r in rounds[False])
        on = statistics.median(r[key] for r in rounds[True])
        print(f"{label:<28}{off:>14.2f}{on:>12.2f}{on / off:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
