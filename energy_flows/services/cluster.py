"""A Dask cluster for one flow run: lesson 07's batch flow on several processes.

``flow.with_options(task_runner=dask_runner(n_workers=2))``; the details: docs/dask.md.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Self

from distributed import get_worker
from prefect_dask import DaskTaskRunner

from energy_flows.errors import DataError
from energy_flows.services import urls
from energy_flows.services.process import free_port

#: Two worker processes: one per core of a 2-core laptop.
DEFAULT_N_WORKERS = 2
#: Memory each worker may use: it holds about 200 MB with Prefect and pandas imported,
#: a meter's pipeline adds a few tens; over 95 % its nanny restarts it.
DEFAULT_MEMORY_LIMIT = "768MiB"
#: The largest cluster a learner can ask for here (a laptop, not a data centre).
MAX_WORKERS = 16

#: Set in every Dask worker process: children never write into the notebook (the
#: workers share the kernel's stderr); the tasks' logs still go to the server.
WORKER_ENV = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL"}


def _not_a_slow_exit(record: logging.LogRecord) -> bool:
    """A log filter that drops the nanny's warning about a worker it killed at the end of a
    run (more than 4 s to exit): that is how a cluster ends on a busy machine, not a fault."""
    return not str(record.msg).startswith("Worker process still alive after")


def _quiet_cluster_logs() -> None:
    """Keep the cluster's INFO chatter (its scheduler and nannies live in the kernel) out of
    the notebook: ``distributed`` logs at WARNING, unless set higher on purpose."""
    logger = logging.getLogger("distributed")
    if logger.level < logging.WARNING:
        logger.setLevel(logging.WARNING)
    nanny = logging.getLogger("distributed.nanny")
    if _not_a_slow_exit not in nanny.filters:
        nanny.addFilter(_not_a_slow_exit)


#: The dashboards of the clusters running in this process, by runner id:
#: (the link to show, the address on this machine).
_RUNNING: dict[int, tuple[str, str]] = {}
_RUNNING_LOCK = threading.Lock()


def dashboard_links(local: bool = False) -> list[str]:
    """The dashboard links of the Dask clusters running in this process now ([] when none).

    ``local=True``: the addresses on this machine, not the links to show
    (they differ behind JupyterHub, where the browser goes through the hub).
    """
    with _RUNNING_LOCK:
        return [pair[1] if local else pair[0] for pair in _RUNNING.values()]


def dashboard_link_for(port: int) -> tuple[str, str, str | None]:
    """Where a dashboard on ``port`` is reached: (link to show, local address, path prefix,
    which the scheduler is told as its ``http_prefix`` behind JupyterHub)."""
    prefix = urls.hub_prefix(port)
    shown = urls.ui_url_for(port, prefix).rstrip("/") + "/status"
    local = f"http://127.0.0.1:{port}{prefix or ''}/status"
    return shown, local, prefix


def _check_n_workers(n_workers: object) -> int:
    if (
        isinstance(n_workers, bool)
        or not isinstance(n_workers, int)
        or not 1 <= n_workers <= MAX_WORKERS
    ):
        raise DataError(
            f"n_workers is the number of Dask worker processes, a whole number from 1 to "
            f"{MAX_WORKERS}; got {n_workers!r}. Example: dask_runner(n_workers=2), one per core."
        )
    return n_workers


def _check_memory_limit(memory_limit: str | int) -> str | int:
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(memory_limit)
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"memory_limit is the memory of one Dask worker, e.g. '1GiB' or '768MiB'; "
            f"got {memory_limit!r}."
        ) from exc
    if size < 256 * 2**20:
        raise DataError(
            f"memory_limit={memory_limit!r} is too small: a worker needs about 200 MB just to "
            "import Prefect and pandas. Give it at least '256MiB' (the default is "
            f"{DEFAULT_MEMORY_LIMIT!r})."
        )
    return memory_limit


def _in_dask_worker() -> bool:
    """Whether this code runs inside a Dask worker (a task of a Dask flow run)."""
    try:
        get_worker()
    except ValueError:
        return False
    return True


class ClassroomDaskRunner(DaskTaskRunner):
    """prefect-dask's ``DaskTaskRunner`` on a local cluster of processes made for each flow
    run: entering its :meth:`duplicate` starts the cluster, leaving closes it (docs/dask.md)."""

    def __init__(
        self,
        n_workers: int = DEFAULT_N_WORKERS,
        memory_limit: str | int = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        self.n_workers = _check_n_workers(n_workers)
        self.memory_limit = _check_memory_limit(memory_limit)
        super().__init__(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": self.n_workers,
                "threads_per_worker": 1,
                "processes": True,
                "memory_limit": self.memory_limit,
                "host": "127.0.0.1",
                "env": dict(WORKER_ENV),
                # The dashboard port is chosen when a run starts (__enter__).
            },
        )
        self.dashboard_link: str | None = None
        self.dashboard_local: str | None = None

    def duplicate(self) -> ClassroomDaskRunner:
        """A new runner with the same settings (Prefect makes one per flow run)."""
        return type(self)(n_workers=self.n_workers, memory_limit=self.memory_limit)

    def __enter__(self) -> Self:
        """Start the cluster now, not at the first task, so its dashboard is there all run long
        (inside a Dask worker Prefect enters a copy around each task: it starts nothing)."""
        if _in_dask_worker():
            super().__enter__()
            return self
        _quiet_cluster_logs()
        port = free_port()
        self.dashboard_link, self.dashboard_local, prefix = dashboard_link_for(port)
        self.cluster_kwargs["dashboard_address"] = f"127.0.0.1:{port}"
        if prefix:
            self.cluster_kwargs["scheduler_kwargs"] = {"http_prefix": prefix}
        super().__enter__()
        try:
            self.client  # noqa: B018  # the property creates the cluster and its client
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        with _RUNNING_LOCK:
            _RUNNING[id(self)] = (self.dashboard_link, self.dashboard_local)
        return self

    def __exit__(self, *args: Any) -> None:
        """Close the client and the cluster (workers, nannies, scheduler), whatever happened."""
        with _RUNNING_LOCK:
            _RUNNING.pop(id(self), None)
        try:
            super().__exit__(*args)
        finally:
            self.dashboard_link = self.dashboard_local = None

    def describe(self) -> dict[str, Any]:
        """Where this runner sends tasks: ``dask_workers``, and ``dashboard_link`` while a run
        is on (else None). The batch flow logs it and keeps it in its result's ``attrs``."""
        return {"dask_workers": self.n_workers, "dashboard_link": self.dashboard_link}

    def __repr__(self) -> str:
        return (
            f"ClassroomDaskRunner(n_workers={self.n_workers}, memory_limit={self.memory_limit!r})"
        )


def dask_runner(
    n_workers: int = DEFAULT_N_WORKERS, memory_limit: str | int = DEFAULT_MEMORY_LIMIT
) -> ClassroomDaskRunner:
    """A Dask task runner for a flow: ``flow.with_options(task_runner=dask_runner())``.

    Args:
        n_workers: worker processes (1 to 16); each runs one task at a time.
            Two suit a 2-core laptop: more processes than cores only wait
            for each other.
        memory_limit: memory of one worker (``"1GiB"``, ``"768MiB"``, or bytes).

    Raises :class:`~energy_flows.errors.DataError` for values no cluster can
    start with, before anything starts.
    """
    return ClassroomDaskRunner(n_workers=n_workers, memory_limit=memory_limit)
