"""One shape and one life cycle for every service the package manages.

:meth:`ManagedService.start` is the one start loop; the server, PostgreSQL and
workers supply its hooks. docs/architecture.md draws it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Generic, NoReturn, Self, TypeVar

from energy_flows import settings
from energy_flows.errors import (
    DiskFullError,
    PortTakenError,
    ServiceError,
    WaitTimeout,
    disk_full,
    is_disk_full,
)
from energy_flows.markup import element, field_table
from energy_flows.services import control, process, registry
from energy_flows.services.process import SpawnOptions
from energy_flows.services.registry import Kind, Owner, ServiceRecord
from energy_flows.vocabulary import SERVICE_STATUS_COLOURS
from energy_flows.waiting import say, wait_until


class Status(enum.StrEnum):
    """Where a service is in its life (compares equal to its text, e.g. ``"running"``)."""

    RUNNING = "running"
    NOT_ANSWERING = "not answering"  # the process runs, but does not answer (yet)
    STOPPED = "stopped"

    def __repr__(self) -> str:
        return repr(self.value)  # reads as the plain text it equals, e.g. 'running'


class LogText(str):
    """Log lines that display as a plain block in a notebook (not a quoted string)."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return element("pre", str(self), style="max-height:30em;overflow:auto")


#: Seconds to wait for a service that is shutting down (its owner ended) to be gone.
SHUTDOWN_WAIT = 20.0

#: Seconds to give the process whose start failed to try again before starting our own.
RETRY_WAIT = 10.0

#: How many log lines a start error shows.
ERROR_LOG_LINES = 20


#: The last line of a Python traceback: ``TypeError: Body() got an unexpected keyword ...``.
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception)): .*")


def _crash_hint(log_tail: str, noun: str) -> str | None:
    """What to do when the process died of a Python exception, most often at import (two
    installed packages that do not fit, after an upgrade by hand): the tested set again."""
    lines = [line.strip() for line in log_tail.splitlines() if line.strip()]
    while lines and lines[-1].startswith("[watchdog "):  # its note of the exit comes last
        lines.pop()
    # The tail may begin inside a long traceback: its frames tell it apart from a log line.
    traceback = any(line.startswith('File "') for line in lines)
    if not traceback or not _EXCEPTION_LINE.match(lines[-1]):
        return None
    return (
        f"{noun[:1].upper()}{noun[1:]} stopped with `{lines[-1]}`. When Python cannot load "
        "it, two installed packages most often do not fit each other (e.g. a FastAPI too "
        "new for the Prefect installed; `energy-flows check` shows the versions). "
        "Reinstall the tested set: `make setup` in the course's folder (or "
        "`pip install -c constraints.txt -e .` there), then run the cell again."
    )


class _GoneMeanwhile(Exception):
    """The service about to be adopted went away (it stopped, or its start failed): look again."""


R = TypeVar("R", bound=ServiceRecord)


class ManagedService(Generic[R]):
    """The common part of :class:`PrefectServer`, :class:`PostgresServer` and :class:`Worker`:
    a kind sets the class attributes below and supplies the hooks (``_spawn`` and ``_ready``
    at least), as the table in docs/architecture.md shows."""

    kind: ClassVar[Kind]
    record_class: ClassVar[type[ServiceRecord]]
    #: In sentences: "the Prefect server", "PostgreSQL", "the worker 'agent-1'".
    noun: str = "the service"
    #: How a start that timed out failed: "did not answer".
    not_ready: ClassVar[str] = "did not answer"
    #: How to start it, for an error about a service that does not run.
    start_hint: ClassVar[str] = ""
    #: What a failed start advises when the cause is in its log.
    fix_hint: ClassVar[str] = "Fix the cause shown above, then run the cell again."
    #: The longest pause between two readiness checks, in seconds.
    poll_interval: ClassVar[float] = 0.2

    def __init__(
        self,
        name: str,
        home: str | os.PathLike[str] | None,
        quiet: bool,
        detached: bool,
        timeout: float,
    ) -> None:
        self.name = name
        self.home = settings.home_dir(home)
        self.quiet = quiet
        self.detached = detached
        self.timeout = timeout
        self.title = "Service"
        #: How often a start may take another port after its port was taken meanwhile.
        self.port_retries = 2
        #: True when :meth:`start` adopted a service that already ran.
        self.reused = False
        #: True when this object started the process itself.
        self.started_here = False
        #: What the last :meth:`start` or :meth:`stop` said.
        self.messages: list[str] = []
        self._record: R | None = None  # what this object started or adopted

    # -- the life cycle ------------------------------------------------------------------
    def start(self) -> Self:
        """Start the service, or reuse the one that runs for this home; returns self.

        Idempotent. A :class:`~energy_flows.errors.ServiceError` with its last log lines
        when it cannot start, nothing left running."""
        settings.ensure_home(self.home)
        self.messages = []
        deadline = time.monotonic() + self.timeout
        try:
            self._prepare()
            rec = self._start_or_adopt(deadline)
        except BaseException as exc:
            self._undo()
            if (
                isinstance(exc, OSError)
                and is_disk_full(exc)
                and not isinstance(exc, DiskFullError)
            ):
                raise disk_full(exc.filename or self.home, f"the files of {self.noun}") from exc
            raise
        self._record = rec
        self._started(rec)
        return self

    def _start_or_adopt(self, deadline: float) -> R:
        """Lock, reconcile, then adopt the live service or spawn one, and wait until it answers."""
        retries = 0
        while True:
            with registry.locked(self.home):
                for line in control.reconcile(self.home, quiet=True):
                    self._say(line)
                rec = self._current()
                fresh = rec is None
                if rec is None:
                    rec = self._spawn(retry=retries > 0)
            try:
                if fresh:
                    self._wait_ready(rec, deadline, ours=True)
                else:
                    self._adopt(rec, deadline)
                return rec
            except _GoneMeanwhile:
                continue
            except PortTakenError as exc:
                # Another program (or another home's server starting at the same moment)
                # took the port between our check and the bind: a free port, and say so.
                if not fresh or retries >= self.port_retries:
                    raise
                retries += 1
                self._say(f"Port {exc.port} was taken meanwhile by another program; retrying.")

    def _current(self) -> R | None:
        """The home's record of this service if its process (or its watchdog) still runs."""
        found = registry.read(registry.state_path(self.home, self.kind, self.name))
        if isinstance(found, registry.Damaged):
            self._say(f"The state file {found.path} was damaged ({found.problem}); replacing it.")
        if isinstance(found, self.record_class) and (found.alive() or found.watchdog_alive()):
            return found  # type: ignore[return-value]  # record_class is R's class
        return None

    def _launch(
        self, argv: Sequence[str], env: dict[str, str], options: SpawnOptions, **fields: Any
    ) -> R:
        """Spawn the process under its watchdog and record it (a process that cannot be
        recorded is stopped again); ``log_offset`` marks this start's part of the log."""
        log = self.log_path
        offset = process.mark_log(log, f"starting: {' '.join(argv)}")
        sock = (
            None if self.detached else process.socket_path_for(self.home, self.kind.stem(self.name))
        )
        options = dataclasses.replace(
            options, tied=not self.detached, socket=sock, cwd=str(self.home)
        )
        spawned = process.spawn(argv, env, log, options)
        rec = self.record_class(
            **dataclasses.asdict(spawned),
            kind=self.kind,
            name=self.name,
            home=str(self.home),
            argv=list(argv),
            log=str(log),
            log_offset=offset,
            started_at=time.time(),
            owner=Owner.CLI if self.detached else Owner.KERNEL,
            owner_pid=os.getpid(),
            socket=sock,
            **fields,
        )
        try:
            rec.save()
        except OSError as exc:
            spawned.stop(timeout=10)
            if is_disk_full(exc):
                raise disk_full(
                    rec.path,
                    f"the state file that records {self.noun} (it had just started, and was "
                    "stopped again: nothing is left running)",
                ) from exc
            raise ServiceError(
                f"Could not write {rec.path} ({exc.strerror}), so {self.noun} that had "
                "just started was stopped again: nothing is left running. Make the folder "
                "writable, then run the cell again."
            ) from exc
        self.started_here = True
        return rec  # type: ignore[return-value]  # record_class is R's class

    def _adopt(self, rec: R, deadline: float) -> None:
        """Reuse the service another kernel, cell or terminal started for this home."""
        if not rec.alive():  # ended; its watchdog is still finishing (a worker's runs)
            self._wait_gone(rec, "")
        lines = self._adopting(rec)
        if rec.owner == Owner.KERNEL and rec.owner_pid != os.getpid():
            # Become an owner too, so it lives as long as this process. Its watchdog
            # refuses once it has decided to stop (its kernel ended).
            if not process.attach(rec.socket):
                self._wait_gone(rec, ", because the kernel that started it ended")
        if not self._ready(rec):  # started a moment ago by someone else
            self._wait_ready(rec, deadline, ours=False)
        self.reused = True
        ours = self._record is not None and self._record.pid == rec.pid  # a second start()
        self.started_here = self.started_here and ours
        for line in lines:
            self._say(line)

    def _wait_ready(self, rec: R, deadline: float, ours: bool) -> None:
        """Wait until ``rec`` answers; on failure stop it if it is ours, and say why."""

        def ready() -> bool:
            if not rec.alive():
                if ours:
                    raise self._failed(rec, "stopped while starting")
                self._wait_for_retry(rec)  # someone else's start failed: let them retry
                raise _GoneMeanwhile
            # Only our process counts: another program may answer on the port.
            return self._ready(rec)

        label = self.starting_line() if ours else f"Waiting for {self.noun} another process started"
        try:
            wait_until(
                ready,
                max(1.0, deadline - time.monotonic()),
                what=self.waiting_for(rec),
                progress=None if self.quiet else label,
                # Cheap checks, looked at often: a learner waits on this.
                interval=0.05,
                max_interval=self.poll_interval,
            )
            if ours:
                self._on_ready(rec)
        except BaseException as exc:
            if ours:
                control.stop(rec, quiet=True)
            if isinstance(exc, WaitTimeout):
                what = f"{self.not_ready} within {self.timeout:g} s"
                raise self._failed(rec, what, left=not ours) from exc
            raise

    def _wait_gone(self, rec: R, why: str) -> NoReturn:
        """Wait for a service that is shutting down to be gone (stop it if it hangs); look again."""
        started = time.monotonic()
        try:
            wait_until(
                lambda: not rec.alive() and not rec.watchdog_alive(),
                SHUTDOWN_WAIT,
                what=f"the previous process (pid {rec.pid}) to stop",
                interval=0.05,
                max_interval=0.2,
            )
            how = f"waited {time.monotonic() - started:.1f} s for it to stop"
        except WaitTimeout:
            rec.stop(timeout=10)
            how = f"it had not stopped after {SHUTDOWN_WAIT:g} s, so it was stopped"
        self._say(
            f"{self.subject} this home ran before (pid {rec.pid}) was shutting down{why}; "
            f"{how}. Starting a new one."
        )
        raise _GoneMeanwhile

    def _wait_for_retry(self, rec: R) -> None:
        """Another process's start died: give it time to start again (on a free port).

        Starting our own now would give the home our service in place of theirs,
        without their settings (the JupyterLab tile's proxy address, say).
        """
        if rec.owner_pid <= 0 or rec.owner_pid == os.getpid():
            return

        def retried_or_gone() -> bool:
            current = registry.read(rec.path)
            retried = isinstance(current, ServiceRecord) and current.pid != rec.pid
            return retried or not process.is_alive(rec.owner_pid)

        with contextlib.suppress(WaitTimeout):
            wait_until(
                retried_or_gone,
                RETRY_WAIT,
                what=f"process {rec.owner_pid} to start {self.noun} again",
                interval=0.05,
                max_interval=0.2,
            )

    def _failed(self, rec: R, what: str, left: bool = False) -> ServiceError:
        """The error of a start that failed, with this start's last log lines and what to do."""
        lines, port_taken = process.failed_start_log(rec.log, ERROR_LOG_LINES, start=rec.log_offset)
        state = (
            f"It still runs (pid {rec.pid}): `energy-flows status` shows it, "
            "`energy-flows down` stops it."
            if left
            else "Nothing is left running."
        )
        crashed = _crash_hint(lines, self.noun) if not left else None
        hint = self._fix_hint(lines) or crashed or self.fix_hint
        if port_taken:
            hint = "Another program took the port meanwhile: run the cell again to use a free port."
        message = f"{self.subject} {what}. {state}\nLast {ERROR_LOG_LINES} lines of {rec.log}:\n{lines}\n{hint}"
        if port_taken:
            return PortTakenError(message, port=getattr(rec, "port", None))
        return ServiceError(message)

    # -- hooks ---------------------------------------------------------------------------
    def _fix_hint(self, log_lines: str) -> str | None:
        """What a failed start of this kind advises, given its last log lines (None: nothing
        particular; then a crash at import, else :attr:`fix_hint`)."""
        return None

    def _prepare(self) -> None:
        """Before anything: checks and files the start needs."""

    def _spawn(self, retry: bool) -> R:  # pragma: no cover - every kind has one
        """Start the process (under the home's lock) with :meth:`_launch`; ``retry``: after a taken port."""
        raise NotImplementedError

    def _ready(self, rec: R) -> bool:  # pragma: no cover - every kind has one
        """Whether the process answers (a cheap check, called often)."""
        raise NotImplementedError

    def _on_ready(self, rec: R) -> None:
        """After a process this start spawned answers; a failure here stops it."""

    def _adopting(self, rec: R) -> list[str]:
        """What reusing ``rec`` tells the learner; raise to refuse it."""
        return []

    def _started(self, rec: R) -> None:
        """After a start that worked, spawned or adopted."""

    def _undo(self) -> None:
        """After a start that failed: what else it started."""

    def _rows(self, rec: R | None) -> list[tuple[str, Any]]:
        """The kind's lines of the HTML table (values are text, or :class:`Markup`)."""
        return []

    def _answers(self, rec: R) -> bool:
        """Whether the running service answers, for :meth:`status`."""
        return self._ready(rec)

    # -- words ---------------------------------------------------------------------------
    @property
    def subject(self) -> str:
        """:attr:`noun` at the start of a sentence."""
        return self.noun[:1].upper() + self.noun[1:]

    def starting_line(self) -> str:
        return f"Starting {self.noun} for {self.home}"

    def waiting_for(self, rec: R) -> str:
        return f"{self.noun} (pid {rec.pid}) to answer"

    # -- stopping and context manager ----------------------------------------------------
    def stop(self) -> Any:
        """Stop this home's workers, its server, then its PostgreSQL; returns what stopped.

        Safe to call twice. Everything of the home stops: the server and the
        workers depend on it (a worker stops only itself).
        """
        stopped = control.stop_all(self.home, quiet=self.quiet)
        self._mark_stopped()
        return stopped

    def close(self) -> Any:
        """The same as :meth:`stop`."""
        return self.stop()

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

    # -- information ---------------------------------------------------------------------
    @property
    def record(self) -> R | None:
        """The state file of the running service (None when it does not run). Changes nothing."""
        found = registry.read(registry.state_path(self.home, self.kind, self.name))
        rec = found if isinstance(found, self.record_class) else self._record
        return rec if rec is not None and rec.alive() else None  # type: ignore[return-value]

    def _info(self) -> R:
        """The record, also of a service that has just ended; an error when there is none."""
        rec = self.record or self._record
        if rec is None:
            raise ServiceError(
                f"{self.subject} does not run for {self.home}. Start it: {self.start_hint}"
            )
        return rec

    @property
    def pid(self) -> int | None:
        rec = self.record
        return rec.pid if rec else None

    @property
    def log_path(self) -> Path:
        return registry.log_path(self.home, self.kind, self.name)

    def status(self) -> Status:
        """:class:`Status`: ``running``, ``not answering`` or ``stopped``."""
        rec = self.record
        if rec is None:
            return Status.STOPPED
        return Status.RUNNING if self._answers(rec) else Status.NOT_ANSWERING

    def logs(self, tail: int = 40) -> LogText:
        """The last ``tail`` lines of the service's log file."""
        return LogText(process.tail(self.log_path, tail))

    def __repr__(self) -> str:
        rec = self.record
        if rec is None:
            return f"<{type(self).__name__} stopped home={str(self.home)!r}>"
        return (
            f"<{type(self).__name__} {self.status()} {self._where(rec)} pid={rec.pid} "
            f"uptime={rec.uptime()} home={str(self.home)!r}>"
        )

    def _where(self, rec: R) -> str:
        """Where it answers, for ``repr()``."""
        return ""

    def _repr_html_(self) -> str:
        rec = self.record
        state = self.status()
        colour = SERVICE_STATUS_COLOURS[state]
        rows = [("State", element("b", str(state), style=f"color:{colour}")), *self._rows(rec)]
        return field_table(self.title, [*rows, ("Log", str(self.log_path))])

    def _say(self, message: str) -> None:
        self.messages.append(message)
        say(message, self.quiet)
