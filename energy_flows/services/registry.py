"""State files: what the package runs for a home, one JSON file per service in ``<home>/state/``.

Written in one step, private, read back checked; reading changes nothing. No
Prefect import here: ``energy-flows status`` stays fast. docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import threading
import types
import typing
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from energy_flows import settings
from energy_flows.services import process, urls
from energy_flows.services.process import Spawned

try:  # POSIX; on Windows the package is not supported (see `energy-flows check`)
    import fcntl
except ImportError:  # pragma: no cover - exercised by the Windows import test
    fcntl = None  # type: ignore[assignment]


class Kind(enum.StrEnum):
    """The kinds of service with a state file, in the order they are listed and started."""

    SERVER = "server"
    POSTGRES = "postgres"
    WORKER = "worker"

    def stem(self, name: str) -> str:
        """``server``, ``postgres`` (one per home) or ``worker-<name>``: names its files."""
        return f"worker-{name}" if self is Kind.WORKER else self.value


class Owner(enum.StrEnum):
    """Who a service belongs to."""

    KERNEL = "kernel"  # tied to the process that started it (a kernel, a script, a test)
    CLI = "cli"  # `energy-flows up`: runs until `energy-flows down`


@dataclass(frozen=True)
class ServiceRecord(Spawned):
    """What every state file holds (:class:`ServerRecord` and the others add their kind's)."""

    kind: Kind
    name: str
    home: str
    argv: list[str]
    log: str
    log_offset: int  # where this start's lines begin in the log
    started_at: float
    owner: Owner
    owner_pid: int
    socket: str | None = None  # the watchdog's socket, where other owners attach

    @property
    def path(self) -> Path:
        return state_path(self.home, self.kind, self.name)

    def uptime(self) -> str:
        return process.uptime(self.started_at)

    def save(self) -> None:
        """Write the state file in one step (readers never see half a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        what = f"the state file that records {self.kind.value} {self.name!r}"
        process.write_private(self.path, json.dumps(asdict(self), indent=2), what)

    def remove(self) -> None:
        """Delete the state file, if it is still this record's (not a newer start's)."""
        current = read(self.path)
        if isinstance(current, ServiceRecord) and current.pid != self.pid:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass(frozen=True, kw_only=True)
class ServerRecord(ServiceRecord):
    port: int
    api_url: str
    ui_url: str
    #: "sqlite", or the PostgreSQL URL it runs on, without the password.
    database: str = "sqlite"
    #: It asks every API call for the home's password (:func:`energy_flows.settings.auth_string`).
    auth: bool = False


@dataclass(frozen=True, kw_only=True)
class PostgresRecord(ServiceRecord):
    port: int

    @property
    def address(self) -> str:
        """Its URL without the password, e.g. ``postgresql+asyncpg://postgres@127.0.0.1:5433/prefect``."""
        return urls.postgres_url_for(self.port)


@dataclass(frozen=True, kw_only=True)
class WorkerRecord(ServiceRecord):
    api_url: str  # the server it works for, as it was when the worker started
    pool: str
    queues: list[str] = field(default_factory=list)
    limit: int | None = None
    auth: bool = False  # its server asks for a password
    remote: bool = False  # it joined a server of another home (``Worker(server=...)``)


_CLASSES: dict[Kind, type[ServiceRecord]] = {
    Kind.SERVER: ServerRecord,
    Kind.POSTGRES: PostgresRecord,
    Kind.WORKER: WorkerRecord,
}


@dataclass(frozen=True)
class Damaged:
    """A state file that exists but is not a record (cut short, edited, a value of a wrong type)."""

    path: Path
    problem: str


def read(path: Path) -> ServiceRecord | Damaged | None:
    """The record in a state file, :class:`Damaged`, or None when there is no file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return Damaged(path, f"it cannot be read as JSON ({exc})")
    kind = data.get("kind") if isinstance(data, dict) else None
    if not isinstance(kind, str) or not _fits(kind, Kind):
        return Damaged(path, "it names no kind of service")
    cls = _CLASSES[Kind(kind)]
    problem = _problem(cls, data)
    if problem is not None:
        return Damaged(path, problem)
    values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
    return cls(**values | {"kind": Kind(kind), "owner": Owner(data["owner"])})


def _problem(cls: type[ServiceRecord], data: dict[str, Any]) -> str | None:
    """What makes ``data`` not a record of ``cls`` (a missing field, a wrong type), or None."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                return f"it has no {f.name}"
        elif not _fits(data[f.name], hints[f.name]):
            return f"its {f.name} is {data[f.name]!r}"
    return None


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field's type (``int``, ``list[str]``, ``str | None``, an enum)."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return any(_fits(value, option) for option in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, str) and value in [member.value for member in hint]
    if isinstance(value, bool) and hint is not bool:
        return False
    return isinstance(value, float | int) if hint is float else isinstance(value, hint)


R = TypeVar("R", bound=ServiceRecord)


def _load(cls: type[R], path: Path, live: bool = False) -> R | None:
    """The record of kind ``cls`` in ``path`` (only if its process runs, with ``live``)."""
    rec = read(path)
    return rec if isinstance(rec, cls) and (not live or rec.alive()) else None


def state_dir(home: str | os.PathLike[str] | None = None) -> Path:
    return settings.home_dir(home) / "state"


def state_path(home: str | os.PathLike[str] | None, kind: Kind | str, name: str) -> Path:
    """``state/server.json``, ``state/postgres.json`` or ``state/worker-<name>.json``."""
    return state_dir(home) / f"{Kind(kind).stem(name)}.json"


def log_path(home: str | os.PathLike[str] | None, kind: Kind | str, name: str) -> Path:
    """``logs/server.log``, ``logs/postgres.log`` or ``logs/worker-<name>.log``."""
    return settings.home_dir(home) / "logs" / f"{Kind(kind).stem(name)}.log"


_HELD = threading.local()  # per thread: a kernel's widget thread waits like another process


@contextlib.contextmanager
def locked(home: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Hold the home's lock (two kernels starting a server get one); re-entrant per thread."""
    path = state_dir(home) / ".lock"
    held: dict[Path, int] = _HELD.__dict__.setdefault("counts", {})
    if held.get(path):
        held[path] += 1
        try:
            yield
        finally:
            held[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with process.private_open(path, "a") as f:  # flock: one holder per open file
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        held[path] = 1
        try:
            yield
        finally:
            held.pop(path, None)
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def records(home: str | os.PathLike[str] | None = None) -> list[ServiceRecord]:
    """Every readable state file of a home, live or not, servers first. Changes nothing."""
    paths = state_dir(home).glob("*.json")  # none when the folder does not exist
    found = [rec for path in paths if isinstance(rec := read(path), ServiceRecord)]
    order = list(Kind)
    return sorted(found, key=lambda r: (order.index(r.kind), r.name))


def damaged_workers(home: str | os.PathLike[str] | None = None) -> list[Damaged]:
    """The worker state files that are not records (cut short, edited). Changes nothing."""
    found = [read(path) for path in sorted(state_dir(home).glob(f"{Kind.WORKER.stem('*')}.json"))]
    return [rec for rec in found if isinstance(rec, Damaged)]


def live_records(home: str | os.PathLike[str] | None = None) -> list[ServiceRecord]:
    """The state files whose process still runs: what runs for this home."""
    return [rec for rec in records(home) if rec.alive()]


def server_record(home: str | os.PathLike[str] | None = None) -> ServerRecord | None:
    """The server's state file, live or not (None when there is none). Changes nothing."""
    return _load(ServerRecord, state_path(home, Kind.SERVER, Kind.SERVER))


def live_server(home: str | os.PathLike[str] | None = None) -> ServerRecord | None:
    """The server of a home if its process runs, else None. Changes nothing."""
    return _load(ServerRecord, state_path(home, Kind.SERVER, Kind.SERVER), live=True)


def live_postgres(home: str | os.PathLike[str] | None = None) -> PostgresRecord | None:
    """The managed PostgreSQL of a home if its process runs, else None. Changes nothing."""
    return _load(PostgresRecord, state_path(home, Kind.POSTGRES, Kind.POSTGRES), live=True)


def worker_record(home: str | os.PathLike[str] | None, name: str) -> WorkerRecord | None:
    return _load(WorkerRecord, state_path(home, Kind.WORKER, name))


def worker_records(home: str | os.PathLike[str] | None = None) -> list[WorkerRecord]:
    """Every worker state file, live or not. Changes nothing."""
    return [r for r in records(home) if isinstance(r, WorkerRecord)]


def server_url_for(worker: WorkerRecord) -> str | None:
    """The API a worker's runs are recorded on, as it answers now: the home's server (it may
    have restarted on another port since), or the other server a worker joined."""
    if worker.remote:
        return worker.api_url
    server = live_server(worker.home)
    return server.api_url if server else None
