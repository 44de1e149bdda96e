"""One shape for every service the package manages: the server, workers, and what comes next.

A managed service is an object you construct, ``start()`` (it starts the
process, or reuses the one that already runs for the home), look at (its
``status()``, ``record``, ``logs()``, and an HTML table in a notebook), and
``stop()`` or ``close()``. Used as a context manager it stops only what it
started itself, never a service it merely reused. dask.distributed's
``ProcessInterface`` is the model.

:func:`launch` is the one place that turns "start this service" into a
running process (under its watchdog, see :mod:`~energy_flows.services.process`)
and a state file (see :mod:`~energy_flows.services.registry`).
"""

from __future__ import annotations

import enum
import html
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from energy_flows import settings
from energy_flows.services import process, registry
from energy_flows.services.registry import ServiceRecord
from energy_flows.vocabulary import SERVICE_STATUS_COLOURS
from energy_flows.waiting import say


class Status(enum.StrEnum):
    """Where a service is in its life (compares equal to its text, e.g. ``"running"``)."""

    CREATED = "created"  # constructed, never started by this object
    RUNNING = "running"
    NOT_ANSWERING = "not answering"  # the process runs, but does not answer (yet)
    STOPPED = "stopped"

    def __repr__(self) -> str:
        return repr(self.value)  # reads as the plain text it equals, e.g. 'running'


#: Colours of the states in the HTML tables (one list for the whole package: vocabulary.py).
STATUS_COLOURS = SERVICE_STATUS_COLOURS


class LogText(str):
    """Log lines that display as a plain block in a notebook (not a quoted string)."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<pre style='max-height:30em;overflow:auto'>{html.escape(self)}</pre>"


def html_rows(title: str, rows: Sequence[tuple[str, str]]) -> str:
    """A titled two-column table; the values are HTML already (escape them first)."""
    body = "".join(
        f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
        for k, v in rows
    )
    return f"<div><b>{html.escape(title)}</b><table>{body}</table></div>"


def log_path(home: Path, kind: str, name: str) -> Path:
    """``logs/server.log``, ``logs/postgres.log`` or ``logs/worker-<name>.log``."""
    return (
        home / "logs" / (f"{kind}.log" if kind in ("server", "postgres") else f"worker-{name}.log")
    )


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
    hold: str | None = None,
    on_exit: Sequence[str] | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
    **fields: Any,
) -> ServiceRecord:
    """Start a service with :func:`process.spawn` and record it in its state file.

    Marks the start in its log (``log_offset``, so errors show only this
    start's lines). ``fields`` fill the record's service-specific fields
    (port and URLs, pool and queues, or the database).
    """
    log = log_path(home, kind, name)
    with process.private_open(log, "a") as f:
        f.write("\n")
        offset = f.tell()
        f.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n")
    sock = process.socket_path_for(home, f"worker-{name}" if kind == "worker" else name)
    spawned = process.spawn(
        argv,
        env,
        log,
        tied=not detached,
        socket_path=sock,
        watch_pid=watch_pid,
        grace=grace,
        cwd=home,
        hold=hold,
        on_exit=on_exit,
        stop_signal=stop_signal,
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


class ManagedService:
    """The common part of :class:`PrefectServer`, :class:`PostgresServer` and :class:`Worker`.

    Subclasses set ``kind`` and ``title`` and implement :meth:`start`,
    :meth:`stop` and :meth:`_rows` (their lines of the HTML table).
    """

    kind: str = "service"
    title: str = "Service"

    def __init__(
        self,
        name: str,
        home: str | os.PathLike[str] | None,
        quiet: bool,
        detached: bool,
    ) -> None:
        self.name = name
        self.home = settings.home_dir(home)
        self.quiet = quiet
        self.detached = detached
        #: True when :meth:`start` adopted a service that already ran.
        self.reused = False
        #: True when this object started the process itself.
        self.started_here = False
        #: What the last :meth:`start` or :meth:`stop` said.
        self.messages: list[str] = []
        self._record: ServiceRecord | None = None  # what this object started or adopted

    # -- life cycle (subclasses) -------------------------------------------
    def start(self) -> Self:  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> Any:
        """The same as :meth:`stop`."""
        return self.stop()

    def _mark_reused(self, rec: ServiceRecord) -> None:
        """:meth:`start` adopted a running service: note whether it is still this object's.

        It is when it is the very process this object started (a second ``start()``);
        otherwise this object only uses it, and ``with`` will leave it running.
        """
        self.reused = True
        ours = self._record is not None and self._record.pid == rec.pid
        self.started_here = self.started_here and ours

    def _mark_stopped(self) -> None:
        """After :meth:`stop`: nothing runs that this object started."""
        self._record = None
        self.started_here = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Leave alone what this block only reused (another notebook's, the CLI's).
        if self.started_here:
            self.stop()

    # -- information ---------------------------------------------------------
    @property
    def record(self) -> ServiceRecord | None:
        """The state file of the running service (None when it does not run). Changes nothing."""
        rec = registry.ServiceRecord.load(registry.state_path(self.home, self.kind, self.name))
        if rec is None and self._record is not None:
            rec = self._record  # its state file is gone or damaged: what this object knows
        return rec if rec is not None and rec.alive() else None

    @property
    def pid(self) -> int | None:
        rec = self.record
        return rec.pid if rec else None

    @property
    def log_path(self) -> Path:
        return log_path(self.home, self.kind, self.name)

    def status(self) -> Status:
        """:class:`Status`: ``running``, ``not answering`` or ``stopped``."""
        return Status.RUNNING if self.record is not None else Status.STOPPED

    def logs(self, tail: int = 40) -> LogText:
        """The last ``tail`` lines of the service's log file."""
        return LogText(process.tail(self.log_path, tail))

    def _rows(self, rec: ServiceRecord | None) -> list[tuple[str, str]]:
        return []

    def _repr_html_(self) -> str:
        rec = self.record
        state = self.status()
        colour = STATUS_COLOURS.get(state, STATUS_COLOURS[Status.NOT_ANSWERING])
        rows = [("State", f"<b style='color:{colour}'>{html.escape(str(state))}</b>")]
        rows += self._rows(rec)
        rows.append(("Log", html.escape(str(self.log_path))))
        return html_rows(self.title, rows)

    def _say(self, message: str) -> None:
        self.messages.append(message)
        say(message, self.quiet)
