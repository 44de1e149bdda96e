"""State files: what the package started for a home, kept inside the home.

Each service the package starts has one JSON file::

    <home>/state/server.json
    <home>/state/postgres.json          (when the server runs on a managed PostgreSQL)
    <home>/state/worker-<name>.json

with the PIDs of the real process and of its watchdog, their psutil
``create_time`` (to tell our process from an unrelated one that later got
the same PID), the port and URLs, the command, the log file, when it
started and who owns it (``"kernel"``: tied to the process that started it;
``"cli"``: runs until ``energy-flows down``).

Because the files live in the home, a fresh kernel or a terminal sees what
another one started. This module only reads and writes those files: reading
never changes anything. A file whose process has ended stays until
:mod:`~energy_flows.services.control` has finished what that process left
behind (for a worker: marking the runs it had taken as Crashed), and a file
that cannot be read is never deleted while its process may live.

The whole state folder is private to its user (0700, files 0600). This
module does not import Prefect (``energy-flows status`` stays fast).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from energy_flows import settings
from energy_flows.services import process

try:  # POSIX; on Windows the package is not supported (see `energy-flows check`)
    import fcntl
except ImportError:  # pragma: no cover - exercised by the Windows import test
    fcntl = None  # type: ignore[assignment]

#: Service kinds with a state file, in the order they are listed (and started).
KINDS = ("server", "postgres", "worker")


@dataclass
class ServiceRecord:
    """One state file: a server or a worker the package started for a home."""

    kind: str  # "server", "postgres" or "worker"
    name: str  # "server", "postgres", or the worker's name
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
    #: The server's database ("sqlite", or a PostgreSQL URL without its password);
    #: for a managed PostgreSQL, its own address (again without the password).
    database: str | None = None
    #: The server asks for the home's password (a server started with auth; a
    #: worker whose server does). See :func:`energy_flows.settings.auth_string`.
    auth: bool = False
    #: A worker that joined a server of another home or machine (``Worker(server=...)``).
    remote: bool = False

    @property
    def path(self) -> Path:
        return state_path(self.home, self.kind, self.name)

    def alive(self) -> bool:
        """Whether the recorded process still runs (and is ours, not a reused PID)."""
        return process.is_alive(self.pid, self.create_time)

    def watchdog_alive(self) -> bool:
        """Whether the process's watchdog still runs (without it nothing ties it to an owner)."""
        return process.is_alive(self.watchdog_pid, self.watchdog_create_time)

    def uptime(self) -> str:
        return process.uptime(self.started_at)

    def save(self) -> None:
        """Write the state file atomically (readers never see half a file)."""
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with process.private_open(tmp, "w") as f:
            f.write(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)

    def remove(self) -> None:
        """Delete the state file, if it is still this record's (not a newer start's)."""
        current = ServiceRecord.load(self.path)
        if current is not None and current.pid != self.pid:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the process and its watchdog (SIGTERM, then SIGKILL); True if it was running.

        Only the processes: what the service leaves behind (a worker's runs)
        is :mod:`~energy_flows.services.control`'s to finish.
        """
        return process.stop(
            self.pid, self.create_time, self.watchdog_pid, self.watchdog_create_time, timeout
        )

    @classmethod
    def load(cls, path: Path) -> ServiceRecord | None:
        """Read a state file; None when it is missing or cannot be read (see :func:`damaged`)."""
        try:
            data = json.loads(path.read_text())
            names = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names})
        except (OSError, ValueError, TypeError):
            return None


def state_dir(home: str | os.PathLike[str] | None = None) -> Path:
    return settings.home_dir(home) / "state"


def state_path(home: str | os.PathLike[str] | None, kind: str, name: str) -> Path:
    if kind in ("server", "postgres"):  # one of each per home
        return state_dir(home) / f"{kind}.json"
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
    with process.private_open(path, "a") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        _LOCKS_HELD[path] = 1
        try:
            yield
        finally:
            _LOCKS_HELD.pop(path, None)
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def records(home: str | os.PathLike[str] | None = None) -> list[ServiceRecord]:
    """Every readable state file of a home, live or not: server, PostgreSQL, workers. Changes nothing."""
    folder = state_dir(home)
    if not folder.is_dir():
        return []
    found = [rec for path in folder.glob("*.json") if (rec := ServiceRecord.load(path))]
    order = {kind: i for i, kind in enumerate(KINDS)}
    found.sort(key=lambda r: (order.get(r.kind, len(KINDS)), r.name))
    return found


def live_records(home: str | os.PathLike[str] | None = None) -> list[ServiceRecord]:
    """The state files whose process still runs: what runs for this home."""
    return [rec for rec in records(home) if rec.alive()]


def damaged(home: str | os.PathLike[str] | None = None) -> list[Path]:
    """State files that exist but cannot be read (cut short, edited by hand ...)."""
    folder = state_dir(home)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if ServiceRecord.load(p) is None and p.exists())


def set_aside(path: Path) -> Path:
    """Keep a damaged state file for whoever wants to read it, out of the way."""
    target = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    with contextlib.suppress(OSError):
        os.replace(path, target)
    return target


def server_record(home: str | os.PathLike[str] | None = None) -> ServiceRecord | None:
    """The server's state file, live or not (None when there is none). Changes nothing."""
    return ServiceRecord.load(state_path(home, "server", "server"))


def live_server(home: str | os.PathLike[str] | None = None) -> ServiceRecord | None:
    """The server of a home if its process runs, else None. Changes nothing."""
    rec = server_record(home)
    return rec if rec is not None and rec.alive() else None


def server_url_for(worker: ServiceRecord) -> str | None:
    """The API a worker's runs are recorded on, as it answers now.

    The home's server (it may have restarted on another port since the worker
    started), or, for a worker that joined another server, that server's.
    """
    if worker.remote:
        return worker.api_url
    server = live_server(worker.home)
    return server.api_url if server else None


def postgres_record(home: str | os.PathLike[str] | None = None) -> ServiceRecord | None:
    """The managed PostgreSQL's state file, live or not (None when there is none)."""
    return ServiceRecord.load(state_path(home, "postgres", "postgres"))


def live_postgres(home: str | os.PathLike[str] | None = None) -> ServiceRecord | None:
    """The managed PostgreSQL of a home if its process runs, else None. Changes nothing."""
    rec = postgres_record(home)
    return rec if rec is not None and rec.alive() else None


def worker_records(home: str | os.PathLike[str] | None = None) -> list[ServiceRecord]:
    """Every worker state file, live or not. Changes nothing."""
    return [r for r in records(home) if r.kind == "worker"]


def worker_record(home: str | os.PathLike[str] | None, name: str) -> ServiceRecord | None:
    return ServiceRecord.load(state_path(home, "worker", name))
