"""What the package started for a home, kept in state files inside the home.

Each running service has one JSON file::

    <home>/state/server.json
    <home>/state/worker-<name>.json

with the PIDs of the real process and of its watchdog, their psutil
``create_time`` (to tell our process from an unrelated one that later got
the same PID), the port and URLs, the command, the log file, when it
started and who owns it (``"kernel"``: tied to the process that started it;
``"cli"``: runs until ``energy-flows down``).

Because the files live in the home, a fresh kernel or a terminal sees what
another one started: :func:`running` lists it, :func:`stop_all` stops it.
A file whose process has gone (or whose PID now belongs to another
program) is stale and is removed the next time anyone looks.

This module does not import Prefect (``energy-flows status`` stays fast).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from energy_flows import settings
from energy_flows.services import process
from energy_flows.services.waiting import say

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class ServiceRecord:
    """One state file: a server or a worker the package started for a home."""

    kind: str  # "server" or "worker"
    name: str  # "server", or the worker's name
    home: str
    pid: int  # the Prefect process itself
    create_time: float
    watchdog_pid: int
    watchdog_create_time: float
    argv: list[str]
    log: str
    started_at: float
    owner: str  # "kernel" (tied to its starter) or "cli" (until `energy-flows down`)
    owner_pid: int
    socket: str | None = None
    port: int | None = None
    api_url: str | None = None
    ui_url: str | None = None
    pool: str | None = None
    queues: list[str] = field(default_factory=list)
    limit: int | None = None
    server_pid: int | None = None
    log_offset: int = 0  # where this start's lines begin in the log

    @property
    def path(self) -> Path:
        return state_path(self.home, self.kind, self.name)

    def alive(self) -> bool:
        """Whether the recorded process still runs (and is ours, not a reused PID)."""
        return process.is_alive(self.pid, self.create_time)

    def uptime(self) -> str:
        return process.uptime(self.started_at)

    def save(self) -> None:
        """Write the state file atomically (readers never see half a file)."""
        path = self.path
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def stop_process(self, timeout: float = 10.0) -> bool:
        """Stop the process (and its watchdog); True if it was running."""
        return process.stop(
            self.pid, self.create_time, self.watchdog_pid, self.watchdog_create_time, timeout
        )

    @classmethod
    def load(cls, path: Path) -> ServiceRecord | None:
        """Read a state file; a damaged one is removed and gives None."""
        try:
            data = json.loads(path.read_text())
            names = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            with contextlib.suppress(OSError):
                path.unlink()
            return None


def launch(
    kind: str,
    name: str,
    home: Path,
    argv: list[str],
    env: dict[str, str],
    *,
    detached: bool,
    grace: float,
    watch_pid: int | None = None,
    **fields: Any,
) -> ServiceRecord:
    """Start a server or worker with :func:`process.spawn` and record it in its state file.

    The one place that turns "start this service" into a running process, a
    marked start in its log (``log_offset``, so errors show only this start's
    lines), and a :class:`ServiceRecord`. ``fields`` fill the record's
    service-specific fields (port and URLs, or pool and queues).
    """
    log = home / "logs" / ("server.log" if kind == "server" else f"worker-{name}.log")
    with open(log, "a") as f:
        f.write("\n")
        offset = f.tell()
        f.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n")
    sock = process.socket_path_for(home, name if kind == "server" else f"worker-{name}")
    spawned = process.spawn(
        argv,
        env,
        log,
        tied=not detached,
        socket_path=sock,
        watch_pid=watch_pid,
        grace=grace,
        cwd=home,
    )
    rec = ServiceRecord(
        kind=kind,
        name=name,
        home=str(home),
        pid=spawned.pid,
        create_time=spawned.create_time,
        watchdog_pid=spawned.watchdog_pid,
        watchdog_create_time=spawned.watchdog_create_time,
        argv=argv,
        log=str(log),
        log_offset=offset,
        started_at=time.time(),
        owner="cli" if detached else "kernel",
        owner_pid=os.getpid(),
        socket=None if detached else sock,
        **fields,
    )
    rec.save()
    return rec


def state_dir(home: str | os.PathLike[str] | None = None) -> Path:
    return settings.home_dir(home) / "state"


def state_path(home: str | os.PathLike[str] | None, kind: str, name: str) -> Path:
    if kind == "server":
        return state_dir(home) / "server.json"
    return state_dir(home) / f"worker-{name}.json"


_LOCKS_HELD: dict[Path, int] = {}


@contextlib.contextmanager
def locked(home: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Hold the home's lock: two kernels starting a server at once get one server.

    Re-entrant within one process (``stop_all`` inside ``stop`` is fine).
    """
    path = state_dir(home) / ".lock"
    if _LOCKS_HELD.get(path):
        _LOCKS_HELD[path] += 1
        try:
            yield
        finally:
            _LOCKS_HELD[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        _LOCKS_HELD[path] = 1
        try:
            yield
        finally:
            _LOCKS_HELD.pop(path, None)
            fcntl.flock(f, fcntl.LOCK_UN)


def records(home: str | os.PathLike[str] | None = None, clean: bool = True) -> list[ServiceRecord]:
    """All state files of a home, server first; stale ones removed when ``clean``."""
    folder = state_dir(home)
    if not folder.is_dir():
        return []
    found: list[ServiceRecord] = []
    for path in sorted(folder.glob("*.json")):
        rec = ServiceRecord.load(path)
        if rec is None:
            continue
        if clean and not rec.alive():
            _clean_stale(rec)
            continue
        found.append(rec)
    found.sort(key=lambda r: (r.kind != "server", r.name))
    return found


def _clean_stale(rec: ServiceRecord) -> None:
    # The real process is gone (or its PID belongs to someone else now); a
    # watchdog without its child has nothing left to do either.
    if process.is_alive(rec.watchdog_pid, rec.watchdog_create_time):
        rec.stop_process(timeout=5)
    rec.remove()


def server_record(home: str | os.PathLike[str] | None = None) -> ServiceRecord | None:
    """The live server of a home, or None (a stale server.json is removed)."""
    rec = ServiceRecord.load(state_path(home, "server", "server"))
    if rec is not None and not rec.alive():
        _clean_stale(rec)
        return None
    return rec


def worker_records(home: str | os.PathLike[str] | None = None) -> list[ServiceRecord]:
    return [r for r in records(home) if r.kind == "worker"]


def check_server_gone(home: str | os.PathLike[str] | None = None, quiet: bool = False) -> list[str]:
    """Stop workers left without a server, and say so. Returns the messages.

    A worker never stops by itself when its server dies (it retries for
    minutes); its watchdog watches the server and stops it, and this
    function catches what is left (e.g. a terminal-mode worker).
    """
    messages: list[str] = []
    if server_record(home) is not None:
        return messages
    for path in sorted(state_dir(home).glob("worker-*.json")):
        rec = ServiceRecord.load(path)
        if rec is None:
            continue
        was_running = rec.alive()
        if was_running:
            rec.stop_process(timeout=5)
        rec.remove()
        messages.append(
            f"The Prefect server of this home is not running any more, so worker "
            f"{rec.name!r} {'was stopped' if was_running else 'stopped too'}. "
            "Start the server again with `server = PrefectServer().start()`, then the worker."
        )
    for message in messages:
        say(message, quiet)
    return messages


def running(home: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """What the package runs for a home: the server and its workers, as a table.

    Works from any kernel or terminal: it reads the state files in the home.
    Columns: ``kind``, ``name``, ``state``, ``pid``, ``url`` (the UI for the
    server), ``pool``, ``queues``, ``owner``, ``uptime``, ``log``.
    """
    import pandas as pd

    check_server_gone(home)
    rows: list[dict[str, Any]] = []
    for rec in records(home):
        healthy = None
        if rec.kind == "server" and rec.api_url:
            from energy_flows.services.api import healthy as check

            healthy = check(rec.api_url)
        rows.append(
            {
                "kind": rec.kind,
                "name": rec.name,
                "state": "running" if healthy in (None, True) else "not answering",
                "pid": rec.pid,
                "url": rec.ui_url or "",
                "pool": rec.pool or "",
                "queues": ", ".join(rec.queues),
                "owner": rec.owner,
                "uptime": rec.uptime(),
                "log": rec.log,
            }
        )
    columns = ["kind", "name", "state", "pid", "url", "pool", "queues", "owner", "uptime", "log"]
    return pd.DataFrame(rows, columns=columns)


def stop_all(home: str | os.PathLike[str] | None = None, quiet: bool = False) -> list[str]:
    """Stop every worker, then the server, of a home. Returns what was stopped.

    Workers go first: a worker whose server has gone takes ~8 s to stop and
    would leave its runs RUNNING.
    """
    from energy_flows.services.server import stop_server_record
    from energy_flows.services.worker import stop_worker_record

    stopped: list[str] = []
    with locked(home):
        for rec in worker_records(home):
            stopped.append(stop_worker_record(rec, quiet=quiet))
        rec = server_record(home)
        if rec is not None:
            stopped.append(stop_server_record(rec, quiet=quiet))
    if not stopped:
        say("Nothing was running for this home.", quiet)
    return stopped
