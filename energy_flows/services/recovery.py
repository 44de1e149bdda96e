"""Finish what a worker leaves behind: its unfinished runs end Crashed, saying why.

When a Prefect worker ends, the flow-run processes it started end with it
(its watchdog kills them), but the *runs* stay Pending ("Submitting") or
Running in the server's database forever: Prefect only learns that a run
has ended from the run's own process or from its worker. Such zombie runs
block the queue's concurrency limit, so later runs wait for good.

This module ends them. A run is attributed only to the worker that took it:
Prefect labels every run a worker submits with ``prefect.worker.name``, and
only state changes after that worker started count (a later worker of the
same name never inherits an earlier one's runs). The rare run a worker had
set Pending but not labelled yet (the worker died in between) is attributed
to it when it sits in its pool and queues and no other live worker of the
home serves that pool.

It runs:

* from the worker's watchdog, as its ``--on-exit`` command, seconds after
  the worker ended in any way: ``Worker.stop()``, a kernel restart or
  shutdown, Ctrl-C of ``make lab``, a SIGKILL of the worker, its server
  gone (``python -m energy_flows.services.recovery --home H --worker N``);
* from :func:`energy_flows.services.control.reconcile` at the next package
  call that starts a service or reads a queue, for whatever the watchdog
  could not finish (the server was down, or the watchdog itself was killed).

It also removes the worker from its pool in Prefect, so the pool does not
show it ONLINE for another 90 s. Only the standard library and the package's
small REST helper are used: it starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from energy_flows.services import api, registry
from energy_flows.services.registry import ServiceRecord

#: The label Prefect's workers put on every run they submit.
WORKER_LABEL = "prefect.worker.name"

#: Run states that still need a worker (a run in them is in flight).
IN_FLIGHT_TYPES = ("PENDING", "RUNNING", "CANCELLING")

#: A run Pending this long without a worker's label is stuck, whoever set it Pending.
UNLABELLED_PENDING_SECONDS = 30.0

#: What a run's Crashed state says (``reason`` completes the sentence).
CRASH_MESSAGE = "Its worker {name!r} stopped while the run was in flight: {reason}."


def describe_stop(reason: str | None, exit_code: str | int | None = None) -> str:
    """Turn a watchdog's stop reason into words a learner understands."""
    reason = reason or ""
    if reason.startswith("its owner ended"):
        return (
            "the notebook kernel (or program) that started it ended "
            "(a kernel restart, a shutdown, or a crash)"
        )
    if reason.startswith(("it was asked to stop", "it was interrupted")):
        return "it was stopped (Worker.stop(), energy-flows down, or the end of `make lab`)"
    if reason.startswith("the process it depends on"):
        return "its Prefect server stopped"
    if reason.startswith("the process exited by itself"):
        code = str(exit_code if exit_code is not None else reason.rsplit(" ", 1)[-1])
        if code.lstrip("-").isdigit() and int(code) < 0:
            return f"its process was killed (signal {-int(code)})"
        return f"its process exited by itself (code {code})"
    if reason:
        return reason
    return "its process ended and nothing recorded why (was it killed?)"


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def in_flight_runs(api_url: str, pool: str) -> list[dict[str, Any]]:
    """Every run of ``pool`` that is Pending, Running or Cancelling (plain REST, paged)."""
    runs: list[dict[str, Any]] = []
    while True:
        body = {
            "flow_runs": {"state": {"type": {"any_": list(IN_FLIGHT_TYPES)}}},
            "work_pools": {"name": {"any_": [pool]}},
            "limit": 200,
            "offset": len(runs),
        }
        page = api.call("POST", f"{api_url}/flow_runs/filter", body, timeout=10) or []
        runs.extend(page)
        if len(page) < 200:
            return runs


def taken_by(
    runs: Iterable[dict[str, Any]],
    worker: ServiceRecord,
    others_serve_pool: bool,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """The runs among ``runs`` that ``worker`` had taken (see the module's rules)."""
    now = time.time() if now is None else now
    since = worker.started_at - 2.0  # clocks: the same machine, a little slack
    mine = []
    for run in runs:
        state = run.get("state") or {}
        changed = _timestamp(state.get("timestamp")) or 0.0
        label = (run.get("labels") or {}).get(WORKER_LABEL)
        if label is not None:
            if label == worker.name and changed >= since:
                mine.append(run)
            continue
        unlabelled_pending = (
            state.get("type") == "PENDING"
            and run.get("work_queue_name") in worker.queues
            and changed >= since
        )
        if unlabelled_pending and (
            not others_serve_pool or now - changed > UNLABELLED_PENDING_SECONDS
        ):
            mine.append(run)
    return mine


def crash_runs(api_url: str, runs: Iterable[dict[str, Any]], message: str) -> list[str]:
    """Set each run Crashed with ``message``; returns the names of those it could set."""
    names = []
    for run in runs:
        state = {"type": "CRASHED", "name": "Crashed", "message": message}
        try:
            api.call(
                "POST",
                f"{api_url}/flow_runs/{run['id']}/set_state",
                {"state": state, "force": True},
                timeout=10,
            )
        except (OSError, api.ApiError):
            continue
        names.append(run.get("name") or str(run["id"]))
    return names


def forget_worker(api_url: str, pool: str, name: str) -> None:
    """Remove an ended worker from its pool in Prefect (else it shows ONLINE for ~90 s)."""
    with contextlib.suppress(OSError, api.ApiError):
        api.call("DELETE", f"{api_url}/work_pools/{_quote(pool)}/workers/{_quote(name)}")


@dataclass
class Outcome:
    """What finishing an ended worker did."""

    worker: str
    pid: int
    reason: str
    crashed: list[str] = field(default_factory=list)
    finished: bool = False  # False: the server could not be reached, try again later
    at: float = field(default_factory=time.time)

    def sentence(self) -> str:
        """One line for the learner."""
        if not self.crashed:
            return ""
        names = ", ".join(repr(n) for n in self.crashed[:5])
        more = f" and {len(self.crashed) - 5} more" if len(self.crashed) > 5 else ""
        return (
            f"Worker {self.worker!r} had {len(self.crashed)} run(s) in flight ({names}{more}) "
            f"when it stopped because {self.reason}; they were marked Crashed. "
            "Start a worker and trigger them again if you still need them."
        )


def outcome_path(worker: ServiceRecord) -> Path:
    """Where the watchdog's on-exit command leaves what it did, for whoever asks next."""
    return registry.state_dir(worker.home) / "ended" / f"worker-{worker.name}-{worker.pid}.json"


def read_outcome(worker: ServiceRecord) -> Outcome | None:
    try:
        return Outcome(**json.loads(outcome_path(worker).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _save_outcome(worker: ServiceRecord, outcome: Outcome) -> None:
    path = outcome_path(worker)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(asdict(outcome), f)
    os.replace(tmp, path)


def finish_worker(
    worker: ServiceRecord, api_url: str | None, reason: str, others_serve_pool: bool
) -> Outcome:
    """Crash the runs an ended worker had taken and remove it from its pool.

    ``api_url`` is the home's server as it runs now (it may have restarted
    on another port since the worker started); None or unreachable leaves
    ``finished`` False, and the state file stays for a later try.
    """
    outcome = Outcome(worker.name, worker.pid, reason)
    if not api_url or not worker.pool or not api.healthy(api_url, timeout=2):
        return outcome
    try:
        runs = taken_by(in_flight_runs(api_url, worker.pool), worker, others_serve_pool)
    except (OSError, api.ApiError):
        return outcome
    message = CRASH_MESSAGE.format(name=worker.name, reason=reason)
    outcome.crashed = crash_runs(api_url, runs, message)
    outcome.finished = len(outcome.crashed) == len(runs)
    forget_worker(api_url, worker.pool, worker.name)
    return outcome


def main(argv: list[str] | None = None) -> int:
    """The worker watchdog's ``--on-exit`` command: finish the worker that just ended."""
    parser = argparse.ArgumentParser(prog="python -m energy_flows.services.recovery")
    parser.add_argument("--home", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--pid", type=int, help="the worker's pid (default: from its watchdog)")
    args = parser.parse_args(argv)
    if args.pid is None:
        args.pid = int(os.environ.get("ENERGY_FLOWS_CHILD_PID") or 0)
    worker = registry.worker_record(args.home, args.worker)
    if worker is None or worker.pid != args.pid:
        return 0  # already finished by someone else, or a newer worker took the name
    reason = describe_stop(
        os.environ.get("ENERGY_FLOWS_STOP_REASON"), os.environ.get("ENERGY_FLOWS_EXIT_CODE")
    )
    others = any(
        w.alive() and w.pool == worker.pool and w.name != worker.name
        for w in registry.worker_records(args.home)
    )
    outcome = finish_worker(worker, registry.server_url_for(worker), reason, others)
    _save_outcome(worker, outcome)
    print(
        f"[recovery] worker {worker.name!r} ended: {reason}; "
        + (
            f"{len(outcome.crashed)} run(s) in flight marked Crashed"
            if outcome.finished
            else "its runs could not be checked (no server); the next start will"
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
