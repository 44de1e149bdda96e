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
from typing import TYPE_CHECKING

from energy_flows.orchestration import housekeeping
from energy_flows.orchestration.common import DEFAULT_POOL, DEFAULT_QUEUE, client, now_utc
from energy_flows.orchestration.pools import read_pool, read_queue, status_name
from energy_flows.orchestration.runs import deployment_names, read_queue_runs

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun

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


def diagnose(queue: str = DEFAULT_QUEUE, pool: str = DEFAULT_POOL) -> Diagnosis:
    """Why runs in this queue are, or are not, being run: a paragraph, never empty.

    Reads only (it does not count as a poll). ``diagnose(...).blockers``
    lists the reasons one by one; ``.ok`` is True when nothing holds the
    queue back.
    """
    housekeeping.run()
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
        paused_deployments = _paused_deployments(c, waiting + in_queue)
        names = deployment_names(c, due)

    blockers: list[str] = []
    if p.is_paused:
        blockers.append(f"the work pool {pool!r} is paused (resume_work_pool({pool!r}))")
    if q.is_paused:
        blockers.append(
            f"the work queue {queue!r} is paused (resume_work_queue({queue!r}, pool={pool!r}))"
        )
    queue_undo = f"ensure_work_queue({queue!r}, pool={pool!r}, concurrency_limit='unlimited')"
    pool_undo = f"ensure_work_pool({pool!r}, concurrency_limit='unlimited')"
    for reason in (
        _limit_reason(f"queue {queue!r}", q.concurrency_limit, in_queue, queue_undo),
        _limit_reason(f"pool {pool!r}", p.concurrency_limit, in_pool, pool_undo),
    ):
        if reason:
            blockers.append(reason)
    orphaned = [
        r
        for r in in_queue
        if (r.labels or {}).get(WORKER_LABEL) and r.labels[WORKER_LABEL] not in online
    ]
    if orphaned:
        blockers.append(
            f"{len(orphaned)} run(s) are still in flight for a worker that is no longer "
            f"online: {_describe(orphaned)}. Runs of the course's workers are marked Crashed "
            "within seconds; for other workers, Prefect's zombie-run automation does it "
            "(lesson 06)"
        )
    if not online:
        blockers.append(
            f"no worker polls {queue}: none is online in pool {pool!r} (start one with "
            f"`Worker(pool={pool!r}, queues=[{queue!r}]).start()` or "
            f"`prefect worker start --pool {pool} --work-queue {queue}`)"
        )
    elif q.last_polled is None or status_name(q.status) not in ("READY", "PAUSED"):
        blockers.append(
            f"{len(online)} worker(s) are online in {pool!r} ({', '.join(online)}), but none "
            f"polls {queue!r}: start one with --work-queue {queue}"
        )
    if paused_deployments:
        blockers.append(
            "the deployment(s) "
            + ", ".join(repr(n) for n in paused_deployments)
            + " are paused: their schedules add no new runs (resume_deployment(...))"
        )
    if blockers:
        text = f"Runs in {queue!r} are held back: " + "; ".join(blockers) + "."
        return Diagnosis(text, blockers)

    polled = f"{(now - q.last_polled).total_seconds():.0f} s ago" if q.last_polled else "never"
    busy = f"{len(in_queue)} run(s) in flight ({_describe(in_queue)})" if in_queue else ""
    if due:
        deployments = sorted({names.get(r.deployment_id, "?") for r in due})
        start = (
            f"{len(due)} due run(s) of {', '.join(map(repr, deployments))} start at the next poll"
        )
    else:
        start = "no run is due yet"
    parts = [
        f"Nothing holds {queue!r} back: {len(online)} worker(s) online in {pool!r} "
        f"({', '.join(online)}), last poll {polled}",
        busy,
        start,
    ]
    return Diagnosis("; ".join(p for p in parts if p) + ".")
