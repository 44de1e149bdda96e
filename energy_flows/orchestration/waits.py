"""Waiting for runs: finished, Late, or a queue drained; one function, errors that explain.

``wait_for`` is the one way the lessons, the tour, the screenshots and the
tests wait on runs. Each wait polls the server (reads only, never a queue
poll), prints one line whenever the picture changes, and on timeout raises
:class:`~energy_flows.errors.WaitTimeout` whose message names what is still
missing and why (``diagnose()``): no worker, a paused queue, a concurrency
limit held by runs whose worker is gone ... Before every poll the classroom's
housekeeping runs, so runs a dead worker left behind are marked Crashed
rather than waited on forever.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any, Literal

import pandas as pd

from energy_flows.errors import OrchestrationError
from energy_flows.orchestration import housekeeping
from energy_flows.orchestration.common import client, disk_full_note, now_utc
from energy_flows.orchestration.diagnosis import diagnose
from energy_flows.orchestration.pools import read_queue
from energy_flows.orchestration.runs import (
    RunInfo,
    deployment_names,
    queue_runs,
    read_queue_runs,
    read_run,
    run_uuid,
    runs_frame,
)
from energy_flows.vocabulary import DEFAULT_POOL, DEFAULT_QUEUE, RUN_STATES, WAITING_STATES

Until = Literal["completed", "late", "empty"]


def _summary(frame: pd.DataFrame) -> str:
    counts = frame["state"].value_counts()
    order = [s for s in RUN_STATES if s in counts] + sorted(set(counts.index) - set(RUN_STATES))
    return ", ".join(f"{counts[s]} {s}" for s in order) or "no runs"


class _Reporter:
    """Prints a progress line when it changes (not when quiet), and keeps house once a second."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.last = ""
        self.kept = 0.0

    def __call__(self, line: str) -> None:
        if self.show and line != self.last:
            print(line, flush=True)
        self.last = line

    def keep_house(self) -> None:
        if time.monotonic() - self.kept >= 1.0:
            housekeeping.run()
            self.kept = time.monotonic()


def _is_runs(target: Any) -> bool:
    return isinstance(target, list | tuple | RunInfo | uuid.UUID) or hasattr(target, "state")


def wait_for(
    target: Any = None,
    until: Until = "completed",
    timeout: float = 60,
    queue: str = DEFAULT_QUEUE,
    pool: str = DEFAULT_POOL,
    progress: bool = True,
) -> Any:
    """Wait until something happens, with a timeout that explains what is missing.

    * ``until="completed"``: ``target`` is a run (RunInfo or id) or a list of runs; wait
      until each is finished (Completed, Failed, Crashed or Cancelled) and return its
      RunInfo (a list for a list).
    * ``until="late"``: with runs as ``target``, wait until none of them is Scheduled any
      more (each turned Late, or a worker took it) and return a table of their ``name``
      and ``state``; with a queue name (or nothing: ``queue``), wait until the queue holds
      at least one Late run and return those runs (like :func:`queue_runs`).
    * ``until="empty"``: wait until no run of the queue is due or busy (nothing
      Late, Pending, Running, and no Scheduled run a worker could take now, i.e. due
      within ``PREFECT_WORKER_PREFETCH_SECONDS``; a schedule's later runs do not
      count); return the queue's runs.

    ``progress=True`` prints one line each time the picture changes. On timeout a
    :class:`~energy_flows.errors.WaitTimeout` says what is still missing and why, e.g.
    "3 runs are still Late in energy_usage: ... no worker is online in pool ...".
    """
    from energy_flows.waiting import quiet_by_default

    if until not in ("completed", "late", "empty"):
        raise OrchestrationError(f"until must be 'completed', 'late' or 'empty'; got {until!r}.")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise OrchestrationError(f"timeout must be a number of seconds > 0; got {timeout!r}.")
    report = _Reporter(progress and not quiet_by_default())
    if until == "completed":
        if target is None:
            raise OrchestrationError(
                "wait_for(until='completed') needs the run to wait for: wait_for(run) with "
                "the RunInfo that trigger() returned."
            )
        return _wait_runs(target, "final", timeout, queue, pool, report)
    if until == "late" and target is not None and _is_runs(target):
        return _wait_runs(target, "not scheduled", timeout, queue, pool, report)
    queue_name = queue if target is None else str(target)
    if until == "late":
        return _wait_queue_late(queue_name, pool, timeout, report)
    return _wait_queue_empty(queue_name, pool, timeout, report)


def _wait_runs(
    target: Any, goal: str, timeout: float, queue: str, pool: str, report: _Reporter
) -> Any:
    from energy_flows.waiting import wait_until

    many = isinstance(target, list | tuple)
    ids = [run_uuid(t) for t in (target if many else [target])]
    latest: dict[uuid.UUID, RunInfo] = {}

    def reached(run: RunInfo) -> bool:
        return run.is_final if goal == "final" else run.state != "Scheduled"

    def check() -> list[RunInfo] | None:
        report.keep_house()
        for run_id in ids:
            if run_id not in latest or not reached(latest[run_id]):
                latest[run_id] = read_run(run_id)
        states = pd.Series([latest[i].state for i in ids])
        report(
            "  runs: "
            + ", ".join(f"{n} {s}" for s, n in states.value_counts().sort_index().items())
        )
        return [latest[i] for i in ids] if all(reached(latest[i]) for i in ids) else None

    def why() -> str:
        waiting = [latest[i] for i in ids if i in latest and not reached(latest[i])]
        if not waiting:
            return ""
        names = ", ".join(f"{r.name!r} ({r.state})" for r in waiting[:5])
        full = disk_full_note("the runs' new states (and the worker's logs)")
        still = f"Still {'unfinished' if goal == 'final' else 'Scheduled'}: {names}. "
        return still + (full or diagnose(queue, pool))

    what = f"{len(ids)} run(s) to " + ("finish" if goal == "final" else "turn Late")
    done = wait_until(check, timeout, what=what, missing=why, max_interval=0.5)
    if goal == "final":
        return done if many else done[0]
    return pd.DataFrame(
        [{"name": r.name, "state": r.state} for r in done], columns=["name", "state"]
    )


def _wait_queue_late(queue: str, pool: str, timeout: float, report: _Reporter) -> pd.DataFrame:
    from energy_flows.waiting import wait_until

    def late() -> tuple[pd.DataFrame] | None:
        report.keep_house()
        frame = queue_runs(queue, pool, states=["Late"])
        report(f"  {queue}: {len(frame)} Late")
        return (frame,) if len(frame) else None  # a tuple: wait_until tests truthiness

    def why_not_late() -> str:
        frame = queue_runs(queue, pool, states=list(WAITING_STATES))
        due = frame[frame["scheduled"] <= pd.Timestamp(now_utc())]
        if frame.empty:
            return (
                f"There are no Scheduled runs in {queue}: deploy with a schedule "
                "(interval=...) or trigger() a run."
            )
        if len(due) == 0:
            return f"The next run in {queue} is scheduled for {frame['scheduled'].min()}."
        return (
            f"Runs in {queue}: {_summary(frame)}. A worker may be picking them up "
            "before they become Late. " + diagnose(queue, pool)
        )

    (frame,) = wait_until(
        late, timeout, what=f"a run to become Late in {queue}", missing=why_not_late
    )
    return frame


def _wait_queue_empty(queue: str, pool: str, timeout: float, report: _Reporter) -> pd.DataFrame:
    from energy_flows.waiting import wait_until

    def busy_runs() -> pd.DataFrame:
        # Runs in flight (Pending, Running) count whenever they were scheduled, and
        # so do Scheduled runs a worker may take now: a worker takes a run up to
        # PREFECT_WORKER_PREFETCH_SECONDS (10 s) before its time. A schedule's later
        # runs wait legitimately and do not count.
        from prefect.client.schemas.objects import StateType
        from prefect.settings import get_current_settings

        soon = dt.timedelta(seconds=get_current_settings().worker.prefetch_seconds + 1)
        with client() as c:
            read_queue(c, queue, pool)
            horizon = now_utc() + soon
            runs = [
                run
                for run in read_queue_runs(c, queue, pool, list(WAITING_STATES))
                if run.state_type != StateType.SCHEDULED
                or (run.expected_start_time is not None and run.expected_start_time <= horizon)
            ]
            return runs_frame(runs, deployment_names(c, runs))

    def empty() -> tuple[pd.DataFrame] | None:
        report.keep_house()
        busy = busy_runs()
        report(f"  {queue}: {_summary(busy) if len(busy) else 'nothing due or running'}")
        return (queue_runs(queue, pool),) if busy.empty else None

    def why_not_empty() -> str:
        busy = busy_runs()
        if busy.empty:
            return ""
        n = len(busy)
        states = set(busy["state"])
        if len(states) == 1:
            verb = "is" if n == 1 else "are"
            text = f"{n} run{'s' if n != 1 else ''} {verb} still {next(iter(states))} in {queue}"
        else:
            text = f"{n} runs are still waiting in {queue} ({_summary(busy)})"
        return f"{text}. " + diagnose(queue, pool)

    (frame,) = wait_until(empty, timeout, what=f"{queue} to drain", missing=why_not_empty)
    return frame
