"""What runs for a home, stopping it, and finishing what ended services left behind.

:func:`reconcile` runs whenever a service starts and, through
:mod:`energy_flows.orchestration.housekeeping`, before the package reads a
queue or waits on runs: a learner never has to clean up by hand.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from energy_flows.services import recovery, registry
from energy_flows.services.registry import (
    Kind,
    PostgresRecord,
    ServerRecord,
    ServiceRecord,
    WorkerRecord,
)
from energy_flows.waiting import say

if TYPE_CHECKING:
    import pandas as pd

#: Seconds a service gets to stop: a worker gracefully, plus the time its watchdog's
#: on-exit command may take to mark its runs; a server its requests; PostgreSQL its
#: fast shutdown's checkpoint.
STOP_TIMEOUT = 15.0

#: Workers first (a worker whose server has gone takes ~8 s to stop and leaves its
#: runs Running), then the server, then the database it writes to until it ends.
STOP_ORDER = (Kind.WORKER, Kind.SERVER, Kind.POSTGRES)

RUNNING_COLUMNS = "kind name state pid url pool queues owner uptime log".split()


def running(home: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """What the package runs for a home, as a table (from its state files; changes nothing).

    ``url`` is the server's UI or PostgreSQL's address; ``pool`` and ``queues`` a worker's.
    """
    import pandas as pd

    from energy_flows.services.api import healthy

    rows: list[dict[str, Any]] = []
    for rec in registry.live_records(home):
        answers = not isinstance(rec, ServerRecord) or healthy(rec.api_url)
        url = rec.ui_url if isinstance(rec, ServerRecord) else ""
        worker = rec if isinstance(rec, WorkerRecord) else None
        rows.append(
            {
                "kind": rec.kind.value,
                "name": rec.name,
                "state": "running" if answers else "not answering",
                "pid": rec.pid,
                "url": rec.address if isinstance(rec, PostgresRecord) else url,
                "pool": worker.pool if worker else "",
                "queues": ", ".join(worker.queues) if worker else "",
                "owner": rec.owner.value,
                "uptime": rec.uptime(),
                "log": rec.log,
            }
        )
    return pd.DataFrame(rows, columns=RUNNING_COLUMNS)


def reconcile(home: str | os.PathLike[str] | None = None, quiet: bool = False) -> list[str]:
    """Finish what ended services left behind (docs/architecture.md); return and say what
    was done. Cheap (a few file reads, at most one request per worker), and it never stops
    a running process."""
    messages: list[str] = []
    if not registry.state_dir(home).is_dir():
        return messages
    look_for_orphans = _due(home)
    with registry.locked(home):
        for rec in registry.records(home):
            if rec.alive():
                if look_for_orphans and isinstance(rec, WorkerRecord):
                    messages += _crash_orphans(rec)
                continue
            if not isinstance(rec, WorkerRecord):
                rec.remove()  # its watchdog stops itself once its process is gone
            elif not rec.watchdog_alive():  # else its watchdog is finishing its runs now
                outcome = recovery.settle(rec)
                if outcome.crashed:
                    messages.append(outcome.sentence())
        messages += _settle_damaged(home)
    for message in messages:
        say(message, quiet)
    return messages


#: Seconds between two looks for runs of live workers whose process is gone
#: (each look asks the server): reconcile runs before every read.
ORPHAN_CHECK_INTERVAL = 5.0
_LAST_ORPHAN_CHECK: dict[str, float] = {}


def _due(home: str | os.PathLike[str] | None) -> bool:
    key = str(registry.state_dir(home))
    now = time.monotonic()
    if now - _LAST_ORPHAN_CHECK.get(key, -ORPHAN_CHECK_INTERVAL) < ORPHAN_CHECK_INTERVAL:
        return False
    _LAST_ORPHAN_CHECK[key] = now
    return True


def _settle_damaged(home: str | os.PathLike[str] | None) -> list[str]:
    """Workers whose state file is damaged: their runs, found by name (recovery.py)."""
    outcomes = [recovery.settle_damaged(d) for d in registry.damaged_workers(home)]
    return [o.sentence() for o in outcomes if o is not None and o.crashed]


def _crash_orphans(rec: WorkerRecord) -> list[str]:
    """Runs of a live worker left in flight without a process: Crashed, in one sentence."""
    orphans = recovery.crash_orphans(rec)
    if not orphans:
        return []
    names = ", ".join(repr(n) for n in orphans)
    return [
        f"Run(s) {names} of worker {rec.name!r} were left in flight without a process (the "
        "server could not write then); they were marked Crashed."
    ]


def stop(rec: ServiceRecord, quiet: bool = False) -> str:
    """Stop one service, finish what it leaves (a worker's runs), forget it; one sentence."""
    was_running = rec.alive()
    started = time.monotonic()
    rec.stop(timeout=STOP_TIMEOUT)
    took = time.monotonic() - started
    if isinstance(rec, WorkerRecord):
        message = _worker_stopped(rec, was_running, took)
    else:
        rec.remove()
        message = f"Stopped {_label(rec)}."
    say(message, quiet)
    return message


def _label(rec: ServiceRecord) -> str:
    if isinstance(rec, ServerRecord):
        return f"the Prefect server (pid {rec.pid}, {rec.ui_url})"
    if isinstance(rec, PostgresRecord):
        return f"PostgreSQL (pid {rec.pid}, 127.0.0.1:{rec.port})"
    return f"worker {rec.name!r} (pid {rec.pid})"


def _worker_stopped(rec: WorkerRecord, was_running: bool, took: float) -> str:
    outcome = recovery.settle(rec)
    message = (
        f"Stopped {_label(rec)} in {took:.1f} s."
        if was_running
        else f"Worker {rec.name!r} had already stopped."
    )
    if outcome.crashed:
        names = ", ".join(repr(n) for n in outcome.crashed)
        return message + (
            f" It had {len(outcome.crashed)} run(s) in flight ({names}); they were stopped "
            "with it and marked Crashed. Start a worker and trigger them again if you "
            "still need them."
        )
    if not outcome.finished:
        return message + (
            " Its server does not answer, so whether it left runs in flight is checked "
            "when the server starts again."
        )
    return message


def stop_all(
    home: str | os.PathLike[str] | None = None, quiet: bool = False, owners: tuple[str, ...] = ()
) -> list[str]:
    """Stop every worker, then the server, then its PostgreSQL, of a home; returns what stopped.

    ``owners=("kernel",)`` leaves what ``energy-flows up`` started alone."""
    with registry.locked(home):
        # Workers that ended earlier get their runs finished while the server still runs.
        reconcile(home, quiet=quiet)
        # Also those whose watchdog is still finishing (a worker's runs): wait for it.
        live = [r for r in registry.records(home) if r.alive() or r.watchdog_alive()]
        live = [r for r in live if not owners or r.owner in owners]
        live.sort(key=lambda r: STOP_ORDER.index(r.kind))
        stopped = [stop(rec, quiet=quiet) for rec in live]
    if not stopped:
        say("Nothing was running for this home.", quiet)
    return stopped
