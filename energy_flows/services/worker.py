"""Prefect workers ("agents" in the original walkthrough) as managed processes.

``Worker(pool, queues).start()`` starts ``prefect worker start`` (or reuses the one
of that name); however it ends, its runs end Crashed, saying why (``recovery.py``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Sequence

from energy_flows import names, settings
from energy_flows.errors import ServiceError
from energy_flows.markup import Markup, element
from energy_flows.options import worker_options  # the same checks as `energy-flows up`
from energy_flows.services import api, control, launch, registry
from energy_flows.services.base import ManagedService
from energy_flows.services.process import SpawnOptions
from energy_flows.services.registry import Kind, ServerRecord, WorkerRecord
from energy_flows.vocabulary import DEFAULT_POOL, DEFAULT_QUEUE

#: Seconds a worker gets to stop gracefully before it is killed.
STOP_GRACE_SECONDS = 3.0


def default_name(pool: str, queues: Sequence[str]) -> str:
    """A readable, file-name-safe worker name, e.g. ``energy-pool-energy_usage``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join([pool, *queues])).strip("-.") or "worker"
    return name[:63]


def worker_argv(pool: str, queues: Sequence[str], name: str, limit: int | None) -> list[str]:
    """The command that runs a process worker (through the launcher)."""
    argv = launch.prefect_argv("worker", "start", "--pool", pool, "--type", "process")
    argv += ["--name", name]
    for queue in queues:
        argv += ["--work-queue", queue]
    if limit is not None:
        argv += ["--limit", str(limit)]
    return argv  # no --no-prompt: see server_argv


class Worker(ManagedService[WorkerRecord]):
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

    kind = Kind.WORKER
    record_class = WorkerRecord
    not_ready = "was not ONLINE"
    fix_hint = (
        "Fix the cause shown above (is the server still running? server.status()), "
        "then run the cell again."
    )
    poll_interval = 0.25

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
        queue_list, limit, timeout = worker_options(pool, queues, limit, timeout, server, auth)
        worker_name = default_name(pool, queue_list) if name is None else name
        names.check_file_safe_name(worker_name, "worker")
        super().__init__(worker_name, home, quiet, detached, timeout)
        self.pool = pool
        self.queues = queue_list
        self.limit = limit
        self.title = f"Prefect worker (agent) {worker_name}"
        self.noun = f"the worker {worker_name!r}"
        self.server = server.rstrip("/") if server else None
        self.auth = auth

    # -- hooks of the life cycle (base.py) --------------------------------------------------
    def _spawn(self, retry: bool) -> WorkerRecord:
        api_url, server = self._server()
        self._ensure_queues(api_url, pool_may_be_missing=True)
        recovery = (sys.executable, "-m", "energy_flows.services.recovery")
        options = SpawnOptions(
            grace=STOP_GRACE_SECONDS,
            # It stops with this home's server; another home's is not ours to watch.
            watch_pid=server.pid if server else None,
            # This home's server lives until this worker's runs are recorded.
            hold=server.socket if server else None,
            # Once it has ended, its runs end Crashed.
            on_exit=(*recovery, *self._recovery_args(api_url, remote=server is None)),
        )
        return self._launch(
            worker_argv(self.pool, self.queues, self.name, self.limit),
            settings.classroom_env(self.home, api_url=api_url),
            options,
            api_url=api_url,
            pool=self.pool,
            queues=self.queues,
            limit=self.limit,
            auth=server.auth if server else settings.auth_string(self.home) is not None,
            remote=server is None,
        )

    def _recovery_args(self, api_url: str, remote: bool) -> list[str]:
        """What the on-exit command needs to find this worker's runs, should its state file
        be damaged by then: its name, pool, queues, start time (and a remote server)."""
        args = ["--home", str(self.home), "--worker", self.name, "--pool", self.pool]
        for queue in self.queues:
            args += ["--queue", queue]
        args += ["--since", f"{time.time():.3f}"]
        return [*args, "--api-url", api_url] if remote else args

    def _server(self) -> tuple[str, ServerRecord | None]:
        """The API to work for, and this home's server record (None for ``server=``)."""
        if self.server is None:
            server = registry.live_server(self.home)
            if server is None or not api.healthy(server.api_url):
                raise ServiceError(
                    f"No Prefect server is running for {self.home}, so the worker "
                    f"{self.name!r} cannot start. Start the server first: "
                    "server = PrefectServer().start()"
                )
            return server.api_url, server
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

    def _ready(self, rec: WorkerRecord) -> bool:
        """ONLINE in its pool, with a heartbeat since it started.

        A worker of the same name that stopped recently still shows ONLINE for
        ~90 s: only a heartbeat from this one counts.
        """
        url = f"{rec.api_url}/work_pools/{api.quote(self.pool)}/workers/filter"
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
                beat = api.timestamp(w.get("last_heartbeat_time"))
                if beat is None or beat >= rec.started_at - 1:
                    return True
        return False

    def _answers(self, rec: WorkerRecord) -> bool:
        return True  # its process runs: that is what `running` means for a worker

    def waiting_for(self, rec: WorkerRecord) -> str:
        return f"worker {self.name!r} to be ONLINE in work pool {self.pool!r}"

    def starting_line(self) -> str:
        return f"Starting worker {self.name!r}"

    def _on_ready(self, rec: WorkerRecord) -> None:
        self._ensure_queues(rec.api_url)
        self._use_fast_command(rec)

    def _adopting(self, rec: WorkerRecord) -> list[str]:
        elsewhere = self.server is not None and rec.api_url != self.server
        if rec.pool != self.pool or sorted(rec.queues) != sorted(self.queues) or elsewhere:
            raise ServiceError(
                f"A worker named {self.name!r} already runs for pool {rec.pool!r} and queues "
                f"{rec.queues} on {rec.api_url}. Stop it first (Worker(name={self.name!r}).stop()) "
                "or give this one another name."
            )
        return [f"Reusing worker {self.name!r} (pid {rec.pid}) on {self.pool}: {rec.queues}."]

    def _ensure_queues(self, api_url: str, pool_may_be_missing: bool = False) -> None:
        """Create the worker's queues that do not exist yet: ``prefect worker start`` creates its
        pool but not its queues (before it starts, or once ONLINE when it made the pool)."""
        for queue in self.queues:
            try:
                api.call(
                    "POST", f"{api_url}/work_pools/{api.quote(self.pool)}/queues", {"name": queue}
                )
            except api.ApiError as exc:
                if exc.status == 404 and pool_may_be_missing:
                    return  # no pool yet: the worker creates it
                if exc.status != 409:  # 409: it exists already
                    from energy_flows.orchestration.common import disk_full_behind

                    what = f"the work queue {queue!r} of pool {self.pool!r}"
                    detail = str(exc).removeprefix(f"HTTP {exc.status}: ")
                    full = disk_full_behind(exc.status, detail, what)
                    if full is not None:
                        raise full from None
                    raise ServiceError(
                        f"Could not create work queue {queue!r} in pool {self.pool!r}: {exc}"
                    ) from exc

    def _use_fast_command(self, rec: WorkerRecord) -> None:
        """Give the pool the fast flow-run launch command, unless it has a command already.

        Pools made with ``ensure_work_pool`` have it; one made by ``prefect
        work-pool create`` or by the worker itself gets it here.
        """
        url = f"{rec.api_url}/work_pools/{api.quote(self.pool)}"
        # Only an optimisation: without it, runs still start, a second later.
        with contextlib.suppress(OSError, api.ApiError, AttributeError, ValueError):
            template = api.call("GET", url, timeout=5).get("base_job_template") or {}
            if settings.with_flow_run_command(template):
                api.call("PATCH", url, {"base_job_template": template}, timeout=5)

    def stop(self) -> str:
        """Stop the worker (SIGTERM, graceful) and clean up after it.

        Flow runs it had in flight stop with it and end Crashed (not Running
        forever, holding the queue's limit); the sentence names them. Safe twice.
        """
        self._mark_stopped()
        with registry.locked(self.home):
            rec = registry.worker_record(self.home, self.name)
            message = (
                f"Worker {self.name!r} was not running."
                if rec is None
                else control.stop(rec, quiet=True)
            )
        self._say(message)
        return message

    # -- information ------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"<Worker {self.name!r} {self.status()} pool={self.pool!r} queues={self.queues} "
            f"pid={self.pid}>"
        )

    @property
    def command(self) -> str:
        """The Prefect command this worker stands for, as you would type it in a terminal (the
        course starts it through its launcher, with the classroom settings)."""
        argv = worker_argv(self.pool, self.queues, self.name, self.limit)
        return " ".join(argv[3:])  # what follows `python -m energy_flows.services.launch`

    def _rows(self, rec: WorkerRecord | None) -> list[tuple[str, str | Markup]]:
        rows: list[tuple[str, str | Markup]] = [
            ("Pool", self.pool),
            ("Queues", ", ".join(self.queues)),
            ("Limit", "none" if self.limit is None else str(self.limit)),
        ]
        if rec is not None:
            rows += [("PID", str(rec.pid)), ("Uptime", rec.uptime())]
        return [*rows, ("Command", element("code", self.command))]
