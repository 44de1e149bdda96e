"""Why a queue's runs are not running: every reason, in words, with what to do.

``diagnose("energy_usage")`` looks at what the server knows (never polling
the queue, so it changes nothing) and names each thing that holds the
queue's runs back:

* the work pool or the queue is paused;
* a concurrency limit (the queue's or the pool's) is taken: by which runs,
  in which state, since when, on which worker;
* runs are in flight for a worker that is no longer online (they hold the
  limit until they are marked Crashed);
* no worker is online in the pool, or none polls this queue;
* a deployment that sends runs here is paused (its schedule adds no runs).

When nothing holds the queue back it says so too, with who polls it: the
answer is never empty.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from energy_flows.orchestration import housekeeping
from energy_flows.orchestration.common import client, now_utc
from energy_flows.orchestration.pools import read_pool, read_queue, status_name
from energy_flows.orchestration.runs import deployment_names, read_queue_runs
from energy_flows.vocabulary import DEFAULT_POOL, DEFAULT_QUEUE

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun, WorkPool, WorkQueue

#: The label Prefect's workers put on the runs they submit.
WORKER_LABEL = "prefect.worker.name"

#: How many runs a reason names before it says "and N more".
NAMED_RUNS = 3


class Diagnosis(str):
    """What :func:`diagnose` found: one readable paragraph (a ``str``).

    ``blockers`` lists each reason the queue's runs are held back (empty when
    nothing holds them); ``ok`` is True when there is none. Displays as plain
    text in a notebook.
    """

    blockers: tuple[str, ...]

    def __new__(cls, text: str, blockers: Iterable[str] = ()) -> Diagnosis:
        obj = super().__new__(cls, text)
        obj.blockers = tuple(blockers)
        return obj

    @property
    def ok(self) -> bool:
        return not self.blockers

    def __repr__(self) -> str:
        return str(self)


def _clock(value: dt.datetime | None) -> str:
    if value is None:
        return "?"
    return value.astimezone(dt.UTC).strftime("%H:%M:%S UTC")


def _describe(runs: list[FlowRun]) -> str:
    """``'a' (Running since 10:01:02 UTC on worker 'agent-1'), ...``."""
    parts = []
    for run in runs[:NAMED_RUNS]:
        state = run.state.name if run.state else "?"
        since = _clock(run.state.timestamp if run.state else None)
        worker = (run.labels or {}).get(WORKER_LABEL)
        on = f" on worker {worker!r}" if worker else ""
        parts.append(f"{run.name!r} ({state} since {since}{on})")
    if len(runs) > NAMED_RUNS:
        parts.append(f"and {len(runs) - NAMED_RUNS} more")
    return ", ".join(parts)


def _pool_active_runs(c: SyncPrefectClient, pool: str) -> list[FlowRun]:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType

    in_flight = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
    return c.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=in_flight))
        ),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        limit=200,
    )


def _limit_reason(what: str, limit: int | None, active: list[FlowRun], undo: str) -> str | None:
    if limit is None:
        return None
    if limit == 0:
        return f"the concurrency limit of {what} is 0, so no run may start ({undo})"
    if len(active) >= limit:
        return (
            f"the concurrency limit of {what} ({limit}) is taken by {len(active)} run(s): "
            f"{_describe(active)}; the next run starts when one of them ends"
        )
    return None


def _paused_deployments(c: SyncPrefectClient, runs: list[FlowRun]) -> list[str]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    ids = {r.deployment_id for r in runs if r.deployment_id}
    if not ids:
        return []
    found = c.read_deployments(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(ids)))
    )
    return sorted(d.name for d in found if d.paused)


@dataclass(frozen=True)
class _Queue:
    """What the server knows about a queue, read once for :func:`diagnose`."""

    name: str
    pool: str
    pool_info: WorkPool
    queue_info: WorkQueue
    online: list[str]  # the names of the pool's workers that are ONLINE
    in_pool: list[FlowRun]  # runs in flight in the pool
    in_queue: list[FlowRun]  # ... of them, in this queue
    due: list[FlowRun]  # Scheduled or Late runs of the queue whose time has come
    paused_deployments: list[str]
    deployment_names: dict[Any, str]
    now: dt.datetime


def _read(queue: str, pool: str) -> _Queue:
    now = now_utc()
    with client() as c:
        p = read_pool(c, pool)
        q = read_queue(c, queue, pool)
        online = sorted(
            w.name for w in c.read_workers_for_work_pool(pool) if status_name(w.status) == "ONLINE"
        )
        in_pool = _pool_active_runs(c, pool)
        in_queue = [r for r in in_pool if r.work_queue_name == queue]
        waiting = read_queue_runs(c, queue, pool, ["Scheduled", "Late"])
        due = [r for r in waiting if r.expected_start_time and r.expected_start_time <= now]
        paused = _paused_deployments(c, waiting + in_queue)
        names = deployment_names(c, due)
    return _Queue(queue, pool, p, q, online, in_pool, in_queue, due, paused, names, now)


def _paused_pool(f: _Queue) -> str | None:
    if not f.pool_info.is_paused:
        return None
    return f"the work pool {f.pool!r} is paused (resume_work_pool({f.pool!r}))"


def _paused_queue(f: _Queue) -> str | None:
    if not f.queue_info.is_paused:
        return None
    return f"the work queue {f.name!r} is paused (resume_work_queue({f.name!r}, pool={f.pool!r}))"


def _queue_limit(f: _Queue) -> str | None:
    undo = f"ensure_work_queue({f.name!r}, pool={f.pool!r}, concurrency_limit='unlimited')"
    return _limit_reason(f"queue {f.name!r}", f.queue_info.concurrency_limit, f.in_queue, undo)


def _pool_limit(f: _Queue) -> str | None:
    undo = f"ensure_work_pool({f.pool!r}, concurrency_limit='unlimited')"
    return _limit_reason(f"pool {f.pool!r}", f.pool_info.concurrency_limit, f.in_pool, undo)


def _orphaned(f: _Queue) -> str | None:
    orphaned = [
        r
        for r in f.in_queue
        if (worker := (r.labels or {}).get(WORKER_LABEL)) and worker not in f.online
    ]
    if not orphaned:
        return None
    return (
        f"{len(orphaned)} run(s) are still in flight for a worker that is no longer "
        f"online: {_describe(orphaned)}. Runs of the course's workers are marked Crashed "
        "within seconds; for other workers, Prefect's zombie-run automation does it "
        "(lesson 06)"
    )


def _no_poller(f: _Queue) -> str | None:
    queue, pool = f.name, f.pool
    if not f.online:
        return (
            f"no worker polls {queue}: none is online in pool {pool!r} (start one with "
            f"`Worker(pool={pool!r}, queues=[{queue!r}]).start()` or "
            f"`prefect worker start --pool {pool} --work-queue {queue}`)"
        )
    polled = f.queue_info.last_polled is not None
    if polled and status_name(f.queue_info.status) in ("READY", "PAUSED"):
        return None
    return (
        f"{len(f.online)} worker(s) are online in {pool!r} ({', '.join(f.online)}), but none "
        f"polls {queue!r}: start one with --work-queue {queue}"
    )


def _paused_deployment(f: _Queue) -> str | None:
    if not f.paused_deployments:
        return None
    return (
        "the deployment(s) "
        + ", ".join(repr(n) for n in f.paused_deployments)
        + " are paused: their schedules add no new runs (resume_deployment(...))"
    )


#: Each thing that can hold a queue's runs back, in the order a diagnosis names them.
_BLOCKERS = (
    _paused_pool,
    _paused_queue,
    _queue_limit,
    _pool_limit,
    _orphaned,
    _no_poller,
    _paused_deployment,
)


def _all_clear(f: _Queue) -> str:
    """Who polls the queue, what is in flight and what starts next."""
    last = f.queue_info.last_polled
    polled = f"{(f.now - last).total_seconds():.0f} s ago" if last else "never"
    busy = f"{len(f.in_queue)} run(s) in flight ({_describe(f.in_queue)})" if f.in_queue else ""
    start = "no run is due yet"
    if f.due:
        deployments = sorted({f.deployment_names.get(r.deployment_id, "?") for r in f.due})
        start = (
            f"{len(f.due)} due run(s) of {', '.join(map(repr, deployments))} start at the next poll"
        )
    parts = [
        f"Nothing holds {f.name!r} back: {len(f.online)} worker(s) online in {f.pool!r} "
        f"({', '.join(f.online)}), last poll {polled}",
        busy,
        start,
    ]
    return "; ".join(p for p in parts if p) + "."


def diagnose(queue: str = DEFAULT_QUEUE, pool: str = DEFAULT_POOL) -> Diagnosis:
    """Why runs in this queue are, or are not, being run: a paragraph, never empty.

    Reads only (it does not count as a poll). ``diagnose(...).blockers``
    lists the reasons one by one; ``.ok`` is True when nothing holds the
    queue back.
    """
    housekeeping.run()
    facts = _read(queue, pool)
    blockers = [reason for check in _BLOCKERS if (reason := check(facts))]
    if blockers:
        return Diagnosis(f"Runs in {queue!r} are held back: " + "; ".join(blockers) + ".", blockers)
    return Diagnosis(_all_clear(facts))
