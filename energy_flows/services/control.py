"""What runs for a home, stopping it all, and putting things right after a crash.

* :func:`running`: what the package runs for a home, as a table (reads only).
* :func:`stop_all`: every worker, then the server, then its PostgreSQL.
* :func:`reconcile`: finish what ended services left behind. A worker that
  ended without finishing its runs (its server was down, its watchdog was
  killed) gets them marked Crashed now; a state file that cannot be read is
  replaced by one rebuilt from the process it describes (found by
  :func:`discover`), never just dropped while that process runs.

:func:`reconcile` runs whenever a server or worker starts and, through
:func:`energy_flows.orchestration.housekeeping`, before the package reads a
queue or waits on runs: a learner never has to clean up by hand.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from energy_flows.services import process, recovery, registry, urls
from energy_flows.services.registry import ServiceRecord
from energy_flows.waiting import say

if TYPE_CHECKING:
    import pandas as pd

#: Seconds a worker gets to stop gracefully, plus the time its watchdog's
#: on-exit command may take to mark its runs.
WORKER_STOP_TIMEOUT = 15.0

#: Seconds a server gets to stop (uvicorn finishes its requests, then exits).
SERVER_STOP_TIMEOUT = 15.0

#: Seconds a managed PostgreSQL gets to stop (fast shutdown writes a checkpoint).
POSTGRES_STOP_TIMEOUT = 15.0

#: The command-line mark of the processes the package starts for Prefect.
LAUNCHER = "energy_flows.services.launch"


# --------------------------------------------------------------------------- finding processes


def _option(argv: list[str], name: str) -> str | None:
    with contextlib.suppress(ValueError, IndexError):
        return argv[argv.index(name) + 1]
    return None


def _options(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]


def _postgres_of(argv: list[str], home: str) -> bool:
    """Whether ``argv`` is a managed PostgreSQL of ``home`` (its data folder is in the home)."""
    data = _option(argv, "-D") or ""
    return Path(argv[0]).name == "postgres" and data == str(Path(home) / "postgres" / "data")


def discover(home: str | os.PathLike[str] | None = None) -> list[ServiceRecord]:
    """Servers, workers and the managed PostgreSQL of ``home`` found in the process table.

    For when a state file is missing or damaged: the processes themselves say
    what they are (their command line) and whose they are (their
    environment's ``ENERGY_FLOWS_HOME``). Reads only.
    """
    home_path = str(registry.state_dir(home).parent)
    found: list[ServiceRecord] = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time", "status"]):
        try:
            argv = proc.info["cmdline"] or []
            if not argv or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            kind = _kind_of(argv, home_path)
            env = proc.environ()
            if kind is None or env.get("ENERGY_FLOWS_HOME") != home_path:
                continue
            parent = proc.parent()
            dog = parent.cmdline() if parent else []
            dog_is_ours = any(part.endswith("watchdog.py") for part in dog)
            found.append(
                _rebuild(kind, home_path, proc, argv, env, parent if dog_is_ours else None)
            )
        except (psutil.Error, OSError):
            continue
    return found


def _kind_of(argv: list[str], home: str) -> str | None:
    """ "server", "worker" or "postgres" for a process the package started; else None."""
    if _postgres_of(argv, home):
        return "postgres"
    # The launcher itself (not a watchdog, whose command line contains it too).
    if argv[1:3] != ["-m", LAUNCHER] or argv[3:4] != ["prefect"] or argv[5:6] != ["start"]:
        return None
    return {"server": "server", "worker": "worker"}.get(argv[4] if len(argv) > 5 else "")


def _rebuild(
    kind: str,
    home: str,
    proc: psutil.Process,
    argv: list[str],
    env: dict[str, str],
    watchdog: psutil.Process | None,
) -> ServiceRecord:
    dog_argv = watchdog.cmdline() if watchdog else []
    fields: dict[str, Any] = {}
    if kind == "server":
        port = int(_option(argv, "--port") or 4200)
        prefix = env.get("PREFECT_SERVER_UI_SERVE_BASE") or None
        fields = {
            "port": port,
            "api_url": urls.api_url_for(port, prefix),
            "ui_url": urls.ui_url_for(port, prefix),
        }
        url = env.get("PREFECT_API_DATABASE_CONNECTION_URL")
        fields["database"] = urls.redact(url) if url else "sqlite"
        name, log = "server", Path(home) / "logs" / "server.log"
    elif kind == "postgres":
        port = int(_option(argv, "-p") or 0)
        fields = {"port": port, "database": urls.postgres_url_for(port)}
        name, log = "postgres", Path(home) / "logs" / "postgres.log"
    else:
        name = _option(argv, "--name") or "worker"
        limit = _option(argv, "--limit")
        server_pid = _option(dog_argv, "--watch-pid")
        fields = {
            "api_url": env.get("PREFECT_API_URL"),
            "pool": _option(argv, "--pool"),
            "queues": _options(argv, "--work-queue"),
            "limit": int(limit) if limit else None,
            "server_pid": int(server_pid) if server_pid else None,
        }
        log = Path(home) / "logs" / f"worker-{name}.log"
    return ServiceRecord(
        kind=kind,
        name=name,
        home=home,
        pid=proc.pid,
        create_time=proc.create_time(),
        watchdog_pid=watchdog.pid if watchdog else 0,
        watchdog_create_time=watchdog.create_time() if watchdog else 0.0,
        argv=argv,
        log=str(log),
        started_at=proc.create_time(),
        owner="cli" if "--detached" in dog_argv else "kernel",
        owner_pid=-1,
        socket=_option(dog_argv, "--socket"),
        **fields,
    )


def unrecorded(home: str | os.PathLike[str] | None = None) -> list[ServiceRecord]:
    """Live services of ``home`` whose state file is missing or damaged (reads only)."""
    recorded = {rec.pid for rec in registry.live_records(home)}
    return [rec for rec in discover(home) if rec.pid not in recorded]


# --------------------------------------------------------------------------- reading


def running(home: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """What the package runs for a home: the server, its PostgreSQL and workers, as a table.

    Works from any kernel or terminal: it reads the state files in the home
    (and the process table, for a service whose state file was damaged).
    Changes nothing. Columns: ``kind``, ``name``, ``state``, ``pid``, ``url``
    (the UI for the server, the address for PostgreSQL), ``pool``, ``queues``,
    ``owner``, ``uptime``, ``log``.
    """
    import pandas as pd

    from energy_flows.services.api import healthy

    rows: list[dict[str, Any]] = []
    for rec, note in [(r, "") for r in registry.live_records(home)] + [
        (r, " (no state file)") for r in unrecorded(home)
    ]:
        state = "running"
        if rec.kind == "server" and rec.api_url and not healthy(rec.api_url):
            state = "not answering"
        rows.append(
            {
                "kind": rec.kind,
                "name": rec.name,
                "state": state + note,
                "pid": rec.pid,
                "url": rec.ui_url or (rec.database if rec.kind == "postgres" else "") or "",
                "pool": rec.pool or "",
                "queues": ", ".join(rec.queues),
                "owner": rec.owner,
                "uptime": rec.uptime(),
                "log": rec.log,
            }
        )
    columns = ["kind", "name", "state", "pid", "url", "pool", "queues", "owner", "uptime", "log"]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- putting right


def _stop_reason_in_log(rec: ServiceRecord) -> str | None:
    """The watchdog's last word on why it stopped this process (from its log)."""
    lines = process.tail(rec.log, 30, start=rec.log_offset).splitlines()
    for line in reversed(lines):
        match = re.search(r"\[watchdog \d+\] stopped: (.*); exit code (-?\d+)", line)
        if match:
            return recovery.describe_stop(match.group(1), match.group(2))
    return None


def _others_serve_pool(home: str | os.PathLike[str] | None, worker: ServiceRecord) -> bool:
    return any(
        w.alive() and w.pool == worker.pool and w.name != worker.name
        for w in registry.worker_records(home)
    )


def finish_worker(rec: ServiceRecord, quiet: bool = False) -> recovery.Outcome:
    """Make sure the runs of an ended worker are final, then forget the worker.

    Uses what its watchdog's on-exit command already did when there is
    such a record; otherwise marks the runs now. The state file goes once
    that is done (it stays while the server cannot be reached).
    """
    done = recovery.read_outcome(rec)
    if done is None or not done.finished:
        reason = (
            done.reason
            if done
            else _stop_reason_in_log(rec)
            or "its process ended and nothing recorded why (was it killed?)"
        )
        done = recovery.finish_worker(
            rec, registry.server_url_for(rec), reason, _others_serve_pool(rec.home, rec)
        )
    if done.finished:
        rec.remove()
        with contextlib.suppress(OSError):
            recovery.outcome_path(rec).unlink()
    return done


def reconcile(home: str | os.PathLike[str] | None = None, quiet: bool = False) -> list[str]:
    """Finish what ended services left behind; return (and print) what was done.

    Cheap when there is nothing to do (a few file reads), so it runs before
    every queue read. It never stops a running process.
    """
    messages: list[str] = []
    if not registry.state_dir(home).is_dir():
        return messages
    with registry.locked(home):
        messages += _repair_damaged(home)
        for single in (registry.server_record(home), registry.postgres_record(home)):
            if single is not None and not single.alive():
                single.remove()  # its watchdog stops itself once its process is gone
        for rec in registry.worker_records(home):
            if rec.alive() or rec.watchdog_alive():
                continue  # still running, or its watchdog is finishing its runs right now
            outcome = finish_worker(rec)
            if outcome.crashed:
                messages.append(outcome.sentence())
    for message in messages:
        say(message, quiet)
    return messages


def _repair_damaged(home: str | os.PathLike[str] | None) -> list[str]:
    """Replace unreadable state files by records of the processes they stood for."""
    broken = registry.damaged(home)
    if not broken:
        return []
    messages = []
    found = {r.path: r for r in unrecorded(home)}
    for path in broken:
        kept = registry.set_aside(path)
        rec = found.pop(path, None)
        if rec is not None:
            rec.save()
            messages.append(
                f"The state file {path.name} was damaged; found the {rec.kind} it described "
                f"running (pid {rec.pid}) and recorded it again. The damaged file is kept as "
                f"{kept.name}."
            )
        else:
            messages.append(
                f"The state file {path.name} was damaged and no process of it runs any more; "
                f"it is kept as {kept.name}."
            )
    return messages


def adopt_unrecorded(home: str | os.PathLike[str] | None = None) -> list[str]:
    """Record the live services of ``home`` that have no state file (so none runs twice)."""
    messages = []
    for rec in unrecorded(home):
        if rec.path.exists():
            continue
        rec.save()
        messages.append(
            f"Found the {rec.kind} {rec.name!r} of this home running without a state file "
            f"(pid {rec.pid}); recorded it, so it is reused rather than started twice."
        )
    return messages


# --------------------------------------------------------------------------- stopping


def stop_worker(rec: ServiceRecord, quiet: bool = False) -> str:
    """Stop a worker, make its runs final, remove its state file; one sentence for the learner."""
    was_running = rec.alive()
    started = time.monotonic()
    rec.stop(timeout=WORKER_STOP_TIMEOUT)
    took = time.monotonic() - started
    outcome = finish_worker(rec)
    message = (
        f"Stopped worker {rec.name!r} (pid {rec.pid}) in {took:.1f} s."
        if was_running
        else f"Worker {rec.name!r} had already stopped."
    )
    if outcome.crashed:
        names = ", ".join(repr(n) for n in outcome.crashed)
        message += (
            f" It had {len(outcome.crashed)} run(s) in flight ({names}); they were stopped "
            "with it and marked Crashed. Start a worker and trigger them again if you "
            "still need them."
        )
    elif not outcome.finished:
        message += (
            " Its server does not answer, so whether it left runs in flight is checked "
            "when the server starts again."
        )
    say(message, quiet)
    return message


def stop_server(rec: ServiceRecord, quiet: bool = False) -> str:
    """Stop the server of a state file and remove the file; returns a sentence."""
    rec.stop(timeout=SERVER_STOP_TIMEOUT)
    rec.remove()
    message = f"Stopped the Prefect server (pid {rec.pid}, {rec.ui_url})."
    say(message, quiet)
    return message


def stop_postgres(rec: ServiceRecord, quiet: bool = False) -> str:
    """Stop a managed PostgreSQL (fast shutdown) and remove its state file; returns a sentence."""
    rec.stop(timeout=POSTGRES_STOP_TIMEOUT)
    rec.remove()
    message = f"Stopped PostgreSQL (pid {rec.pid}, 127.0.0.1:{rec.port})."
    say(message, quiet)
    return message


def stop_all(
    home: str | os.PathLike[str] | None = None, quiet: bool = False, owners: tuple[str, ...] = ()
) -> list[str]:
    """Stop every worker, then the server, then its PostgreSQL, of a home. Returns what was stopped.

    Workers go first: a worker whose server has gone takes ~8 s to stop and
    would leave its runs Running. PostgreSQL goes last: the server writes to
    it until it ends. ``owners`` limits it to services of those owners
    (``("kernel",)`` leaves what ``energy-flows up`` started alone).
    """
    stopped: list[str] = []
    with registry.locked(home):
        # Workers that ended earlier get their runs finished while the server still runs.
        reconcile(home, quiet=quiet)
        adopt_unrecorded(home)
        live = [r for r in registry.live_records(home) if not owners or r.owner in owners]
        for rec in [r for r in live if r.kind == "worker"]:
            stopped.append(stop_worker(rec, quiet=quiet))
        for rec in [r for r in live if r.kind == "server"]:
            stopped.append(stop_server(rec, quiet=quiet))
        for rec in [r for r in live if r.kind == "postgres"]:
            stopped.append(stop_postgres(rec, quiet=quiet))
    if not stopped:
        say("Nothing was running for this home.", quiet)
    return stopped
