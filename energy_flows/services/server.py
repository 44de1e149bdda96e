"""The Prefect server ("Orion" in the original walkthrough) as a managed process.

In a notebook's first cell::

    from energy_flows import PrefectServer
    server = PrefectServer().start()   # or: with PrefectServer() as server: ...
    server                             # state, UI link, PID, uptime, home

``start()`` reuses a healthy server that already runs for the same home
(started by another notebook, an earlier cell or ``energy-flows up``), so
running the cell twice never starts a second server. Otherwise it starts
``prefect server start`` on 127.0.0.1, port 4200 when free, with the
classroom environment (see :mod:`energy_flows.settings`), waits until
``/api/health`` answers, and points this kernel's Prefect client at it.

Starting never fails because of what came before. A server whose kernel
has just ended is shutting down: ``start()`` waits for it to go, then starts
a new one on the same database (two servers on one SQLite file lock each
other out). A server another process is starting is waited for; if it
dies meanwhile (e.g. another program took its port), ``start()`` starts
its own. Each of these is said in one line. Once the server answers,
whatever ended services left behind is finished (see
:func:`energy_flows.services.control.reconcile`).

The server stops when the kernel ends (shutdown, restart, crash), but not
when you press the interrupt button; see :mod:`energy_flows.services.process`.

Its database is SQLite in the home by default. ``PrefectServer(database=
"postgres")`` first starts a PostgreSQL for the home and runs the server on
it; a PostgreSQL URL (or ``$ENERGY_FLOWS_DATABASE_URL``) uses an existing one
(see :mod:`energy_flows.services.postgres`).

A server a class shares asks for a password: ``PrefectServer(auth=True)``
gives the home one (``class:<random>``, kept in ``<home>/state/auth``, 0600)
and starts the server with it as ``PREFECT_SERVER_API_AUTH_STRING``; this
kernel and every process the package starts for the home send it. Another
learner's worker joins with it: ``Worker(server=server.api_url,
auth=server.auth_string)`` (see :mod:`energy_flows.services.worker`).
"""

from __future__ import annotations

import contextlib
import html
import os
import stat
import sys
import time
import urllib.parse
from typing import ClassVar

from energy_flows import settings
from energy_flows.errors import PortTakenError, ServiceError, WaitTimeout
from energy_flows.prefect_internals import flush_to_server
from energy_flows.services import api, control, database, launch, postgres, process, registry, urls
from energy_flows.services.base import LogText, ManagedService, Status
from energy_flows.services.base import launch as launch_service
from energy_flows.services.postgres import PostgresServer
from energy_flows.services.process import free_port, listens_on, port_is_free
from energy_flows.services.registry import ServiceRecord
from energy_flows.waiting import wait_until

__all__ = ["DEFAULT_PORT", "LogText", "PostgresServer", "PrefectServer", "start_server"]

#: The port Prefect documents; used whenever it is free.
DEFAULT_PORT = 4200

#: How many log lines an error shows.
ERROR_LOG_LINES = 20

#: Seconds to wait for a server that is shutting down (its owner ended) to be gone.
SHUTDOWN_WAIT = 20.0

#: Seconds to give the process whose server failed to start to start it again
#: (it does so at once when the port was taken meanwhile) before starting our own.
RETRY_WAIT = 10.0

#: The setting that points Prefect's server at a database other than its SQLite file.
DATABASE_URL_SETTING = "PREFECT_API_DATABASE_CONNECTION_URL"

#: The setting that makes Prefect's server ask every API call for ``user:password``.
AUTH_SETTING = "PREFECT_SERVER_API_AUTH_STRING"


def _describe(database: str) -> str:
    """A server's database label (``ServiceRecord.database``) in words."""
    if database == "sqlite":
        return "SQLite"
    managed = f"{urls.ASYNCPG_SCHEME}://{urls.POSTGRES_USER}@127.0.0.1:"
    if database == "postgres" or database.startswith(managed):
        return "this home's PostgreSQL"
    return f"the PostgreSQL at {database}"


def server_argv(port: int) -> list[str]:
    """The command that runs the server (through the launcher, see ``launch.py``)."""
    return [
        sys.executable,
        "-m",
        "energy_flows.services.launch",
        "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # Never prompt: PREFECT_CLI_PROMPT=false in its environment (settings.py), which
        # every Prefect 3 reads; "--no-prompt" is refused by `server start` before 3.9.
    ]


def check_database_writable(home: os.PathLike[str] | str) -> None:
    """Refuse to start on a database the server could open but not write.

    Prefect would start, answer health checks, then fail every write with
    HTTP 500. A read-only file (mode without the owner's write bit, even for
    root) or folder is caught here with what to do.
    """
    db = database.home_database(home)
    for path in (db, db.parent):
        if not path.exists():
            continue
        mode = path.stat().st_mode
        if not os.access(path, os.W_OK) or not mode & stat.S_IWUSR:
            what = "folder" if path.is_dir() else "file"
            raise ServiceError(
                f"The Prefect database {what} {path} is read-only, so the server could not "
                f"save anything. Make it writable (`chmod u+w {path}`), or start from a fresh "
                "home: `energy-flows reset --yes` (deletes this home's runs), or set "
                "ENERGY_FLOWS_HOME to another folder. Nothing was started."
            )


class _GoneMeanwhile(Exception):
    """The server we were about to reuse went away: look again."""


class PrefectServer(ManagedService):
    """A Prefect server for one home folder, started (or reused) on demand.

    Args:
        home: the state folder; default :func:`energy_flows.settings.home_dir`
            (``$ENERGY_FLOWS_HOME``, else ``.energy_flows/`` of this checkout).
        port: preferred port; default 4200. When it is taken by another
            program, a free port is used and the message says which.
        timeout: seconds to wait for the server to become healthy.
        quiet: no progress lines (errors are still raised).
        detached: terminal mode (``energy-flows up``): the server keeps
            running after this process ends, until ``energy-flows down``.
        database: ``"sqlite"`` (the default: a file in the home),
            ``"postgres"`` (a PostgreSQL started for this home, see
            :class:`~energy_flows.services.postgres.PostgresServer`), or the
            URL of an existing PostgreSQL, e.g.
            ``"postgresql+asyncpg://user:password@host:5432/prefect"``.
            Default: ``$ENERGY_FLOWS_DATABASE_URL`` when set, else SQLite.
        postgres_port: the managed PostgreSQL's port (default: a free one).
        auth: ``True`` to ask every API call for the home's password (made
            once, then kept: see :attr:`auth_string`), a ``"user:password"`` of
            your choice, or ``False``/``None`` (the default) for none. The UI
            then asks for it too. Health checks stay open.

    Attributes after :meth:`start`: ``api_url``, ``ui_url``, ``pid``, ``port``,
    ``database`` (what it runs on, password hidden), ``postgres`` (the managed
    PostgreSQL, or None), ``auth_string`` (the password, or None),
    ``reused`` (True when an already running server was adopted),
    ``started_here`` and ``messages`` (what :meth:`start` said, e.g. about the port).
    """

    kind = "server"
    title = "Prefect server (Orion)"

    #: One object per home in this process: ``start_server()`` twice gives the same one.
    _instances: ClassVar[dict[os.PathLike[str] | str, PrefectServer]] = {}

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        port: int | None = None,
        timeout: float = 90.0,
        quiet: bool = False,
        detached: bool = False,
        database: str | None = None,
        postgres_port: int | None = None,
        auth: bool | str | None = None,
    ) -> None:
        super().__init__("server", home, quiet, detached)
        if auth is not None and not isinstance(auth, bool):
            settings.check_auth_string(auth)  # a bad one fails here, before anything starts
        self.wanted_auth = auth
        self.requested_port = port
        self.timeout = timeout
        #: "sqlite", "postgres" or a PostgreSQL URL (see :func:`postgres.choose_database`).
        self.wanted_database = postgres.choose_database(database)
        #: Whether the database was asked for (argument or variable), not the default.
        self.database_asked = database is not None or self.wanted_database != "sqlite"
        self.postgres_port = postgres_port
        self._postgres_started_here = False

    # -- life cycle -------------------------------------------------------
    def start(self) -> PrefectServer:
        """Start the server, or reuse the one that runs for this home; returns self.

        Idempotent. Raises :class:`~energy_flows.errors.ServiceError` with the
        last log lines when the server cannot start, and
        :class:`~energy_flows.errors.HomeNotWritableError` when the home
        folder cannot be written.
        """
        settings.ensure_home(self.home)
        self.messages = []
        if self.wanted_auth:
            settings.save_auth_string(
                None if self.wanted_auth is True else self.wanted_auth, self.home
            )
        try:
            rec = self._start(time.monotonic() + self.timeout)
        except BaseException:
            self._stop_own_postgres()
            raise
        self._record = rec
        PrefectServer._instances[self.home] = self
        settings.apply_to_current_process(self.home, rec.api_url)
        for line in control.reconcile(self.home, quiet=True):
            self._say(line)  # now that the server answers, ended workers' runs can be finished
        if not self.detached:
            # A kernel's next cells import Prefect anyway: do it now, the fast
            # way. (`energy-flows up` returns at once and needs no Prefect.)
            launch.prepare_kernel()
            _keep_house(self.home)
        return self

    def _start(self, deadline: float) -> ServiceRecord:
        """Start or adopt the server (the loop of :meth:`start`); returns its record."""
        port_retries = 0
        while True:
            with registry.locked(self.home):
                for line in control.reconcile(self.home, quiet=True):
                    self._say(line)
                for line in control.adopt_unrecorded(self.home):
                    self._say(line)
                rec = registry.live_server(self.home)
                fresh = rec is None
                if rec is None:
                    rec = self._spawn(avoid_default=port_retries > 0)
            try:
                if fresh:
                    self._wait_healthy(rec, deadline)
                else:
                    self._adopt(rec, deadline)
                break
            except _GoneMeanwhile:
                continue
            except PortTakenError:
                # Another program (or another home's server starting at the
                # same moment) took the port between our check and the
                # server's bind: try again on a free port, and say so.
                if not fresh or port_retries == 2:
                    raise
                port_retries += 1
                self._say(f"Port {rec.port} was taken meanwhile by another program; retrying.")
        return rec

    def _adopt(self, rec: ServiceRecord, deadline: float) -> None:
        """Reuse a server another kernel, cell or terminal started for this home."""
        mine = rec.owner_pid == os.getpid()
        if rec.owner == "kernel" and not mine:
            # Become an owner too, so it lives as long as this kernel. Its
            # watchdog refuses once it has decided to stop (its kernel ended).
            answer = process.attach(rec.socket)
            if answer != process.ATTACHED:
                self._wait_gone(rec)
                raise _GoneMeanwhile
        if not api.healthy(rec.api_url or ""):
            # Started a moment ago by someone else: wait for it like our own.
            self._wait_healthy(
                rec,
                deadline,
                label="Waiting for the Prefect server another process started",
                ours=False,
            )
        self._mark_reused(rec)
        who = "a terminal (energy-flows up)" if rec.owner == "cli" else f"process {rec.owner_pid}"
        if mine:
            who = "this kernel"
        elif rec.owner_pid < 0:
            who = "another process"
        self._say(f"Reusing the Prefect server started by {who}: {rec.ui_url} (pid {rec.pid}).")
        running_on = rec.database or "sqlite"
        if self.database_asked and running_on != self._database_label():
            self._say(
                f"Note: it runs on {_describe(running_on)}, not on {_describe(self._database_label())} "
                "as asked. To switch, stop it first (`energy-flows down`, or server.stop()), "
                "then start it again."
            )
        if self.wanted_auth and not rec.auth:
            self._say(
                "Note: it runs without a password, not with one as asked. To add one, stop it "
                "first (`energy-flows down`, or server.stop()), then start it again."
            )

    def _wait_gone(self, rec: ServiceRecord) -> None:
        """Wait for a server that is shutting down to be gone (stop it if it hangs)."""
        started = time.monotonic()
        try:
            wait_until(
                lambda: not rec.alive(),
                SHUTDOWN_WAIT,
                what=f"the previous Prefect server (pid {rec.pid}) to stop",
                interval=0.05,
                max_interval=0.2,
            )
            how = f"waited {time.monotonic() - started:.1f} s for it to stop"
        except WaitTimeout:
            rec.stop(timeout=10)
            how = f"it had not stopped after {SHUTDOWN_WAIT:g} s, so it was stopped"
        rec.remove()
        self._say(
            f"The previous Prefect server of this home (pid {rec.pid}) was shutting down, "
            f"because the kernel that started it ended; {how}. Starting a new one."
        )

    def _spawn(self, avoid_default: bool = False) -> ServiceRecord:
        extra, depends_on = self._prepare_database()
        port = free_port() if avoid_default else self._choose_port()
        prefix = urls.hub_prefix(port)
        # The UI asks the API at PREFECT_SERVER_UI_API_URL, which Prefect builds
        # from PREFECT_SERVER_API_PORT (default 4200), not from --port: without
        # this, a server on another port shows the data of whatever runs on 4200.
        extra["PREFECT_SERVER_API_PORT"] = str(port)
        if prefix:
            extra |= urls.hub_settings(prefix)
        secret = settings.auth_string(self.home) if self.wanted_auth else None
        if secret:
            extra[AUTH_SETTING] = secret
        env = settings.classroom_env(self.home, extra=extra)
        rec = launch_service(
            "server",
            "server",
            self.home,
            server_argv(port),
            env,
            detached=self.detached,
            grace=5.0,
            # On a managed PostgreSQL: the server's watchdog is one of its owners (so
            # PostgreSQL stops after the server, whatever ends the kernel), and the
            # server stops should PostgreSQL end (it could not do anything without it).
            watch_pid=depends_on.pid if depends_on else None,
            hold=depends_on.socket if depends_on else None,
            port=port,
            api_url=urls.api_url_for(port, prefix),
            ui_url=urls.ui_url_for(port, prefix),
            database=self._database_label(),
            auth=bool(secret),
        )
        self.started_here = True
        return rec

    def _prepare_database(self) -> tuple[dict[str, str], ServiceRecord | None]:
        """Get the database ready; returns the server's settings for it and the PostgreSQL it needs."""
        if self.wanted_database == "sqlite":
            check_database_writable(self.home)
            # A new home starts from a copy of a migrated empty database (database.py).
            database.seed_home(self.home, say=self._say)
            return {}, None
        if self.wanted_database == "postgres":
            pg = PostgresServer(
                self.home,
                port=self.postgres_port,
                timeout=self.timeout,
                quiet=self.quiet,
                detached=self.detached,
            ).start()
            self.messages += pg.messages
            self._postgres_started_here = self._postgres_started_here or pg.started_here
            return {DATABASE_URL_SETTING: pg.url}, pg.record
        postgres.check_reachable(self.wanted_database)
        return {DATABASE_URL_SETTING: self.wanted_database}, None

    def _database_label(self) -> str:
        """What the server's record says it runs on: "sqlite" or a URL without password."""
        if self.wanted_database == "sqlite":
            return "sqlite"
        if self.wanted_database == "postgres":
            pg = registry.live_postgres(self.home)
            return pg.database or "postgres" if pg else "postgres"
        return urls.redact(self.wanted_database)

    def _stop_own_postgres(self) -> None:
        """After a failed start: stop the PostgreSQL this start started (nothing is left)."""
        if self._postgres_started_here and registry.live_server(self.home) is None:
            pg = registry.live_postgres(self.home)
            if pg is not None:
                control.stop_postgres(pg, quiet=True)
        self._postgres_started_here = False

    def _choose_port(self) -> int:
        wanted = self.requested_port or DEFAULT_PORT
        if port_is_free(wanted):
            return wanted
        port = free_port()
        self._say(f"Port {wanted} is taken by another program; using port {port} instead.")
        return port

    def _wait_healthy(
        self, rec: ServiceRecord, deadline: float, label: str | None = None, ours: bool = True
    ) -> None:
        def healthy() -> bool:
            if not rec.alive():
                if not ours:
                    # Someone else's start failed: let them retry, else start our own.
                    self._wait_for_retry(rec)
                    raise _GoneMeanwhile
                raise self._failed(rec, "stopped while starting")
            # Only our process counts: another program may answer on the port.
            return listens_on(rec.pid, rec.port) and api.healthy(rec.api_url or "")

        try:
            wait_until(
                healthy,
                max(1.0, deadline - time.monotonic()),
                what=f"the Prefect server to answer on {rec.api_url}/health",
                progress=None
                if self.quiet
                else (label or f"Starting the Prefect server for {self.home}"),
                # Cheap checks (a process-table read, then one local HTTP
                # call): look often, a learner waits on this.
                interval=0.05,
                max_interval=0.1,
            )
        except WaitTimeout as exc:
            if ours:
                rec.stop(timeout=5)
                rec.remove()
            raise self._failed(
                rec, f"did not answer within {self.timeout:g} s", left=not ours
            ) from exc
        except ServiceError:
            rec.stop(timeout=5)
            rec.remove()
            raise

    def _wait_for_retry(self, rec: ServiceRecord) -> None:
        """A server another process was starting died: give that process time to retry.

        Its starter tries again on a free port when the port was taken meanwhile
        (another home's server, or another program, bound it first). Starting our
        own server at that moment would win the home's lock first, and the home
        would get our server in place of theirs, without their settings: the
        JupyterLab tile's proxy address, say, whose page then pointed past the
        proxy. So wait until the home's record names another server (adopt it), or
        the starter has ended, or :data:`RETRY_WAIT` has passed (it gave up).
        """
        if rec.owner_pid <= 0 or rec.owner_pid == os.getpid():
            return

        def retried_or_gone() -> bool:
            current = registry.server_record(self.home)
            if current is not None and current.pid != rec.pid:
                return True
            return not process.is_alive(rec.owner_pid)

        with contextlib.suppress(WaitTimeout):
            wait_until(
                retried_or_gone,
                RETRY_WAIT,
                what=f"process {rec.owner_pid} to start the Prefect server again",
                interval=0.05,
                max_interval=0.2,
            )

    def _failed(self, rec: ServiceRecord, what: str, left: bool = False) -> ServiceError:
        lines, port_taken = process.failed_start_log(rec.log, ERROR_LOG_LINES, start=rec.log_offset)
        hint = "Fix the cause shown above, then run the cell again."
        if port_taken:
            hint = "Another program took the port meanwhile: run the cell again to use a free port."
        state = (
            f"It still runs (pid {rec.pid}): `energy-flows status` shows it, "
            "`energy-flows down` stops it."
            if left
            else "Nothing is left running."
        )
        error = PortTakenError if port_taken else ServiceError
        return error(
            f"The Prefect server {what}. {state}\n"
            f"Last {ERROR_LOG_LINES} lines of {rec.log}:\n{lines}\n{hint}"
        )

    def stop(self) -> list[str]:
        """Stop this home's workers, then its server. Returns what was stopped.

        Safe to call twice. Note that another notebook reusing the same
        server loses it too. The run logs and events this process has not
        sent yet (a flow run in this kernel) are sent first, while the server
        still answers.
        """
        rec = registry.live_server(self.home)
        if rec is not None and rec.api_url and api.healthy(rec.api_url):
            flush_to_server(timeout=5)
        stopped = control.stop_all(self.home, quiet=self.quiet)
        self._mark_stopped()
        PrefectServer._instances.pop(self.home, None)
        return stopped

    # -- information ------------------------------------------------------
    def _info(self) -> ServiceRecord:
        rec = self.record or self._record
        if rec is None:
            raise ServiceError(
                f"No Prefect server runs for {self.home}. Start it: server = PrefectServer().start()"
            )
        return rec

    @property
    def api_url(self) -> str:
        """The API address for Prefect clients, e.g. ``http://127.0.0.1:4200/api``."""
        return self._info().api_url or ""

    @property
    def ui_url(self) -> str:
        """The address of Prefect's web UI (the JupyterHub proxy URL under a hub)."""
        return self._info().ui_url or ""

    @property
    def port(self) -> int | None:
        return self._info().port

    @property
    def database(self) -> str:
        """What the server runs on: ``"sqlite"``, or a PostgreSQL URL without its password."""
        return self._info().database or "sqlite"

    @property
    def auth_string(self) -> str | None:
        """The ``user:password`` this server asks for, or None when it asks for none.

        Give it only to those who may use the server (it is a password: keep
        it out of notebooks' outputs). It lives in the home, readable by you only.
        """
        return settings.auth_string(self.home) if self._info().auth else None

    @property
    def postgres(self) -> PostgresServer | None:
        """This home's managed PostgreSQL (``.query(sql)``, ``.address``), or None."""
        if registry.live_postgres(self.home) is None:
            return None
        return PostgresServer(self.home, quiet=True)

    def status(self) -> Status:
        """``running``, ``not answering`` (alive but no health) or ``stopped``."""
        rec = self.record
        if rec is None:
            return Status.STOPPED
        return Status.RUNNING if api.healthy(rec.api_url or "") else Status.NOT_ANSWERING

    def __repr__(self) -> str:
        rec = self.record
        if rec is None:
            return f"<PrefectServer stopped home={str(self.home)!r}>"
        return (
            f"<PrefectServer {self.status()} ui={rec.ui_url} api={rec.api_url} "
            f"pid={rec.pid} uptime={rec.uptime()} home={str(self.home)!r}>"
        )

    @property
    def command(self) -> str | None:
        """The Prefect command this server stands for, as you would type it in a terminal.

        ``PREFECT_SERVER_API_PORT=<port> prefect server start --host 127.0.0.1
        --port <port>`` (None when it does not run). The variable is needed
        with any port but 4200: ``--port`` alone moves the API, while the UI
        keeps calling it on 4200. The course starts the command through its
        launcher, with the classroom settings in its environment.
        """
        rec = self.record
        if rec is None or not rec.api_url:
            return None
        port = urllib.parse.urlsplit(rec.api_url).port or 4200
        argv = server_argv(port)[3:]  # what follows `python -m energy_flows.services.launch`
        return f"PREFECT_SERVER_API_PORT={port} {' '.join(argv)}"

    def _rows(self, rec: ServiceRecord | None) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        if rec is not None:
            link = html.escape(rec.ui_url or "")
            rows += [
                ("UI", f"<a href='{link}' target='_blank'>{link}</a>"),
                ("API", html.escape(rec.api_url or "")),
                ("PID", str(rec.pid)),
                ("Uptime", rec.uptime()),
                ("Owner", "this terminal's `energy-flows up`" if rec.owner == "cli" else "kernel"),
            ]
            if rec.database and rec.database != "sqlite":  # (SQLite's table stays as it was)
                rows.append(("Database", html.escape(rec.database)))
            if rec.auth:
                rows.append(
                    ("Password", "required: <code>server.auth_string</code> (user:password)")
                )
            if self.command:
                rows.append(("Command", f"<code>{html.escape(self.command)}</code>"))
        return [*rows, ("Home", html.escape(str(self.home)))]


_HOUSEKEPT: set[str] = set()


def _keep_house(home: os.PathLike[str] | str) -> None:
    """Let the orchestration layer finish ended workers' runs before it reads a queue."""
    key = str(home)
    if key in _HOUSEKEPT:
        return
    from energy_flows.orchestration import housekeeping

    housekeeping.register(key, lambda: control.reconcile(home))
    _HOUSEKEPT.add(key)


def start_server(
    home: str | os.PathLike[str] | None = None,
    port: int | None = None,
    timeout: float = 90.0,
    quiet: bool = False,
) -> PrefectServer:
    """Start (or reuse) the server of a home; the same object on a second call."""
    existing = PrefectServer._instances.get(settings.home_dir(home))
    if existing is not None and existing.record is not None:
        return existing.start()
    return PrefectServer(home, port=port, timeout=timeout, quiet=quiet).start()
