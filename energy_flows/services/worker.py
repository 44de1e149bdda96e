"""Prefect workers ("agents" in the original walkthrough) as managed processes.

A worker polls a work pool's queues and starts each flow run it picks up as
a new process::

    from energy_flows import PrefectServer, Worker
    server = PrefectServer().start()
    worker = Worker(pool="energy-pool", queues=["energy_usage"]).start()
    worker              # state, pool, queues, PID
    worker.stop()       # runs still in flight are marked Cancelled, and it says so

The worker gets the classroom environment (it asks for runs every second),
and flow runs start through :func:`flow_run_command`: one interpreter per
run, without the slow optional import (see ``launch.py``). A worker stops
when its kernel ends, and when the server it talks to stops.
"""

from __future__ import annotations

import html
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import psutil

from energy_flows import settings
from energy_flows.errors import ServiceError, WaitTimeout
from energy_flows.services import api, process, registry
from energy_flows.services.registry import ServiceRecord
from energy_flows.services.server import LogText
from energy_flows.services.waiting import say, wait_until

#: Seconds a worker gets to stop gracefully before it is killed.
STOP_GRACE_SECONDS = 3.0

#: The message on runs that were in flight when their worker stopped.
IN_FLIGHT_MESSAGE = "The worker {name!r} stopped while this run was in flight."


def flow_run_command() -> str:
    """The command a process worker should start each flow run with.

    ``python -m energy_flows.services.launch engine`` runs Prefect's engine in
    one interpreter (Prefect's default path starts two) and without the
    optional ``rfc3987_syntax`` import: a deployment's run starts about a
    second sooner. Use it as the ``command`` job variable of a process work
    pool or deployment; :class:`Worker` sets it as the pool's default when
    the pool has none.
    """
    return f"{shlex.quote(sys.executable)} -m energy_flows.services.launch engine"


def default_name(pool: str, queues: Sequence[str]) -> str:
    """A readable, file-name-safe worker name, e.g. ``energy-pool-energy_usage``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join([pool, *queues])).strip("-") or "worker"


def worker_argv(pool: str, queues: Sequence[str], name: str, limit: int | None) -> list[str]:
    """The command that runs a process worker (through the launcher)."""
    argv = [sys.executable, "-m", "energy_flows.services.launch", "prefect", "worker", "start"]
    argv += ["--pool", pool, "--type", "process", "--name", name]
    for queue in queues:
        argv += ["--work-queue", queue]
    if limit is not None:
        argv += ["--limit", str(limit)]
    return [*argv, "--no-prompt"]


class Worker:
    """A Prefect process worker for one work pool and one or more of its queues.

    Args:
        pool: the work pool (created, as a process pool, if it does not exist).
        queues: the queues it takes runs from (created when missing).
        name: the worker's name; default ``<pool>-<queues>``. A second
            ``start()`` with the same name reuses the running worker.
        limit: at most this many flow runs at once (default: no limit).
        home: the state folder; default ``$ENERGY_FLOWS_HOME`` or ``./.energy_flows``.
        timeout: seconds to wait until the worker is ONLINE.
        quiet: no progress lines.
        detached: terminal mode (``energy-flows up --worker``): it keeps running
            after this process ends, until ``energy-flows down``.
    """

    _instances: ClassVar[dict[tuple[Path, str], Worker]] = {}

    def __init__(
        self,
        pool: str = "energy-pool",
        queues: Sequence[str] | str = ("energy_usage",),
        name: str | None = None,
        limit: int | None = None,
        home: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
        quiet: bool = False,
        detached: bool = False,
    ) -> None:
        self.pool = pool
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        self.name = name or default_name(pool, self.queues)
        self.limit = limit
        self.home = settings.home_dir(home)
        self.timeout = timeout
        self.quiet = quiet
        self.detached = detached
        self.reused = False
        self.messages: list[str] = []
        self._record: ServiceRecord | None = None
        self._last_record: ServiceRecord | None = None

    # -- life cycle -------------------------------------------------------
    def start(self) -> Worker:
        """Start the worker (or reuse the one with this name) and wait until ONLINE."""
        settings.ensure_home(self.home)
        self.messages = []
        with registry.locked(self.home):
            server = registry.server_record(self.home)
            if server is None or not api.healthy(server.api_url or ""):
                raise ServiceError(
                    f"No Prefect server is running for {self.home}, so the worker "
                    f"{self.name!r} cannot start. Start the server first: "
                    "server = PrefectServer().start()"
                )
            existing = ServiceRecord.load(registry.state_path(self.home, "worker", self.name))
            if existing is not None and existing.alive():
                rec = self._adopt(existing)
            else:
                if existing is not None:
                    existing.remove()
                self._ensure_queues(server.api_url or "", pool_may_be_missing=True)
                rec = self._spawn(server)
                try:
                    self._wait_online(rec)
                    self._ensure_queues(rec.api_url or "")
                except BaseException:
                    stop_worker_record(rec, quiet=True)
                    raise
                self._use_fast_command(rec)
        self._record = self._last_record = rec
        Worker._instances[(self.home, self.name)] = self
        return self

    def _adopt(self, rec: ServiceRecord) -> ServiceRecord:
        if rec.pool != self.pool or sorted(rec.queues) != sorted(self.queues):
            raise ServiceError(
                f"A worker named {self.name!r} already runs for pool {rec.pool!r} and queues "
                f"{rec.queues}. Stop it first (Worker(name={self.name!r}).stop()) "
                "or give this one another name."
            )
        if rec.owner == "kernel" and rec.owner_pid != os.getpid() and not self.detached:
            process.attach(rec.socket)
        self.reused = True
        self._say(f"Reusing worker {self.name!r} (pid {rec.pid}) on {self.pool}: {rec.queues}.")
        return rec

    def _spawn(self, server: ServiceRecord) -> ServiceRecord:
        return registry.launch(
            "worker",
            self.name,
            self.home,
            worker_argv(self.pool, self.queues, self.name, self.limit),
            settings.classroom_env(self.home, api_url=server.api_url),
            detached=self.detached,
            grace=STOP_GRACE_SECONDS,
            watch_pid=server.pid,
            api_url=server.api_url,
            pool=self.pool,
            queues=self.queues,
            limit=self.limit,
            server_pid=server.pid,
        )

    def _wait_online(self, rec: ServiceRecord) -> None:
        url = f"{rec.api_url}/work_pools/{self.pool}/workers/filter"
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
                api.call("POST", f"{api_url}/work_pools/{self.pool}/queues", {"name": queue})
            except api.ApiError as exc:
                if exc.status == 404 and pool_may_be_missing:
                    return  # no pool yet: the worker creates it
                if exc.status != 409:  # 409: it exists already
                    raise ServiceError(
                        f"Could not create work queue {queue!r} in pool {self.pool!r}: {exc}"
                    ) from exc

    def _use_fast_command(self, rec: ServiceRecord) -> None:
        """Make :func:`flow_run_command` the pool's default, unless it has one."""
        url = f"{rec.api_url}/work_pools/{self.pool}"
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

        Flow runs it had in flight are killed with it; their state in the
        API is set to Cancelled (otherwise they would stay RUNNING forever),
        and the returned sentence says which. Safe to call twice.
        """
        rec = ServiceRecord.load(registry.state_path(self.home, "worker", self.name))
        Worker._instances.pop((self.home, self.name), None)
        self._record = None
        if rec is None:
            message = f"Worker {self.name!r} was not running."
            self._say(message)
            return message
        return stop_worker_record(rec, quiet=self.quiet)

    close = stop

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- information ------------------------------------------------------
    @property
    def record(self) -> ServiceRecord | None:
        rec = ServiceRecord.load(registry.state_path(self.home, "worker", self.name))
        if rec is not None and not rec.alive():
            registry.check_server_gone(self.home, quiet=self.quiet)
            rec = None
        self._record = rec
        return rec

    @property
    def pid(self) -> int | None:
        rec = self.record
        return rec.pid if rec else None

    @property
    def log_path(self) -> Path:
        return self.home / "logs" / f"worker-{self.name}.log"

    def status(self) -> str:
        """``"running"`` or ``"stopped"`` (with the reason when the server went away)."""
        if self.record is not None:
            return "running"
        if self._last_record is not None and registry.server_record(self.home) is None:
            return "stopped (its server is gone)"
        return "stopped"

    def logs(self, tail: int = 40) -> LogText:
        """The last ``tail`` lines of the worker's log file."""
        return LogText(process.tail(self.log_path, tail))

    def __repr__(self) -> str:
        rec = self.record
        return (
            f"<Worker {self.name!r} {self.status()} pool={self.pool!r} queues={self.queues} "
            f"pid={rec.pid if rec else None}>"
        )

    def _repr_html_(self) -> str:
        rec = self.record
        state = self.status()
        colour = "#2e7d32" if state == "running" else "#9e9e9e"
        rows: list[tuple[str, Any]] = [
            ("State", f"<b style='color:{colour}'>{html.escape(state)}</b>"),
            ("Pool", html.escape(self.pool)),
            ("Queues", html.escape(", ".join(self.queues))),
            ("Limit", "none" if self.limit is None else str(self.limit)),
        ]
        if rec is not None:
            rows += [("PID", str(rec.pid)), ("Uptime", rec.uptime())]
        rows.append(("Log", html.escape(str(self.log_path))))
        body = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
            for k, v in rows
        )
        return f"<div><b>Prefect worker (agent) {html.escape(self.name)}</b><table>{body}</table></div>"

    def _say(self, message: str) -> None:
        self.messages.append(message)
        say(message, self.quiet)


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def stop_worker_record(rec: ServiceRecord, quiet: bool = False) -> str:
    """Stop the worker of a state file, mark its in-flight runs, remove the file.

    Returns one sentence for the learner.
    """
    flow_run_pids = _descendants(rec.pid)
    started = time.monotonic()
    was_running = rec.stop_process(timeout=STOP_GRACE_SECONDS + 2)
    rec.remove()
    took = time.monotonic() - started
    marked = mark_in_flight_runs(rec, flow_run_pids)
    message = (
        f"Stopped worker {rec.name!r} (pid {rec.pid}) in {took:.1f} s."
        if was_running
        else f"Worker {rec.name!r} had already stopped."
    )
    if marked:
        names = ", ".join(repr(n) for n in marked)
        message += (
            f" It had {len(marked)} run(s) in flight ({names}); they were killed and "
            "marked Cancelled. Start a worker and run them again if you still need them."
        )
    say(message, quiet)
    return message


def mark_in_flight_runs(rec: ServiceRecord, flow_run_pids: set[int]) -> list[str]:
    """Set runs this worker was running to Cancelled; returns their names.

    A run counts as this worker's when it is PENDING or RUNNING in the
    worker's pool and queues, and its process (``infrastructure_pid``) was a
    child of the worker, or is no longer alive.
    """
    if not rec.api_url or not api.healthy(rec.api_url):
        return []
    body = {
        "flow_runs": {
            "state": {"type": {"any_": ["RUNNING", "PENDING", "CANCELLING"]}},
            "work_queue_name": {"any_": rec.queues},
        },
        "work_pools": {"name": {"any_": [rec.pool]}},
        "limit": 200,
    }
    try:
        runs = api.call("POST", f"{rec.api_url}/flow_runs/filter", body, timeout=5) or []
    except (OSError, api.ApiError):
        return []
    marked: list[str] = []
    for run in runs:
        infra = str(run.get("infrastructure_pid") or "")
        pid_text = infra.rsplit(":", 1)[-1]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid not in flow_run_pids and process.is_alive(pid):
            continue
        state = {
            "type": "CANCELLED",
            "name": "Cancelled",
            "message": IN_FLIGHT_MESSAGE.format(name=rec.name),
        }
        try:
            api.call(
                "POST",
                f"{rec.api_url}/flow_runs/{run['id']}/set_state",
                {"state": state, "force": True},
                timeout=5,
            )
            marked.append(run.get("name") or run["id"])
        except (OSError, api.ApiError):
            continue
    return marked


def start_worker(
    pool: str = "energy-pool",
    queues: Sequence[str] | str = ("energy_usage",),
    name: str | None = None,
    limit: int | None = None,
    home: str | os.PathLike[str] | None = None,
    quiet: bool = False,
) -> Worker:
    """Start (or reuse) a worker; the same object on a second call in this kernel."""
    worker = Worker(pool, queues, name=name, limit=limit, home=home, quiet=quiet)
    existing = Worker._instances.get((worker.home, worker.name))
    if existing is not None and existing.record is not None:
        return existing
    return worker.start()
