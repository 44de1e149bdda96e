"""Work pools and work queues: where deployments put their runs and where workers look for them.

In the 2022 walkthrough a *work queue* collected runs and an *agent* polled it
(`prefect work-queue create energy_usage`, `prefect agent start <uuid>`). Today
a *work pool* says how runs start (``process``: as local processes) and holds
one or more queues; a *worker* polls a pool's queues. Both calls here are
idempotent: running the cell twice gives the same pool or queue, and a call
with different arguments updates it and says what changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from energy_flows.errors import OrchestrationError
from energy_flows.names import check_prefect_name
from energy_flows.orchestration.common import client, html_table, timestamp
from energy_flows.settings import with_flow_run_command
from energy_flows.vocabulary import DEFAULT_POOL, DEFAULT_QUEUE

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import WorkPool, WorkQueue

#: Pass as ``concurrency_limit`` to remove a limit (None leaves the current one alone).
UNLIMITED = "unlimited"

Limit = int | Literal["unlimited"] | None


@dataclass(frozen=True)
class PoolInfo:
    """A work pool as a learner sees it (what `prefect work-pool inspect` shows, in short).

    ``status`` is READY when at least one worker is online, NOT_READY without
    one, PAUSED when paused. ``changes`` says what the call that returned it
    did: ``("created",)``, ``("concurrency_limit 1 → 2",)`` or ``()`` (nothing).
    ``flow_run_command`` is how a process pool's workers start each flow run:
    the course's fast launcher (:func:`energy_flows.settings.flow_run_command`),
    or None for Prefect's default (``python -m prefect.engine``, in two interpreters).
    """

    name: str
    type: str
    id: str
    status: str
    paused: bool
    concurrency_limit: int | None
    changes: tuple[str, ...] = ()
    flow_run_command: str | None = None

    def _repr_html_(self) -> str:
        return html_table(
            f"Work pool {self.name!r}",
            {
                "type": self.type,
                "status": self.status,
                "paused": self.paused,
                "concurrency limit": self.concurrency_limit,
                "changes": self.changes or "none (already as asked)",
                "flow runs start with": self.flow_run_command or "Prefect's default command",
            },
        )


@dataclass(frozen=True)
class QueueInfo:
    """A work queue as a learner sees it (what `prefect work-queue inspect` shows, in short).

    ``status`` is NOT_READY until a worker polls the queue, READY while it is
    polled (within the last 60 s), PAUSED when paused. Lower ``priority``
    numbers are served first when a worker polls several queues.
    """

    name: str
    pool: str
    id: str
    status: str
    paused: bool
    concurrency_limit: int | None
    priority: int | None
    changes: tuple[str, ...] = ()

    def _repr_html_(self) -> str:
        return html_table(
            f"Work queue {self.name!r} in pool {self.pool!r}",
            {
                "status": self.status,
                "paused": self.paused,
                "concurrency limit": self.concurrency_limit,
                "priority": self.priority,
                "changes": self.changes or "none (already as asked)",
            },
        )


def status_name(value: object) -> str:
    """A status as upper-case text (``"READY"``, ``"ONLINE"`` ...), whatever Prefect gave."""
    name = getattr(value, "name", None) or getattr(value, "value", None) or value
    return str(name).upper() if name is not None else "UNKNOWN"


def _pool_info(pool: WorkPool, changes: tuple[str, ...] = ()) -> PoolInfo:
    variables = (pool.base_job_template or {}).get("variables") or {}
    command = (variables.get("properties") or {}).get("command") or {}
    return PoolInfo(
        name=pool.name,
        type=pool.type,
        id=str(pool.id),
        status="PAUSED" if pool.is_paused else status_name(pool.status),
        paused=bool(pool.is_paused),
        concurrency_limit=pool.concurrency_limit,
        changes=changes,
        flow_run_command=command.get("default") or None,
    )


def _queue_info(queue: WorkQueue, pool: str, changes: tuple[str, ...] = ()) -> QueueInfo:
    return QueueInfo(
        name=queue.name,
        pool=queue.work_pool_name or pool,
        id=str(queue.id),
        status="PAUSED" if queue.is_paused else status_name(queue.status),
        paused=bool(queue.is_paused),
        concurrency_limit=queue.concurrency_limit,
        priority=queue.priority,
        changes=changes,
    )


def _check_limit(limit: Limit, what: str) -> None:
    if limit is None or limit == UNLIMITED:
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise OrchestrationError(
            f"concurrency_limit for {what} must be a whole number ≥ 0 (how many runs may run "
            f"at once), {UNLIMITED!r} to remove the limit, or None to keep it; got {limit!r}."
        )


def _limit_value(limit: Limit) -> int | None:
    """What the server stores for a limit argument: a number, or None for "unlimited"."""
    return None if limit is None or limit == UNLIMITED else int(limit)


def read_pool(c: SyncPrefectClient, name: str) -> WorkPool:
    """Read a pool or raise an error that says how to create it."""
    from prefect.exceptions import ObjectNotFound

    try:
        return c.read_work_pool(name)
    except ObjectNotFound:
        existing = sorted(p.name for p in c.read_work_pools())
        known = f" Existing pools: {', '.join(existing)}." if existing else " There is no pool yet."
        raise OrchestrationError(
            f"There is no work pool {name!r} on this server.{known} "
            f"Create it with ensure_work_pool({name!r})."
        ) from None


def read_queue(c: SyncPrefectClient, name: str, pool: str) -> WorkQueue:
    """Read a queue of a pool or raise an error that says how to create it."""
    from prefect.exceptions import ObjectNotFound

    read_pool(c, pool)
    try:
        return c.read_work_queue_by_name(name, work_pool_name=pool)
    except ObjectNotFound:
        existing = sorted(q.name for q in c.read_work_queues(work_pool_name=pool))
        raise OrchestrationError(
            f"There is no work queue {name!r} in pool {pool!r} (its queues: "
            f"{', '.join(existing) or 'none'}). Create it with "
            f"ensure_work_queue({name!r}, pool={pool!r})."
        ) from None


def served_pool_types() -> list[str]:
    """The work pool types that a worker installed here can serve, e.g. ``["process"]``.

    Prefect's own registry of worker classes (``BaseWorker``, with the
    workers of installed collections such as ``prefect-docker``). Reading it
    imports those collections, so :func:`ensure_work_pool` asks only for a
    type other than ``process``, which Prefect itself always serves.
    """
    from prefect.workers.base import BaseWorker

    return sorted(BaseWorker.get_all_available_worker_types())


def _check_pool_type(type: object) -> dict:
    """The base job template of a pool of ``type``, or an error naming the types served here."""
    if type == "process":
        return _process_job_template()
    if not isinstance(type, str) or not type.strip():
        raise OrchestrationError(
            f"type is the kind of worker that runs the pool's flows, e.g. type='process' (the "
            f"lessons' pools); got {type!r}."
        )
    from prefect.workers.base import BaseWorker

    worker = BaseWorker.get_worker_class_from_type(type)
    if worker is None:
        served = ", ".join(repr(t) for t in served_pool_types())
        raise OrchestrationError(
            f"No worker installed here serves work pools of type {type!r}: such a pool would "
            f"hold runs that no worker ever starts. Types served here: {served}. Use "
            "type='process' (the lessons' pools), or install the package of that worker first "
            "(e.g. prefect-docker for type='docker')."
        )
    return worker.get_default_base_job_template()


def _process_job_template() -> dict:
    """The process worker's base job template, with the classroom's fast flow-run command."""
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with_flow_run_command(template)
    return template


def _give_fast_command(c: Any, pool: Any) -> bool:
    """Make the course's launcher the run command of a process pool that has none; True if changed.

    A pool made with ``prefect work-pool create NAME --type process`` starts
    each run with Prefect's default command (two interpreters); the course's
    (:func:`~energy_flows.settings.flow_run_command`) starts runs about a second sooner. A command
    the pool already has is kept.
    """
    from prefect.client.schemas.actions import WorkPoolUpdate

    template = dict(pool.base_job_template or {})
    if not with_flow_run_command(template):
        return False
    c.update_work_pool(pool.name, WorkPoolUpdate(base_job_template=template))
    return True


def ensure_work_pool(
    name: str = DEFAULT_POOL,
    type: str = "process",
    concurrency_limit: Limit = None,
) -> PoolInfo:
    """Create the work pool ``name`` if it does not exist, or update it; return it.

    Replaces `prefect work-pool create NAME --type process`. A ``process`` pool
    starts each flow run as a local process on the worker's machine; the
    course gives it a faster run command (:func:`flow_run_command`), also when
    the pool was made with Prefect's command and has none.

    Args:
        name: the pool's name.
        type: the kind of infrastructure; the lessons use ``"process"``. A new
            pool of a type that no installed worker serves is refused
            (:func:`served_pool_types`).
        concurrency_limit: how many runs of the whole pool may run at once.
            None keeps the current limit (none for a new pool);
            ``"unlimited"`` removes it.

    Returns:
        A :class:`PoolInfo`; ``changes`` says what this call did.
    """
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    check_prefect_name(name, "work pool")
    _check_limit(concurrency_limit, f"pool {name!r}")
    with client() as c:
        try:
            pool = c.read_work_pool(name)
        except ObjectNotFound:
            template = _check_pool_type(type)  # a new pool must be one a worker here serves
            limit = _limit_value(concurrency_limit)
            try:
                c.create_work_pool(
                    WorkPoolCreate(
                        name=name, type=type, base_job_template=template, concurrency_limit=limit
                    )
                )
                return _pool_info(c.read_work_pool(name), ("created",))
            except ObjectAlreadyExists:  # another kernel created it in between: use that one
                pool = c.read_work_pool(name)
        if pool.type != type:
            raise OrchestrationError(
                f"Work pool {name!r} already exists with type {pool.type!r}, not {type!r}; "
                "a pool's type cannot change. Use another name, or delete it first with "
                f"`prefect work-pool delete {name}`."
            )
        changes: list[str] = []
        if type == "process" and _give_fast_command(c, pool):
            changes.append("flow runs start with the course's launcher")
        if concurrency_limit is not None:
            new = _limit_value(concurrency_limit)
            if new != pool.concurrency_limit:
                c.update_work_pool(name, WorkPoolUpdate(concurrency_limit=new))
                changes.append(f"concurrency_limit {pool.concurrency_limit} → {new}")
        if changes:
            pool = c.read_work_pool(name)
        return _pool_info(pool, tuple(changes))


def ensure_work_queue(
    name: str = DEFAULT_QUEUE,
    pool: str = DEFAULT_POOL,
    concurrency_limit: Limit = None,
    priority: int | None = None,
) -> QueueInfo:
    """Create the work queue ``name`` in ``pool`` if it does not exist, or update it; return it.

    Replaces `prefect work-queue create energy_usage` (2022), today
    `prefect work-queue create energy_usage --pool energy-pool [--limit N --priority N]`.
    The pool must exist (:func:`ensure_work_pool`).

    Args:
        name: the queue's name.
        pool: the work pool that holds it.
        concurrency_limit: how many runs from this queue may run at once.
            None keeps the current limit; ``"unlimited"`` removes it.
        priority: 1 is served first; None keeps the current priority
            (a new queue gets the next free one).
    """
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    check_prefect_name(name, "work queue")
    _check_limit(concurrency_limit, f"queue {name!r}")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or priority < 1
    ):
        raise OrchestrationError(
            f"priority must be a whole number ≥ 1 (1 is served first); got {priority!r}."
        )
    with client() as c:
        read_pool(c, pool)
        try:
            queue = c.read_work_queue_by_name(name, work_pool_name=pool)
        except ObjectNotFound:
            limit = _limit_value(concurrency_limit)
            try:
                queue = c.create_work_queue(
                    name=name, work_pool_name=pool, concurrency_limit=limit, priority=priority
                )
            except ObjectAlreadyExists:  # created by someone else in between
                queue = c.read_work_queue_by_name(name, work_pool_name=pool)
            else:
                return _queue_info(queue, pool, ("created",))
        updates: dict[str, object] = {}
        changes: list[str] = []
        if concurrency_limit is not None:
            new = _limit_value(concurrency_limit)
            if new != queue.concurrency_limit:
                updates["concurrency_limit"] = new
                changes.append(f"concurrency_limit {queue.concurrency_limit} → {new}")
        if priority is not None and priority != queue.priority:
            updates["priority"] = priority
            changes.append(f"priority {queue.priority} → {priority}")
        if updates:
            c.update_work_queue(queue.id, **updates)
            queue = c.read_work_queue(queue.id)
        return _queue_info(queue, pool, tuple(changes))


def _set_pool_paused(name: str, paused: bool) -> PoolInfo:
    from prefect.client.schemas.actions import WorkPoolUpdate

    with client() as c:
        pool = read_pool(c, name)
        if bool(pool.is_paused) == paused:
            return _pool_info(pool)
        c.update_work_pool(name, WorkPoolUpdate(is_paused=paused))
        return _pool_info(c.read_work_pool(name), ("paused" if paused else "resumed",))


def _set_queue_paused(name: str, pool: str, paused: bool) -> QueueInfo:
    with client() as c:
        queue = read_queue(c, name, pool)
        if bool(queue.is_paused) == paused:
            return _queue_info(queue, pool)
        c.update_work_queue(queue.id, is_paused=paused)
        return _queue_info(c.read_work_queue(queue.id), pool, ("paused" if paused else "resumed",))


def pause_work_pool(name: str = DEFAULT_POOL) -> PoolInfo:
    """Stop workers from starting runs of any queue of this pool (runs keep waiting, then Late).

    Replaces `prefect work-pool pause NAME`.
    """
    return _set_pool_paused(name, True)


def resume_work_pool(name: str = DEFAULT_POOL) -> PoolInfo:
    """Let workers start runs of this pool again. Replaces `prefect work-pool resume NAME`."""
    return _set_pool_paused(name, False)


def pause_work_queue(name: str = DEFAULT_QUEUE, pool: str = DEFAULT_POOL) -> QueueInfo:
    """Hold the runs of one queue (others keep running).

    Replaces `prefect work-queue pause NAME --pool POOL`.
    """
    return _set_queue_paused(name, pool, True)


def resume_work_queue(name: str = DEFAULT_QUEUE, pool: str = DEFAULT_POOL) -> QueueInfo:
    """Release a paused queue. Replaces `prefect work-queue resume NAME --pool POOL`."""
    return _set_queue_paused(name, pool, False)


def workers(pool: str = DEFAULT_POOL) -> pd.DataFrame:
    """The workers a pool knows: ``name, status, last_heartbeat`` (sorted by name).

    Replaces `prefect worker ls` / the pool's Workers tab. A worker that stopped
    still shows ONLINE for about 90 s (it is marked OFFLINE after three missed
    heartbeats).
    """
    with client() as c:
        read_pool(c, pool)
        rows = [
            {
                "name": w.name,
                "status": status_name(w.status),
                "last_heartbeat": timestamp(w.last_heartbeat_time),
            }
            for w in c.read_workers_for_work_pool(pool)
        ]
    frame = pd.DataFrame(rows, columns=["name", "status", "last_heartbeat"])
    return frame.sort_values("name", ignore_index=True)
