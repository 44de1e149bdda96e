"""`energy-flows lab` (and `make lab`): JupyterLab on the lessons, with the classroom environment.

JupyterLab is started by the package's one spawn function, tied to this
command: Ctrl-C (or SIGTERM) here stops JupyterLab, JupyterLab stops its
kernels, and each kernel's end stops the servers and workers its lessons
started (their watchdogs see the kernel go). Whatever a kernel-owned
service still runs after that is stopped here too, so nothing is left.
A server started in a terminal with `energy-flows up` is left alone: it
runs until `energy-flows down`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from energy_flows import settings
from energy_flows.services import database, process
from energy_flows.services.server import port_is_free
from energy_flows.services.waiting import wait_until

#: Seconds JupyterLab gets to shut its kernels down before it is killed.
LAB_STOP_GRACE = 20.0


def _repo_notebooks() -> Path:
    """``notebooks/`` next to the package when run from a checkout, else the cwd's."""
    here = Path(__file__).resolve().parents[1] / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` if nothing listens there, else the next free port above it."""
    for port in range(preferred, preferred + 100):
        if port_is_free(port, host):
            return port
    raise OSError(f"No free port between {preferred} and {preferred + 99}.")


def lab_command(
    port: int, notebook_dir: Path, open_browser: bool, token: str | None = None
) -> list[str]:
    """The ``jupyter lab`` command line: loopback only, offline, ``notebook_dir`` as root.

    ``token`` fixes the access token (a browser test needs to know it);
    otherwise JupyterLab makes one (or takes ``JUPYTER_TOKEN``).
    """
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.port={port}",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={notebook_dir}",
        # Offline classroom: no update checks, no news feed, no PyPI lookups.
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Containers and CI machines often run as root; Jupyter refuses that by default.
        argv.append("--allow-root")
    if not open_browser:
        argv.append("--no-browser")
    if token is not None:
        argv.append(f"--IdentityProvider.token={token}")
    return argv


def stop_kernel_services(home: Path) -> list[str]:
    """Stop what kernels of this home still run (CLI-started services stay)."""
    from energy_flows.services.registry import records
    from energy_flows.services.server import stop_server_record
    from energy_flows.services.worker import stop_worker_record

    stopped = []
    recs = [r for r in records(home) if r.owner != "cli"]
    for rec in [r for r in recs if r.kind == "worker"]:
        stopped.append(stop_worker_record(rec, quiet=True))
    for rec in [r for r in recs if r.kind == "server"]:
        stopped.append(stop_server_record(rec, quiet=True))
    return stopped


def run_lab(args: argparse.Namespace) -> int:
    """Start JupyterLab, wait for Ctrl-C or SIGTERM, then stop everything it started."""
    home = settings.ensure_home()
    notebook_dir = Path(args.notebook_dir).resolve() if args.notebook_dir else _repo_notebooks()
    port = free_port(args.port)
    if port != args.port:
        print(f"Port {args.port} is taken by another program; JupyterLab uses {port}.")
    # Kernels inherit this environment: they find the home, stay offline and
    # write no colour codes into the logs of what they start.
    env = settings.classroom_env(home)
    argv = lab_command(port, notebook_dir, open_browser=not args.no_browser)
    print(f"Starting JupyterLab on http://127.0.0.1:{port}/lab (home: {home})")
    print("Press Ctrl-C to stop JupyterLab and everything the lessons started.")
    sys.stdout.flush()

    # SIGTERM (e.g. from a process manager) means the same as Ctrl-C. Ctrl-C
    # is set explicitly too: a shell that starts a command in the background
    # hands it SIGINT ignored, and Python then never raises KeyboardInterrupt.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    lab = process.spawn(argv, env, None, tied=True, grace=LAB_STOP_GRACE, cwd=notebook_dir)
    code = 0
    try:
        # While JupyterLab opens: the empty database new homes copy (once per
        # Prefect version; `make setup` has usually built it already).
        database.ensure_template(say=print)
        while process.is_alive(lab.pid, lab.create_time):
            time.sleep(0.5)
        code = 1
        print("JupyterLab stopped by itself; see its messages above.")
    except KeyboardInterrupt:
        print("\nStopping JupyterLab and its kernels ...", flush=True)
        code = 0
    finally:
        # Ignore a second Ctrl-C while cleaning up: half a clean-up is worse.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        process.stop(
            lab.pid,
            lab.create_time,
            lab.watchdog_pid,
            lab.watchdog_create_time,
            timeout=LAB_STOP_GRACE + 5,
        )
        # Give the kernels' watchdogs a moment, then stop what is left.
        try:
            wait_until(lambda: not _kernel_services_alive(home), 5, what="the lessons' services")
        except Exception:
            pass
        for line in stop_kernel_services(home):
            print(line)
        print("Everything is stopped.")
    return code


def _kernel_services_alive(home: Path) -> bool:
    from energy_flows.services.registry import records

    return any(r.owner != "cli" and r.alive() for r in records(home))


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("ENERGY_FLOWS_HOME", str(settings.home_dir()))
    from energy_flows.cli import main

    sys.exit(main(["lab", *sys.argv[1:]]))
