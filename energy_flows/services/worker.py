"""Prefect workers ("agents" in the original walkthrough) as managed processes.

A worker polls a work pool's queues and starts each flow run it picks up as
a new process::

    from energy_flows import PrefectServer, Worker
    server = PrefectServer().start()
    worker = Worker(pool="energy-pool", queues=["energy_usage"]).start()
    worker              # state, pool, queues, PID
    worker.stop()       # runs still in flight end Crashed, and it says so

The worker gets the classroom environment (it asks for runs every second),
and flow runs start through :func:`flow_run_command`: one interpreter per
run, without the slow optional import (see ``launch.py``).

However a worker ends (``stop()``, its kernel restarting or shutting down,
Ctrl-C of ``make lab``, a SIGKILL, its server stopping), the runs it had
taken and not finished end Crashed, with a message that says why, within
seconds: its watchdog runs :mod:`~energy_flows.services.recovery` once the
worker has gone. Its watchdog also holds the server as an owner, so a
kernel's server outlives that kernel's workers long enough for this.

A worker can also join a server that another home (another learner, the
instructor) runs, as in a class sharing one server::

    worker = Worker("energy-pool", ["energy_usage"], server="http://10.0.0.5:4200/api",
                    auth="class:the-password")

It runs, and keeps its logs, in this home; the password is kept in the home
(0600) for the processes it starts. Its runs end Crashed when it ends, as above.
"""

from __future__ import annotations

import html
import os
import re
import sys
import urllib.parse
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from energy_flows import names, settings
from energy_flows.errors import OrchestrationError, ServiceError, WaitTimeout
from energy_flows.services import api, control, process, registry
from energy_flows.services.base import ManagedService, launch
from energy_flows.services.registry import ServiceRecord
from energy_flows.vocabulary import DEFAULT_POOL, DEFAULT_QUEUE
from energy_flows.waiting import wait_until

#: Seconds a worker gets to stop gracefully before it is killed.
STOP_GRACE_SECONDS = 3.0


def default_name(pool: str, queues: Sequence[str]) -> str:
    """A readable, file-name-safe worker name, e.g. ``energy-pool-energy_usage``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join([pool, *queues])).strip("-.") or "worker"
    return name[:63]


def worker_argv(pool: str, queues: Sequence[str], name: str, limit: int | None) -> list[str]:
    """The command that runs a process worker (through the launcher)."""
    argv = [sys.executable, "-m", "energy_flows.services.launch", "prefect", "worker", "start"]
    argv += ["--pool", pool, "--type", "process", "--name", name]
    for queue in queues:
        argv += ["--work-queue", queue]
    if limit is not None:
        argv += ["--limit", str(limit)]
    # No --no-prompt: its place moved between Prefect releases (a root option before 3.9,
    # an option of the command since); PREFECT_CLI_PROMPT=false in the environment
    # (settings.py) says the same to every Prefect 3.
    return argv


def recovery_argv(home: os.PathLike[str] | str, name: str) -> list[str]:
    """What a worker's watchdog runs once the worker has ended (marks its runs Crashed)."""
    module = "energy_flows.services.recovery"
    return [sys.executable, "-m", module, "--home", str(home), "--worker", name]


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class Worker(ManagedService):
    """A Prefect process worker for one work pool and one or more of its queues.

    Args:
        pool: the work pool (created, as a process pool, if it does not exist).
        queues: the queues it takes runs from (created when missing).
        name: the worker's name; default ``<pool>-<queues>``. A second
            ``start()`` with the same name reuses the running worker. Letters,
            digits, ``_ . -`` (it also names the worker's log and state files).
        limit: at most this many flow runs at once (default: no limit).
        home: the state folder; default :func:`energy_flows.settings.home_dir`
            (``$ENERGY_FLOWS_HOME``, else ``.energy_flows/`` of this checkout).
        timeout: seconds to wait until the worker is ONLINE.
        quiet: no progress lines.
        detached: terminal mode (``energy-flows up --worker``): it keeps running
            after this process ends, until ``energy-flows down``.
        server: the API address of a server this home does not run, e.g.
            ``"http://127.0.0.1:4200/api"`` (default: this home's server).
        auth: that server's ``"user:password"``, when it asks for one.

    Bad names and values raise :class:`~energy_flows.errors.OrchestrationError`
    at once, saying what to change.
    """

    kind = "worker"

    _instances: ClassVar[dict[tuple[str, str], Worker]] = {}

    def __init__(
        self,
        pool: str = DEFAULT_POOL,
        queues: Sequence[str] | str = (DEFAULT_QUEUE,),
        name: str | None = None,
        limit: int | None = None,
        home: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
        quiet: bool = False,
        detached: bool = False,
        server: str | None = None,
        auth: str | None = None,
    ) -> None:
        names.check_prefect_name(pool, "work pool")
        if server is not None and not (
            isinstance(server, str) and server.startswith(("http://", "https://"))
        ):
            raise OrchestrationError(
                "server is the API address of a Prefect server, e.g. "
                f"'http://127.0.0.1:4200/api' (server.api_url); got {server!r}."
            )
        if auth is not None:
            if server is None:
                raise OrchestrationError(
                    "auth goes with server=: the password of a server this home does not run. "
                    "This home's own server gets one with PrefectServer(auth=True)."
                )
            settings.check_auth_string(auth)
        queue_list = [queues] if isinstance(queues, str) else list(queues)
        if not queue_list:
            raise OrchestrationError(
                f"A worker needs at least one queue to poll, e.g. queues=['energy_usage']; "
                f"got {queues!r}."
            )
        for queue in queue_list:
            names.check_prefect_name(queue, "work queue")
        worker_name = default_name(pool, queue_list) if name is None else name
        names.check_file_safe_name(worker_name, "worker")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise OrchestrationError(
                f"limit is the most runs the worker takes at once: a whole number ≥ 1, "
                f"or None for no limit; got {limit!r}."
            )
        super().__init__(worker_name, home, quiet, detached)
        self.pool = pool
        self.queues = queue_list
        self.limit = limit
        self.timeout = timeout
        self.title = f"Prefect worker (agent) {worker_name}"
        self.server = server.rstrip("/") if server else None
        self.auth = auth

    # -- life cycle -------------------------------------------------------
    def start(self) -> Worker:
        """Start the worker (or reuse the one with this name) and wait until ONLINE."""
        settings.ensure_home(self.home)
        self.messages = []
        with registry.locked(self.home):
            for line in control.reconcile(self.home, quiet=True):
                self._say(line)
            api_url, server = self._server()
            existing = registry.worker_record(self.home, self.name)
            if existing is not None and existing.alive():
                rec = self._adopt(existing)
            else:
                self._ensure_queues(api_url, pool_may_be_missing=True)
                rec = self._spawn(api_url, server)
                try:
                    self._wait_online(rec)
                    self._ensure_queues(rec.api_url or "")
                except BaseException:
                    control.stop_worker(rec, quiet=True)
                    raise
                self._use_fast_command(rec)
        self._record = rec
        Worker._instances[(str(self.home), self.name)] = self
        return self

    def _server(self) -> tuple[str, ServiceRecord | None]:
        """The API to work for, and this home's server record (None for ``server=``)."""
        if self.server is None:
            server = registry.live_server(self.home)
            if server is None or not api.healthy(server.api_url or ""):
                raise ServiceError(
                    f"No Prefect server is running for {self.home}, so the worker "
                    f"{self.name!r} cannot start. Start the server first: "
                    "server = PrefectServer().start()"
                )
            return server.api_url or "", server
        if not api.healthy(self.server):
            raise ServiceError(
                f"No Prefect server answers at {self.server} (GET {self.server}/health), so "
                f"the worker {self.name!r} cannot join it. Check the address (it ends in /api) "
                "and that the server runs. Nothing was started."
            )
        try:
            # With the password given (none: this home's), before anything is kept.
            api.call(
                "POST", f"{self.server}/work_pools/filter", {"limit": 1}, timeout=5, auth=self.auth
            )
        except api.ApiError as exc:
            if exc.status != 401:
                raise
            given = "the one given" if self.auth else "none was given"
            raise ServiceError(
                f"The server at {self.server} asks for a password and refused {given} "
                "(HTTP 401). Pass the one its owner gives you: Worker(..., server=..., "
                "auth='user:password'). Nothing was started or changed."
            ) from exc
        if self.auth is not None:
            settings.save_auth_string(self.auth, self.home)  # its processes send it
        return self.server, None

    def _adopt(self, rec: ServiceRecord) -> ServiceRecord:
        elsewhere = self.server is not None and rec.api_url != self.server
        if rec.pool != self.pool or sorted(rec.queues) != sorted(self.queues) or elsewhere:
            raise ServiceError(
                f"A worker named {self.name!r} already runs for pool {rec.pool!r} and queues "
                f"{rec.queues} on {rec.api_url}. Stop it first (Worker(name={self.name!r}).stop()) "
                "or give this one another name."
            )
        if rec.owner == "kernel" and rec.owner_pid != os.getpid() and not self.detached:
            process.attach(rec.socket)
        self._mark_reused(rec)
        self._say(f"Reusing worker {self.name!r} (pid {rec.pid}) on {self.pool}: {rec.queues}.")
        return rec

    def _spawn(self, api_url: str, server: ServiceRecord | None) -> ServiceRecord:
        """Start the worker for ``api_url``: this home's ``server``, or (None) another's."""
        rec = launch(
            "worker",
            self.name,
            self.home,
            worker_argv(self.pool, self.queues, self.name, self.limit),
            settings.classroom_env(self.home, api_url=api_url),
            detached=self.detached,
            grace=STOP_GRACE_SECONDS,
            # It stops with this home's server; another home's is not ours to watch.
            watch_pid=server.pid if server else None,
            # This home's server lives until this worker's runs are recorded.
            hold=server.socket if server else None,
            on_exit=recovery_argv(self.home, self.name),
            api_url=api_url,
            pool=self.pool,
            queues=self.queues,
            limit=self.limit,
            server_pid=server.pid if server else None,
            auth=server.auth if server else settings.auth_string(self.home) is not None,
            remote=server is None,
        )
        self.started_here = True
        return rec

    def _wait_online(self, rec: ServiceRecord) -> None:
        url = f"{rec.api_url}/work_pools/{_quote(self.pool)}/workers/filter"
        since = rec.started_at - 1

        def online() -> bool:
            if not rec.alive():
                raise self._failed(rec, "stopped while starting")
            try:
                workers = api.call("POST", url, {"limit": 200}, timeout=2)
            except api.ApiError as exc:
                if exc.status == 404:  # the worker has not created its pool yet
                    return False
                raise
            except OSError:
                return False
            for w in workers or []:
                if w.get("name") == self.name and w.get("status") == "ONLINE":
                    beat = _timestamp(w.get("last_heartbeat_time"))
                    # A worker of the same name that stopped recently still shows
                    # ONLINE for ~90 s: only a heartbeat from this one counts.
                    if beat is None or beat >= since:
                        return True
            return False

        try:
            wait_until(
                online,
                self.timeout,
                what=f"worker {self.name!r} to be ONLINE in work pool {self.pool!r}",
                progress=None if self.quiet else f"Starting worker {self.name!r}",
                interval=0.1,
                max_interval=0.25,
            )
        except WaitTimeout as exc:
            raise self._failed(rec, f"was not ONLINE within {self.timeout:g} s") from exc

    def _failed(self, rec: ServiceRecord, what: str) -> ServiceError:
        lines = process.tail(rec.log, 20, start=rec.log_offset)
        return ServiceError(
            f"The worker {self.name!r} {what}; it is not running.\n"
            f"Last 20 lines of {rec.log}:\n{lines}\n"
            "Fix the cause shown above (is the server still running? server.status()), "
            "then run the cell again."
        )

    def _ensure_queues(self, api_url: str, pool_may_be_missing: bool = False) -> None:
        """Create the worker's queues that do not exist yet.

        ``prefect worker start`` creates its pool but not its queues, and a
        worker asking for a queue that does not exist gets no runs at all.
        When the pool already exists the queues are created before the worker
        starts, so it polls them from its first second; otherwise the worker
        creates the pool and its queues are created once it is ONLINE.
        """
        for queue in self.queues:
            try:
                api.call(
                    "POST", f"{api_url}/work_pools/{_quote(self.pool)}/queues", {"name": queue}
                )
            except api.ApiError as exc:
                if exc.status == 404 and pool_may_be_missing:
                    return  # no pool yet: the worker creates it
                if exc.status != 409:  # 409: it exists already
                    raise ServiceError(
                        f"Could not create work queue {queue!r} in pool {self.pool!r}: {exc}"
                    ) from exc

    def _use_fast_command(self, rec: ServiceRecord) -> None:
        """Make :func:`flow_run_command` the pool's default, unless it has one."""
        # Imported here: orchestration.common brings pandas, which `energy-flows up`
        # (reusing a server) and `status` should not pay for.
        from energy_flows.orchestration.common import flow_run_command

        url = f"{rec.api_url}/work_pools/{_quote(self.pool)}"
        try:
            pool = api.call("GET", url, timeout=5)
            template = pool.get("base_job_template") or {}
            prop = template.get("variables", {}).get("properties", {}).get("command")
            if prop is None or prop.get("default"):
                return
            prop["default"] = flow_run_command()
            api.call("PATCH", url, {"base_job_template": template}, timeout=5)
        except (OSError, api.ApiError, AttributeError, ValueError):
            pass  # only an optimisation: runs still start, a second later

    def stop(self) -> str:
        """Stop the worker (SIGTERM, graceful) and clean up after it.

        Flow runs it had in flight are stopped with it; in the API they end
        Crashed (otherwise they would stay Running forever and hold the
        queue's concurrency limit), and the returned sentence names them.
        Safe to call twice.
        """
        Worker._instances.pop((str(self.home), self.name), None)
        self._mark_stopped()
        with registry.locked(self.home):
            rec = registry.worker_record(self.home, self.name)
            if rec is None:
                message = f"Worker {self.name!r} was not running."
                self._say(message)
                return message
            message = control.stop_worker(rec, quiet=True)
        self._say(message)
        return message

    # -- information ------------------------------------------------------
    def __repr__(self) -> str:
        rec = self.record
        return (
            f"<Worker {self.name!r} {self.status()} pool={self.pool!r} queues={self.queues} "
            f"pid={rec.pid if rec else None}>"
        )

    @property
    def command(self) -> str:
        """The Prefect command this worker stands for, as you would type it in a terminal.

        ``prefect worker start --pool ... --type process --name ... --work-queue ...``;
        the course starts it through its launcher, with the classroom settings
        (and the server's address) in its environment.
        """
        argv = worker_argv(self.pool, self.queues, self.name, self.limit)
        return " ".join(argv[3:])  # what follows `python -m energy_flows.services.launch`

    def _rows(self, rec: ServiceRecord | None) -> list[tuple[str, str]]:
        rows = [
            ("Pool", html.escape(self.pool)),
            ("Queues", html.escape(", ".join(self.queues))),
            ("Limit", "none" if self.limit is None else str(self.limit)),
        ]
        if rec is not None:
            rows += [("PID", str(rec.pid)), ("Uptime", rec.uptime())]
        return [*rows, ("Command", f"<code>{html.escape(self.command)}</code>")]


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def start_worker(
    pool: str = DEFAULT_POOL,
    queues: Sequence[str] | str = (DEFAULT_QUEUE,),
    name: str | None = None,
    limit: int | None = None,
    home: str | os.PathLike[str] | None = None,
    quiet: bool = False,
) -> Worker:
    """Start (or reuse) a worker; the same object on a second call in this kernel."""
    worker = Worker(pool, queues, name=name, limit=limit, home=home, quiet=quiet)
    existing = Worker._instances.get((str(worker.home), worker.name))
    if existing is not None and existing.record is not None:
        return existing
    return worker.start()
