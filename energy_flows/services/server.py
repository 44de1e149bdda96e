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

The server stops when the kernel ends (shutdown, restart, crash), but not
when you press the interrupt button; see :mod:`energy_flows.services.process`.
"""

from __future__ import annotations

import html
import os
import socket
import sys
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import psutil

from energy_flows import settings
from energy_flows.errors import ServiceError, WaitTimeout
from energy_flows.services import api, database, launch, process, registry
from energy_flows.services.registry import ServiceRecord
from energy_flows.services.waiting import say, wait_until

#: The port Prefect documents; used whenever it is free.
DEFAULT_PORT = 4200

#: How many log lines an error shows.
ERROR_LOG_LINES = 20


class LogText(str):
    """Log lines that display as a plain block in a notebook (not a quoted string)."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<pre style='max-height:30em;overflow:auto'>{html.escape(self)}</pre>"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` (a bind test, as uvicorn binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the operating system says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def listens_on(pid: int, port: int | None) -> bool:
    """Whether process ``pid`` (or one of its children) listens on ``port``."""
    try:
        proc = psutil.Process(pid)
        for p in (proc, *proc.children(recursive=True)):
            for conn in p.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                    return True
    except psutil.Error:
        return False
    return False


def hub_prefix(port: int) -> str | None:
    """The jupyter-server-proxy path for ``port`` under JupyterHub, else None.

    Only the non-stripping ``/proxy/absolute/<port>/`` works for Prefect's UI
    (prefect-facts.md). ``JUPYTERHUB_SERVICE_PREFIX`` is e.g. ``/user/alice/``.
    """
    service_prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if not service_prefix:
        return None
    return f"{service_prefix.rstrip('/')}/proxy/absolute/{port}"


def hub_settings(prefix: str) -> dict[str, str]:
    """Server settings that make the UI and API work under a path prefix."""
    return {
        "PREFECT_SERVER_UI_SERVE_BASE": prefix,
        "PREFECT_SERVER_API_BASE_PATH": f"{prefix}/api",
        "PREFECT_SERVER_UI_API_URL": f"{prefix}/api",
    }


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
        "--no-prompt",
    ]


class PrefectServer:
    """A Prefect server for one home folder, started (or reused) on demand.

    Args:
        home: the state folder; default ``$ENERGY_FLOWS_HOME`` or ``./.energy_flows``.
        port: preferred port; default 4200. When it is taken by another
            program, a free port is used and the message says which.
        timeout: seconds to wait for the server to become healthy.
        quiet: no progress lines (errors are still raised).
        detached: terminal mode (``energy-flows up``): the server keeps
            running after this process ends, until ``energy-flows down``.

    Attributes after :meth:`start`: ``api_url``, ``ui_url``, ``pid``, ``port``,
    ``reused`` (True when an already running server was adopted) and
    ``messages`` (what :meth:`start` said, e.g. about the port).
    """

    #: One object per home in this process: ``start_server()`` twice gives the same one.
    _instances: ClassVar[dict[Path, PrefectServer]] = {}

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        port: int | None = None,
        timeout: float = 90.0,
        quiet: bool = False,
        detached: bool = False,
    ) -> None:
        self.home = settings.home_dir(home)
        self.requested_port = port
        self.timeout = timeout
        self.quiet = quiet
        self.detached = detached
        self.reused = False
        self.started_here = False
        self.messages: list[str] = []
        self._record: ServiceRecord | None = None
        self._last_record: ServiceRecord | None = None

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
        for attempt in range(3):
            with registry.locked(self.home):
                registry.check_server_gone(self.home, quiet=self.quiet)
                rec = registry.server_record(self.home)
                fresh = rec is None
                if rec is None:
                    rec = self._spawn(avoid_default=attempt > 0)
            try:
                if fresh:
                    self._wait_healthy(rec)
                else:
                    self._adopt(rec)
                break
            except ServiceError as exc:
                # Another program took the port between our check and the
                # server's bind: try again on a free port, and say so.
                if not (fresh and "already in use" in str(exc).lower()) or attempt == 2:
                    raise
                self._say(f"Port {rec.port} was taken meanwhile by another program; retrying.")
        self._record = self._last_record = rec
        PrefectServer._instances[self.home] = self
        settings.apply_to_current_process(self.home, rec.api_url)
        if not self.detached:
            # A kernel's next cells import Prefect anyway: do it now, the fast
            # way. (`energy-flows up` returns at once and needs no Prefect.)
            launch.prepare_kernel()
        return self

    def _adopt(self, rec: ServiceRecord) -> None:
        """Reuse a server another kernel, cell or terminal started for this home."""
        if not api.healthy(rec.api_url or ""):
            # Started a moment ago by someone else: wait for it like our own.
            self._wait_healthy(rec, label="Waiting for the Prefect server another process started")
        if rec.owner == "kernel" and rec.owner_pid != os.getpid() and not self.detached:
            # Keep it alive as long as this kernel lives too.
            process.attach(rec.socket)
        self.reused = True
        who = "a terminal (energy-flows up)" if rec.owner == "cli" else f"process {rec.owner_pid}"
        if rec.owner_pid == os.getpid():
            who = "this kernel"
        self._say(f"Reusing the Prefect server started by {who}: {rec.ui_url} (pid {rec.pid}).")

    def _spawn(self, avoid_default: bool = False) -> ServiceRecord:
        port = free_port() if avoid_default else self._choose_port()
        # A new home starts from a copy of a migrated empty database (database.py).
        database.seed_home(self.home, say=self._say)
        prefix = hub_prefix(port)
        # The UI asks the API at PREFECT_SERVER_UI_API_URL, which Prefect builds
        # from PREFECT_SERVER_API_PORT (default 4200), not from --port: without
        # this, a server on another port shows the data of whatever runs on 4200.
        extra = {"PREFECT_SERVER_API_PORT": str(port)}
        if prefix:
            extra |= hub_settings(prefix)
        env = settings.classroom_env(self.home, extra=extra)
        rec = registry.launch(
            "server",
            "server",
            self.home,
            server_argv(port),
            env,
            detached=self.detached,
            grace=5.0,
            port=port,
            api_url=f"http://127.0.0.1:{port}{prefix or ''}/api",
            ui_url=ui_url_for(port, prefix),
        )
        self.started_here = True
        return rec

    def _choose_port(self) -> int:
        wanted = self.requested_port or DEFAULT_PORT
        if port_is_free(wanted):
            return wanted
        port = free_port()
        self._say(f"Port {wanted} is taken by another program; using port {port} instead.")
        return port

    def _wait_healthy(self, rec: ServiceRecord, label: str | None = None) -> None:
        def healthy() -> bool:
            if not rec.alive():
                raise self._failed(rec, "stopped while starting")
            # Only our process counts: another program may answer on the port.
            return listens_on(rec.pid, rec.port) and api.healthy(rec.api_url or "")

        try:
            wait_until(
                healthy,
                self.timeout,
                what=f"the Prefect server to answer on {rec.api_url}/health",
                progress=None
                if self.quiet
                else (label or f"Starting the Prefect server for {self.home}"),
                # Cheap checks (a /proc read, then one local HTTP call): look
                # often, a learner waits on this.
                interval=0.05,
                max_interval=0.1,
            )
        except WaitTimeout as exc:
            registry.stop_all(self.home, quiet=True)
            raise self._failed(rec, f"did not answer within {self.timeout:g} s") from exc
        except ServiceError:
            rec.stop_process(timeout=5)
            rec.remove()
            raise

    def _failed(self, rec: ServiceRecord, what: str) -> ServiceError:
        lines = process.tail(rec.log, ERROR_LOG_LINES, start=rec.log_offset)
        hint = "Fix the cause shown above, then run the cell again."
        if "already in use" in lines.lower():
            hint = "Another program took the port meanwhile: run the cell again to use a free port."
        return ServiceError(
            f"The Prefect server {what}. Nothing is left running.\n"
            f"Last {ERROR_LOG_LINES} lines of {rec.log}:\n{lines}\n{hint}"
        )

    def stop(self) -> list[str]:
        """Stop this home's workers, then its server. Returns what was stopped.

        Safe to call twice. Note that another notebook reusing the same
        server loses it too.
        """
        stopped = registry.stop_all(self.home, quiet=self.quiet)
        self._record = None
        PrefectServer._instances.pop(self.home, None)
        return stopped

    close = stop

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Leave alone a server this block only reused (another notebook's, the CLI's).
        if self.started_here:
            self.stop()

    # -- information ------------------------------------------------------
    @property
    def record(self) -> ServiceRecord | None:
        """The state file of the running server (None when it is not running)."""
        rec = self._record or self._last_record
        if rec is None:
            rec = registry.server_record(self.home)
        elif not rec.alive():
            rec = None
        self._record = rec
        return rec

    def _info(self) -> ServiceRecord:
        rec = self._record or self._last_record or registry.server_record(self.home)
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
    def pid(self) -> int | None:
        rec = self.record
        return rec.pid if rec else None

    @property
    def log_path(self) -> Path:
        return self.home / "logs" / "server.log"

    def status(self) -> str:
        """``"running"``, ``"not answering"`` (alive but no health) or ``"stopped"``."""
        rec = self.record
        if rec is None:
            return "stopped"
        return "running" if api.healthy(rec.api_url or "") else "not answering"

    def logs(self, tail: int = 40) -> LogText:
        """The last ``tail`` lines of the server's log file."""
        return LogText(process.tail(self.log_path, tail))

    def __repr__(self) -> str:
        rec = self.record
        if rec is None:
            return f"<PrefectServer stopped home={str(self.home)!r}>"
        return (
            f"<PrefectServer {self.status()} ui={rec.ui_url} api={rec.api_url} "
            f"pid={rec.pid} uptime={rec.uptime()} home={str(self.home)!r}>"
        )

    def _repr_html_(self) -> str:
        rec = self.record
        state = self.status()
        colour = {"running": "#2e7d32", "stopped": "#9e9e9e"}.get(state, "#e65100")
        rows = [("State", f"<b style='color:{colour}'>{html.escape(state)}</b>")]
        if rec is not None:
            link = html.escape(rec.ui_url or "")
            rows += [
                ("UI", f"<a href='{link}' target='_blank'>{link}</a>"),
                ("API", html.escape(rec.api_url or "")),
                ("PID", str(rec.pid)),
                ("Uptime", rec.uptime()),
                ("Owner", "this terminal's `energy-flows up`" if rec.owner == "cli" else "kernel"),
            ]
        rows += [("Home", html.escape(str(self.home))), ("Log", html.escape(str(self.log_path)))]
        body = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
            for k, v in rows
        )
        return f"<div><b>Prefect server (Orion)</b><table>{body}</table></div>"

    def _say(self, message: str) -> None:
        self.messages.append(message)
        say(message, self.quiet)


def ui_url_for(port: int, prefix: str | None) -> str:
    """The UI address: local, or through the JupyterHub proxy."""
    if not prefix:
        return f"http://127.0.0.1:{port}"
    public = os.environ.get("JUPYTERHUB_PUBLIC_URL", "").rstrip("/")
    return f"{public}{prefix}/"


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


def stop_server_record(rec: ServiceRecord, quiet: bool = False) -> str:
    """Stop the server of a state file and remove the file; returns a sentence."""
    rec.stop_process(timeout=15)
    rec.remove()
    message = f"Stopped the Prefect server (pid {rec.pid}, {rec.ui_url})."
    say(message, quiet)
    return message
