"""A Dask cluster for one flow run: the batch flow on several processes.

Prefect's default task runner runs a flow's tasks in threads of the flow's own
process. Lesson 07 ("outgrowing one machine") swaps it for prefect-dask's
``DaskTaskRunner``, which sends each task to a ``distributed`` cluster::

    from energy_flows.flows import energy_usage_batch
    from energy_flows.services.cluster import dask_runner

    on_dask = energy_usage_batch.with_options(task_runner=dask_runner(n_workers=2))
    summary = on_dask(n_meters=8)
    summary.attrs["dashboard_link"]       # where the Dask dashboard was while it ran

The flow, its tasks and its results are the same; only where the tasks run
changes. :func:`dask_runner` returns a :class:`ClassroomDaskRunner`, a
``DaskTaskRunner`` set up the way every service of the package is:

* **one cluster per flow run, always closed.** Prefect enters a fresh copy of
  the task runner for every flow run and leaves it when the run ends, however
  it ends (completed, failed, interrupted). The runner starts a
  ``distributed.LocalCluster`` on entering and closes it on leaving, so no
  scheduler or worker process outlives the run.
* **processes, not threads.** Each Dask worker is a separate Python process
  with one thread, watched by a nanny that restarts it, or stops it when it
  uses more than its memory limit.
* **loopback only, free ports.** The scheduler, the workers and the dashboard
  listen on 127.0.0.1; the dashboard's port is a free one
  (:func:`~energy_flows.services.process.free_port`, as for the server).
* **a dashboard link that works here and behind JupyterHub**, built by the
  same helpers as the Prefect UI's (:mod:`~energy_flows.services.urls`):
  ``http://127.0.0.1:<port>/status`` on a laptop,
  ``<hub>/user/<name>/proxy/absolute/<port>/status`` on a hub.

While a run is on, :func:`dashboard_links` lists the dashboards of the
clusters running in this process, and the runner's ``dashboard_link`` says
where its own is; :meth:`ClassroomDaskRunner.describe` gives both the link
and the number of workers (the batch flow logs the link and returns both in
``summary.attrs``).
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

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_N_WORKERS",
    "ClassroomDaskRunner",
    "dashboard_links",
    "dask_runner",
]

#: Two worker processes: one per core of a 2-core laptop.
DEFAULT_N_WORKERS = 2
#: Memory each worker may use. A worker that has run the batch's tasks (Prefect,
#: pandas and the package imported) holds about 200 MB; one meter's pipeline
#: adds a few tens. Over 80 % of the limit the worker pauses, over 95 % its
#: nanny restarts it. Two workers stay under 1.5 GB on a laptop.
DEFAULT_MEMORY_LIMIT = "768MiB"
#: The largest cluster a learner can ask for here (a laptop, not a data centre).
MAX_WORKERS = 16

#: Set in every Dask worker process: Prefect's console handler there stays silent.
#: The workers are child processes that share the kernel's stderr, and the
#: package's rule is that children never write into the notebook (their lines
#: would arrive in bursts, in any order). The tasks' logs still go to the
#: server: they are on the flow run's page in the UI, as from any worker.
WORKER_ENV = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL"}


class _SlowExitIsNormal(logging.Filter):
    """Drops the nanny's warning about a worker it killed at the end of a run.

    A worker that takes more than 4 s to exit once the run is over is killed
    by its nanny: that is how a cluster ends on a busy machine, not a fault.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Worker process still alive after")


_SLOW_EXIT = _SlowExitIsNormal()


def _quiet_cluster_logs() -> None:
    """Keep the cluster's routine chatter out of the notebook (in the kernel, once).

    The scheduler and the nannies live in the kernel's process and log each
    start, connection and stop at INFO: about 30 lines per flow run, in an
    order that depends on timing, which the dashboard shows better. The
    ``distributed`` loggers are set to WARNING (a level set on purpose, to
    WARNING or above, is kept); warnings and errors still show.
    """
    logger = logging.getLogger("distributed")
    if logger.level < logging.WARNING:
        logger.setLevel(logging.WARNING)
    nanny = logging.getLogger("distributed.nanny")
    if _SLOW_EXIT not in nanny.filters:
        nanny.addFilter(_SLOW_EXIT)


#: The dashboards of the clusters running in this process, by runner id:
#: (the link to show, the address on this machine).
_RUNNING: dict[int, tuple[str, str]] = {}
_RUNNING_LOCK = threading.Lock()


def dashboard_links(local: bool = False) -> list[str]:
    """The dashboard links of the Dask clusters running in this process now.

    Empty when no flow run on a :class:`ClassroomDaskRunner` is running. A
    notebook cell (or a test) can read it while a batch runs in another thread.
    ``local=True`` gives the addresses on this machine instead of the links to
    show (they differ behind JupyterHub, where the browser goes through the hub).
    """
    with _RUNNING_LOCK:
        return [pair[1] if local else pair[0] for pair in _RUNNING.values()]


def dashboard_link_for(port: int) -> tuple[str, str, str | None]:
    """Where a dashboard on ``port`` is reached: (link to show, local address, path prefix).

    On a laptop the three are ``http://127.0.0.1:<port>/status``, the same,
    and ``None``. Under JupyterHub the browser goes through
    jupyter-server-proxy's non-stripping ``/proxy/absolute/<port>/`` path, and
    the scheduler is told that prefix (its ``http_prefix``), exactly as the
    Prefect server is (:func:`~energy_flows.services.urls.hub_prefix`); the
    local address then carries the prefix too.
    """
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
    """prefect-dask's ``DaskTaskRunner`` on a local cluster of processes, per flow run.

    Build it with :func:`dask_runner`. Prefect calls :meth:`duplicate` at the
    start of each flow run and enters the copy: entering starts the cluster
    (on a new free dashboard port), leaving closes it. ``dashboard_link`` is
    the link to show while the copy is entered, else ``None``.
    """

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
        """Start the cluster now, not at the first task, so its dashboard is there all run long.

        Prefect also enters a copy of the flow's task runner around every task
        it runs on a Dask worker (to rebuild the flow run's context there).
        That copy must start nothing: it stays the lazy ``DaskTaskRunner``.
        """
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
        """Where this runner sends tasks, for the flow to record and log.

        ``dask_workers``: its worker processes; ``dashboard_link``: the
        dashboard's link while a run is on (``None`` before and after). The
        batch flow reads this from the task runner of its run, when the runner
        has it, and keeps it in its result's ``attrs``.
        """
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
