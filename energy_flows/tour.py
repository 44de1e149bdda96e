"""`energy-flows tour`: the 2022 walkthrough, headless, for an instructor checking a machine.

The original "orchestration with Prefect 2.0 beta" walkthrough went: start
Orion, create a deployment on a schedule, list deployments, create the work
queue ``energy_usage``, look at its runs piling up (Scheduled, then Late)
while no agent polls it, start an agent, watch the queue drain. This module
does the same with today's names, printing for each step the 2022 command and
what replaces it. It uses only the package's public functions, so a green tour
means the lessons will work on this machine.

It honours ``ENERGY_FLOWS_HOME`` (the database stays there) and leaves no
process behind, even on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from energy_flows.errors import EnergyFlowsError
from energy_flows.vocabulary import DEFAULT_DEPLOYMENT

#: The tour's deployment: the energy flow on a short period, so it runs in seconds.
TOUR_DEPLOYMENT = DEFAULT_DEPLOYMENT
TOUR_PARAMETERS = {"meter_id": "home-001", "days": 35, "test_days": 7, "horizon_hours": 24}
TOUR_INTERVAL_SECONDS = 30
#: Runs asked for in the past: what a schedule leaves behind while nobody polls the queue
#: (waiting for the schedule's own runs to turn Late would take half a minute).
TOUR_PAST_RUNS = 1
#: How far in the past those runs were due: 1 s, so that the first look finds them
#: Scheduled and the server marks them Late a few seconds later (when they are
#: ``settings.LATE_AFTER_SECONDS`` past due). Due 10 s ago, they were Late at once
#: on a busy machine, before the first look could show them Scheduled.
TOUR_MISSED_BY_SECONDS = 1

#: The walkthrough's steps, in order: a title, the 2022 command, and what replaces it today.
STEPS: dict[str, tuple[str, str, str]] = {
    "server": (
        "Start the orchestration server",
        "prefect orion start",
        "`prefect server start` / energy_flows.PrefectServer().start()",
    ),
    "queue": (
        "Create the work queue energy_usage (in a process work pool)",
        "prefect work-queue create energy_usage",
        "`prefect work-pool create energy-pool --type process` + "
        "`prefect work-queue create energy_usage --pool energy-pool` / "
        "ensure_work_pool(), ensure_work_queue()",
    ),
    "deploy": (
        f"Deploy the energy flow on a schedule (every {TOUR_INTERVAL_SECONDS} s)",
        "prefect deployment create orchestration.py",
        "flow.from_source(folder, entrypoint).deploy(...) / deploy_energy_flow(interval=...)",
    ),
    "list": (
        "List deployments",
        "prefect deployment ls",
        "`prefect deployment ls` / list_deployments()",
    ),
    "inspect": (
        "Inspect the work queue",
        "prefect work-queue inspect <queue id>",
        "`prefect work-queue inspect energy_usage --pool energy-pool` / queue_status()",
    ),
    "late": (
        "Watch runs wait in the queue while no agent polls it: Scheduled, then Late",
        "prefect work-queue preview <queue id>  (and the UI's Late runs)",
        "queue_runs(), wait_for(until='late')",
    ),
    "worker": (
        "Start an agent (today: a worker) for the queue",
        "prefect agent start <queue id>",
        "`prefect worker start --pool energy-pool --work-queue energy_usage` / Worker().start()",
    ),
    "drain": (
        "Watch the queue drain and the runs complete",
        "prefect flow-run ls  (and the UI's flow runs page)",
        "wait_for(until='empty'), queue_runs(), run_result()",
    ),
    "stop": (
        "Stop everything (workers first, then the server)",
        "Ctrl-C in the agent's and Orion's terminals",
        "`energy-flows down` / energy_flows.stop_all()",
    ),
}

if TYPE_CHECKING:
    import pandas as pd

    from energy_flows.orchestration import DeploymentInfo
    from energy_flows.services.server import PrefectServer
    from energy_flows.services.worker import Worker

Out = Callable[[str], None]


class _Steps:
    """Numbered steps, each with the 2022 command and today's, and the elapsed time."""

    def __init__(self, out: Out) -> None:
        self.out = out
        self.n = 0
        self.start = time.monotonic()

    def step(self, key: str) -> _Steps:
        """Start the step ``key`` of :data:`STEPS`: its number, the time, the two commands."""
        title, prefect2, today = STEPS[key]
        self.n += 1
        self.out("")
        self.out(f"[{self.n}] {title}  (t={time.monotonic() - self.start:.1f} s)")
        self.out(f"    Prefect 2 (2022): `{prefect2}`")
        self.out(f"    →  today: {today}")
        return self

    def show(self, text: object) -> None:
        for line in str(text).splitlines():
            self.out(f"    {line}")


def _table(frame: pd.DataFrame, columns: list[str], max_rows: int = 8) -> str:
    import pandas as pd

    if frame.empty:
        return "(none)"
    shown = frame[columns].head(max_rows)
    with pd.option_context("display.width", 140, "display.max_columns", 20):
        text = shown.to_string(index=False)
    if len(frame) > max_rows:
        text += f"\n... and {len(frame) - max_rows} more"
    return text


@dataclass
class _Tour:
    """What the steps share: the home, the numbered steps, the time budget, what was started."""

    home: Path
    steps: _Steps
    timeout: float
    server: PrefectServer | None = None
    worker: Worker | None = None

    def remaining(self) -> float:
        """What is left of the overall time limit, for the next wait (at least 10 s)."""
        return max(10.0, self.timeout - (time.monotonic() - self.steps.start))


def tour(home: str | os.PathLike[str] | None = None, out: Out = print, timeout: float = 120) -> int:
    """Run the walkthrough end to end against a real server and worker; return 0 on success.

    Args:
        home: the state folder (default :func:`energy_flows.settings.home_dir`:
            ``$ENERGY_FLOWS_HOME``, else ``.energy_flows/`` of this checkout).
        out: where lines go (``print`` by default).
        timeout: the longest any one wait may take, in seconds.
    """
    from energy_flows.settings import home_dir

    t = _Tour(home=home_dir(home), steps=_Steps(out), timeout=timeout)
    out(f"energy-flows tour: the 2022 Prefect walkthrough with today's Prefect, in {t.home}")
    try:
        _start_server(t)
        _create_pool_and_queue(t)
        deployment = _deploy(t)
        _list_deployments(t)
        _inspect_queue(t)
        _watch_runs_turn_late(t, deployment)
        worker = _start_worker(t)
        code = _watch_queue_drain(t, worker)
    finally:
        _stop_everything(t)
    out("tour finished: this machine is ready." if code == 0 else "tour finished with problems.")
    return code


def _start_server(t: _Tour) -> None:
    """1. The server ("Orion" in 2022)."""
    from energy_flows.services.server import PrefectServer

    s = t.steps.step("server")
    t.server = PrefectServer(home=t.home, quiet=True).start()
    s.show(f"server {'reused' if t.server.reused else 'started'}: UI at {t.server.ui_url}")
    s.show(f"database: {t.home / 'prefect' / 'prefect.db'}")


def _create_pool_and_queue(t: _Tour) -> None:
    """2. Where runs wait: a pool and its queue (and no Late run left by an earlier tour)."""
    from energy_flows import orchestration as orch

    s = t.steps.step("queue")
    s.show("(today a deployment names its pool and queue, so they come before it)")
    pool = orch.ensure_work_pool(orch.DEFAULT_POOL)
    queue = orch.ensure_work_queue(orch.DEFAULT_QUEUE, pool=orch.DEFAULT_POOL)
    s.show(f"pool {pool.name!r}: type {pool.type}, {', '.join(pool.changes) or 'already there'}")
    s.show(f"queue {queue.name!r}: {', '.join(queue.changes) or 'already there'}")
    leftovers = orch.cancel_late_runs(orch.DEFAULT_QUEUE, orch.DEFAULT_POOL)
    if len(leftovers):
        s.show(f"cancelled {len(leftovers)} Late run(s) left over from an earlier tour")


def _deploy(t: _Tour) -> DeploymentInfo:
    """3. The deployment, on a schedule."""
    from energy_flows import orchestration as orch

    s = t.steps.step("deploy")
    deployment = orch.deploy_energy_flow(
        TOUR_DEPLOYMENT,
        parameters=TOUR_PARAMETERS,
        interval=TOUR_INTERVAL_SECONDS,
        work_pool=orch.DEFAULT_POOL,
        work_queue=orch.DEFAULT_QUEUE,
    )
    s.show(f"{deployment.full_name}: {deployment.schedule}, parameters {deployment.parameters}")
    s.show(f"changes: {', '.join(deployment.changes) or 'none (already deployed)'}")
    return deployment


def _list_deployments(t: _Tour) -> None:
    """4. `prefect deployment ls`."""
    from energy_flows import orchestration as orch

    t.steps.step("list")
    columns = ["name", "flow", "schedule", "work_pool", "work_queue", "paused"]
    t.steps.show(_table(orch.list_deployments(), columns))


def _inspect_queue(t: _Tour) -> None:
    """5. The queue's details: nobody polls it yet."""
    t.steps.step("inspect")
    status = _queue_status()
    t.steps.show(
        f"status {status['status']} (nobody polls it yet), concurrency limit "
        f"{status['concurrency_limit']}, priority {status['priority']}, "
        f"workers online {status['workers_online']}"
    )


def _watch_runs_turn_late(t: _Tour, deployment: DeploymentInfo) -> None:
    """6. Runs pile up while no agent polls the queue: Scheduled, then Late."""
    from energy_flows import orchestration as orch
    from energy_flows.orchestration.common import now_utc

    s = t.steps.step("late")
    past = now_utc() - dt.timedelta(seconds=TOUR_MISSED_BY_SECONDS)
    missed = [
        orch.trigger(
            deployment.full_name,
            flow_run_name=f"tour-missed-{i}",
            scheduled_time=past - dt.timedelta(seconds=TOUR_INTERVAL_SECONDS * (i - 1)),
        )
        for i in range(1, TOUR_PAST_RUNS + 1)
    ]
    s.show(
        f"(the schedule puts a run in the queue every {TOUR_INTERVAL_SECONDS} s; to not wait "
        f"for one to turn Late, we also asked for {TOUR_PAST_RUNS} run(s) due "
        f"{TOUR_MISSED_BY_SECONDS} s ago: what a schedule leaves while nobody polls)"
    )
    runs = orch.queue_runs(orch.DEFAULT_QUEUE, orch.DEFAULT_POOL, states=["Scheduled", "Late"])
    s.show("now:")
    s.show(_table(runs, ["name", "state", "scheduled", "lateness_s"], max_rows=5))
    orch.wait_for(
        missed,
        until="late",
        timeout=t.remaining(),
        queue=orch.DEFAULT_QUEUE,
        pool=orch.DEFAULT_POOL,
        progress=False,
    )
    late = orch.queue_runs(orch.DEFAULT_QUEUE, orch.DEFAULT_POOL, states=["Late"])
    s.show(
        f"a few seconds later, {len(late)} Late run(s) (Late = Scheduled and more than "
        "a few seconds past its start, with no worker to take it):"
    )
    s.show(_table(late, ["name", "state", "scheduled", "lateness_s"], max_rows=5))
    s.show(f"queue status still {_queue_status()['status']}: looking at a queue is not polling it")
    s.show(f"why they wait: {orch.diagnose(orch.DEFAULT_QUEUE, orch.DEFAULT_POOL)}")


def _start_worker(t: _Tour) -> Worker:
    """7. The agent of 2022, today a worker."""
    from energy_flows import orchestration as orch
    from energy_flows.services.worker import Worker

    t.steps.step("worker")
    worker = Worker(
        pool=orch.DEFAULT_POOL, queues=[orch.DEFAULT_QUEUE], home=t.home, quiet=True
    ).start()
    t.worker = worker
    t.steps.show(_table(orch.workers(orch.DEFAULT_POOL), ["name", "status"]))
    return worker


def _watch_queue_drain(t: _Tour, worker: Worker) -> int:
    """8. The queue drains and the runs complete; 0 when none failed or crashed, else 1."""
    from energy_flows import orchestration as orch

    s = t.steps.step("drain")
    orch.wait_for(
        until="empty",
        queue=orch.DEFAULT_QUEUE,
        pool=orch.DEFAULT_POOL,
        timeout=t.remaining(),
        progress=False,
    )
    runs = orch.queue_runs(orch.DEFAULT_QUEUE, orch.DEFAULT_POOL)
    finished = runs[runs["state"].isin(orch.FINAL_STATES)]
    s.show(_table(finished, ["name", "state", "lateness_s", "duration_s"], max_rows=6))
    status = _queue_status()
    s.show(
        f"queue status {status['status']}: {status['completed']} Completed, "
        f"{status['late']} Late, {status['failed']} Failed, {status['crashed']} Crashed"
    )
    completed = finished[finished["state"] == "Completed"]
    if completed.empty:
        raise EnergyFlowsError(
            "No run completed although the worker ran: look at the worker's log "
            f"(`energy-flows logs {worker.name}`)."
        )
    _show_result(t, completed.iloc[0]["id"])
    bad = status["failed"] + status["crashed"]
    if bad:
        s.show(f"{bad} run(s) did not complete: the machine is not ready for the lessons.")
    return 0 if bad == 0 else 1


def _show_result(t: _Tour, run_id: str) -> None:
    """What one run produced, read back in this process: metrics (or the result) and artifacts."""
    from energy_flows import orchestration as orch

    s = t.steps
    result = orch.run_result(run_id)
    s.show(f"result of {result.name!r} (read back from the worker's process):")
    metrics = result.metrics
    if metrics is not None and hasattr(metrics, "round"):
        s.show(metrics.round(3).to_string())
    else:
        s.show(repr(result.result)[:300])
    s.show(f"artifacts: {', '.join(map(str, result.artifacts['key'].dropna())) or 'none'}")


def _stop_everything(t: _Tour) -> None:
    """9. Clean up, even after an error: workers before the server; a reused server stays up."""
    from energy_flows import orchestration as orch
    from energy_flows.services.control import stop_all

    s = t.steps.step("stop")
    try:
        if t.worker is not None:
            with contextlib.suppress(Exception):  # the schedule only matters for the next tour
                orch.pause_deployment(f"energy-usage-pipeline/{TOUR_DEPLOYMENT}")
        if t.server is not None and t.server.reused:
            if t.worker is not None:
                t.worker.stop()
            s.show("the server was already running before the tour: left running")
        else:
            stopped = stop_all(t.home, quiet=True)
            s.show(f"stopped: {len(stopped)} process(es)")
    finally:
        s.show(f"database kept in {t.home / 'prefect'}")
        s.show(f"tour took {time.monotonic() - s.start:.1f} s")


def _queue_status() -> pd.Series:
    """The tour queue's row of :func:`~energy_flows.orchestration.queue_status`."""
    from energy_flows import orchestration as orch

    return orch.queue_status(orch.DEFAULT_POOL, [orch.DEFAULT_QUEUE]).iloc[0]


def run_tour(args: argparse.Namespace) -> int:
    """Entry point of `energy-flows tour` (see :mod:`energy_flows.cli`)."""
    home = getattr(args, "home", None) or None
    timeout = float(getattr(args, "timeout", 120.0) or 120.0)
    return tour(home=Path(home) if home else None, timeout=timeout)
