"""``energy-flows up | down | status | logs | reset``: the services, from a terminal.

The notebooks' classes in terminal mode: what ``up`` starts runs until
``energy-flows down``. No Prefect import: ``status`` and a second ``up`` answer at once.
"""

from __future__ import annotations

import argparse
import shutil

from energy_flows import settings
from energy_flows.errors import EnergyFlowsError
from energy_flows.options import split_worker_spec  # the check of `up --worker`
from energy_flows.services import control, process, registry
from energy_flows.services.registry import Kind, Owner


def up(args: argparse.Namespace) -> int:
    """Start (or reuse) the server, and the workers asked for; print the UI URL."""
    from energy_flows.services.server import PrefectServer
    from energy_flows.services.worker import Worker

    workers = [split_worker_spec(spec) for spec in getattr(args, "worker", []) or []]
    if getattr(args, "server", None):
        return _join(args.server, workers)
    server = PrefectServer(
        port=getattr(args, "port", None),
        timeout=getattr(args, "timeout", 90.0),
        detached=True,
        database=getattr(args, "database", None),
        postgres_port=getattr(args, "postgres_port", None),
        auth=getattr(args, "auth", None),
    ).start()
    rec = server.record
    if server.reused and rec is not None and rec.owner == Owner.KERNEL:
        print(
            f"Note: this server belongs to a notebook kernel (pid {rec.owner_pid}) "
            "and stops when that kernel ends."
        )
    for pool, queue in workers:
        Worker(pool=pool, queues=[queue], detached=True).start()
    print(f"Prefect UI:  {server.ui_url}")
    print(f"Prefect API: {server.api_url}  (export PREFECT_API_URL={server.api_url})")
    if server.database != "sqlite":
        print(f"Database:    {server.database}")
    if server.auth_string is not None:
        path = settings.auth_path(server.home)
        print(f"Password:    asked for; user:password in {path} (readable by you only)")
        print("  Others join with: export PREFECT_API_AUTH_STRING=$(cat <that file>)")
    print("Stop everything with: energy-flows down")
    return 0


def _join(api_url: str, workers: list[tuple[str, str]]) -> int:
    """``up --server URL --worker P/Q``: workers of this home for another home's server."""
    import os

    from energy_flows.services.worker import Worker

    if not workers:
        raise EnergyFlowsError(
            "--server starts no server of its own, only workers for that one: add at least one "
            "--worker POOL/QUEUE, e.g. --worker energy-pool/energy_usage."
        )
    auth = os.environ.get("PREFECT_API_AUTH_STRING") or None
    for pool, queue in workers:
        worker = Worker(pool=pool, queues=[queue], detached=True, server=api_url, auth=auth)
        worker.start()
        print(f"Worker {worker.name!r} polls {pool}/{queue} on {api_url}")
    print("Stop them with: energy-flows down")
    return 0


def down(args: argparse.Namespace) -> int:
    """Stop every worker, then the server, then its PostgreSQL, of this home."""
    control.stop_all()
    return 0


def status(args: argparse.Namespace) -> int:
    """Print what runs for this home (from its state files). Changes nothing."""
    home = settings.home_dir()
    table = control.running(home)
    if table.empty:
        print(f"Nothing runs for {home}. Start the server with: energy-flows up")
        return 0
    rows = [("KIND", "NAME", "STATE", "PID", "WHERE", "OWNER", "UPTIME")]
    for rec in table.itertuples():
        where = rec.url if rec.kind in ("server", "postgres") else f"{rec.pool}: {rec.queues}"
        rows.append((rec.kind, rec.name, rec.state, str(rec.pid), where, rec.owner, rec.uptime))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"Home: {home}")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


def logs(args: argparse.Namespace) -> int:
    """Print the last lines of the server's, PostgreSQL's or a worker's log."""
    home = settings.home_dir()
    which = getattr(args, "which", "server") or "server"
    kind = Kind(which) if which in (Kind.SERVER, Kind.POSTGRES) else Kind.WORKER
    path = registry.log_path(home, kind, which.removeprefix("worker-"))
    if not path.exists():
        available = sorted(p.stem for p in (home / "logs").glob("*.log"))
        raise EnergyFlowsError(
            f"There is no log {path}. Logs in this home: {', '.join(available) or 'none yet'}."
        )
    print(process.tail(path, getattr(args, "tail", 40)))
    return 0


def reset(args: argparse.Namespace) -> int:
    """Stop everything, then delete the home's Prefect database (SQLite or PostgreSQL), state, logs and results."""
    home = settings.home_dir()
    targets = [home / sub for sub in ("prefect", "postgres", "state", "logs", "results")]
    if not getattr(args, "yes", False):
        answer = input(f"Stop everything and delete {', '.join(map(str, targets))}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing was changed.")
            return 1
    control.stop_all(home)
    for target in targets:
        if target.exists():
            shutil.rmtree(target)
            print(f"Deleted {target}")
    print("The home is reset; `energy-flows up` starts a fresh server.")
    return 0
