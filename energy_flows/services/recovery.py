"""Finish what a worker leaves behind: its unfinished runs end Crashed, saying why.

The worker's watchdog runs :func:`main` once the worker ended (``--on-exit``);
:func:`settle` finishes later what could not be finished then. The standard
library and the REST helper only, so it starts fast. docs/architecture.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from energy_flows import settings
from energy_flows.errors import disk_is_full, is_disk_full
from energy_flows.services import api, process, registry
from energy_flows.services.registry import WorkerRecord
from energy_flows.services.watchdog import DISK_WAS_FULL, StopReason

#: The label Prefect's workers put on every run they submit.
WORKER_LABEL = "prefect.worker.name"

#: Run states that still need a worker (a run in them is in flight).
IN_FLIGHT_TYPES = ("PENDING", "RUNNING", "CANCELLING")

#: A run Pending this long without a worker's label is stuck, whoever set it Pending.
UNLABELLED_PENDING_SECONDS = 30.0

#: What a worker's stop reason adds when the disk of its home was full.
DISK_FULL_WORDS = "while the disk that holds its home was full (no space left on device)"

#: What a run's Crashed state says (``reason`` completes the sentence).
CRASH_MESSAGE = "Its worker {name!r} stopped while the run was in flight: {reason}."

_STOP_WORDS = {
    StopReason.OWNER_ENDED: "the notebook kernel (or program) that started it ended "
    "(a kernel restart, a shutdown, or a crash)",
    StopReason.ASKED: "it was stopped (Worker.stop(), energy-flows down, or the end of `make lab`)",
    StopReason.DEPENDENCY_GONE: "its Prefect server stopped",
    StopReason.KILLED: "its process was killed (signal {signal})",
    StopReason.EXITED: "its process exited by itself (code {code})",
    StopReason.UNKNOWN: "its process ended and nothing recorded why (was it killed?)",
}


def stop_reason(code: object) -> StopReason:
    """The :class:`StopReason` a code names (``UNKNOWN`` for anything else)."""
    return StopReason(code) if code in [r.value for r in StopReason] else StopReason.UNKNOWN


def describe_stop(reason: object, exit_code: int | None = None) -> str:
    """Why a worker stopped, in words a learner understands: the one place for them."""
    code = exit_code or 0
    return _STOP_WORDS[stop_reason(reason)].format(code=code, signal=-code)


def in_flight_runs(api_url: str | None, pool: str | None) -> list[dict[str, Any]] | None:
    """Every run of ``pool`` (None: of any pool) that is Pending, Running or Cancelling
    (plain REST, paged); None when the server does not answer."""
    if not api_url or not api.healthy(api_url, timeout=2):
        return None
    try:
        return _in_flight_runs(api_url, pool)
    except (OSError, api.ApiError):
        return None


def _in_flight_runs(api_url: str, pool: str | None) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    while True:
        body: dict[str, Any] = {
            "flow_runs": {"state": {"type": {"any_": list(IN_FLIGHT_TYPES)}}},
            "limit": 200,
            "offset": len(runs),
        }
        if pool is not None:
            body["work_pools"] = {"name": {"any_": [pool]}}
        page = api.call("POST", f"{api_url}/flow_runs/filter", body, timeout=10) or []
        runs.extend(page)
        if len(page) < 200:
            return runs


def taken_by(
    runs: Iterable[dict[str, Any]],
    worker: WorkerRecord,
    others_serve_pool: bool,
) -> list[dict[str, Any]]:
    """The runs among ``runs`` that ``worker`` had taken: labelled with its name since it
    started (not an earlier namesake's), or set Pending in its queues without a label yet
    (it died in between) when no other live worker serves the pool or the run has waited
    so for :data:`UNLABELLED_PENDING_SECONDS`."""
    now = time.time()
    since = worker.started_at - 2.0  # clocks: the same machine, a little slack
    mine = []
    for run in runs:
        state = run.get("state") or {}
        changed = api.timestamp(state.get("timestamp")) or 0.0
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


def crash_runs(
    api_url: str, runs: Iterable[dict[str, Any]], message: str, over_final: bool = True
) -> list[str]:
    """Set each run Crashed with ``message`` (forced: an ended worker's runs; ``over_final=False``
    leaves a run whose process just recorded its end); the names of those it set."""
    state = {"type": "CRASHED", "name": "Crashed", "message": message}
    names = []
    for run in runs:
        force = over_final or (run.get("state") or {}).get("type") == "CANCELLING"
        url = f"{api_url}/flow_runs/{run['id']}/set_state"
        try:
            answer = api.call("POST", url, {"state": state, "force": force}, timeout=10)
        except (OSError, api.ApiError):
            continue
        if (answer or {}).get("status") == "ACCEPT":
            names.append(run.get("name") or str(run["id"]))
    return names


def forget_worker(api_url: str, pool: str, name: str) -> None:
    """Remove an ended worker from its pool in Prefect (else it shows ONLINE for ~90 s)."""
    with contextlib.suppress(OSError, api.ApiError):
        api.call("DELETE", f"{api_url}/work_pools/{api.quote(pool)}/workers/{api.quote(name)}")


@dataclass
class Outcome:
    """What finishing an ended worker did (kept in ``state/ended/`` until it is complete)."""

    worker: str
    pid: int
    reason: str  # a StopReason
    exit_code: int | None = None
    crashed: list[str] = field(default_factory=list)
    disk_full: bool = False  # the disk of its home was full when it ended
    finished: bool = False  # False: the server could not be reached, try again later

    def why(self) -> str:
        """Why the worker stopped, with the full disk when there was one."""
        why = describe_stop(self.reason, self.exit_code)
        return f"{why}, {DISK_FULL_WORDS}" if self.disk_full else why

    def sentence(self) -> str:
        """One line for the learner ("" when no run was in flight)."""
        if not self.crashed:
            return ""
        names = ", ".join(repr(n) for n in self.crashed[:5])
        more = f" and {len(self.crashed) - 5} more" if len(self.crashed) > 5 else ""
        return (
            f"Worker {self.worker!r} had {len(self.crashed)} run(s) in flight ({names}{more}) "
            f"when it stopped because {self.why()}; they were "
            "marked Crashed. Start a worker and trigger them again if you still need them."
        )


def outcome_paths(worker: WorkerRecord) -> tuple[Path, Path]:
    """Where the watchdog's on-exit command leaves what it did, for whoever asks next: in
    the home, or, when the home's disk is full, in the user's cache folder."""
    file = f"worker-{worker.name}-{worker.pid}.json"
    spare = f"{hashlib.sha256(worker.home.encode()).hexdigest()[:12]}-{file}"
    return registry.state_dir(worker.home) / "ended" / file, settings.cache_dir() / "ended" / spare


def read_outcome(worker: WorkerRecord) -> Outcome | None:
    for path in outcome_paths(worker):
        try:
            saved = json.loads(path.read_text())
            # a file an older release wrote may hold fields this one no longer has
            return Outcome(**{f.name: saved[f.name] for f in fields(Outcome) if f.name in saved})
        except (OSError, ValueError, TypeError):
            continue
    return None


def save_outcome(worker: WorkerRecord, outcome: Outcome) -> None:
    """Keep what finishing did for later; in the cache folder when the home's disk is full."""
    text = json.dumps(asdict(outcome))
    for path in outcome_paths(worker):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            process.write_private(path, text)
            return
        except OSError:
            continue


def forget_outcome(worker: WorkerRecord) -> None:
    for path in outcome_paths(worker):
        path.unlink(missing_ok=True)


def finish(
    worker: WorkerRecord,
    reason: str = StopReason.UNKNOWN,
    exit_code: int | None = None,
    disk_full: bool = False,
) -> Outcome:
    """Crash the runs an ended worker had taken and remove it from its pool, on its server
    as it runs now (``finished`` stays False when it does not answer: a later try)."""
    outcome = Outcome(worker.name, worker.pid, reason, exit_code)
    said = process.tail(worker.log, 200, start=worker.log_offset)  # this start's last lines
    outcome.disk_full = disk_full or disk_is_full(worker.home) or is_disk_full(said)
    api_url = registry.server_url_for(worker)
    in_flight = in_flight_runs(api_url, worker.pool)
    if api_url is None or in_flight is None:
        return outcome
    others = any(
        w.alive() and w.pool == worker.pool and w.name != worker.name
        for w in registry.worker_records(worker.home)
    )
    runs = taken_by(in_flight, worker, others)
    message = CRASH_MESSAGE.format(name=worker.name, reason=outcome.why())
    outcome.crashed = crash_runs(api_url, runs, message)
    outcome.finished = len(outcome.crashed) == len(runs)
    forget_worker(api_url, worker.pool, worker.name)
    return outcome


def settle(worker: WorkerRecord) -> Outcome:
    """Make sure an ended worker's runs are final (its on-exit command's work, finished if
    need be), then forget the worker: its state file goes."""
    done = read_outcome(worker)
    if done is None or not done.finished:
        earlier = (done.reason, done.exit_code, done.disk_full) if done else ()
        done = finish(worker, *earlier)
    if done.finished:
        worker.remove()
        forget_outcome(worker)
    return done


def stand_in(
    path: Path, pid: int, pool: str, queues: list[str], since: float, api_url: str | None = None
) -> WorkerRecord:
    """A record, enough for :func:`finish`, of a worker whose state file is damaged: its name
    from the file's name, the rest from the arguments its on-exit command was given."""
    home = str(path.parent.parent)
    name = path.stem.removeprefix("worker-")
    return WorkerRecord(
        pid=pid,
        create_time=0.0,
        watchdog_pid=0,
        watchdog_create_time=0.0,
        kind=registry.Kind.WORKER,
        name=name,
        home=home,
        argv=[],
        log=str(registry.log_path(home, registry.Kind.WORKER, name)),
        log_offset=0,
        started_at=since,
        owner=registry.Owner.KERNEL,
        owner_pid=0,
        api_url=api_url or "",
        pool=pool,
        queues=queues,
        remote=api_url is not None,
    )


def watchdog_runs_for(home: str | os.PathLike[str], name: str) -> bool:
    """Whether a watchdog of the worker ``name`` of ``home`` still runs (read from the
    process table: what a damaged state file no longer says). Its on-exit command
    finishes that worker's runs."""
    import psutil

    from energy_flows.services.process import WATCHDOG_SCRIPT

    mine = json.dumps(["--home", str(home), "--worker", name])[1:-1]
    cmdlines = [proc.info.get("cmdline") or [] for proc in psutil.process_iter(["cmdline"])]
    return any(str(WATCHDOG_SCRIPT) in c and any(mine in p for p in c) for c in cmdlines)


#: A run in flight whose process has been gone this long was never recorded as ended.
ORPHAN_AFTER_SECONDS = 10.0
#: A run given up on a full disk: Pending this long, this long after room, set Pending at most
#: WINDOW after room (the watchdog samples the disk: it may miss a last full moment).
ABANDONED_AFTER_SECONDS, ABANDONED_PENDING_SECONDS, ABANDONED_WINDOW = 20.0, 45.0, 120.0
ORPHAN_MESSAGE = (
    "Its process ended while its worker {name!r} ran, but the server could not record how "
    "it ended (it could not write then: a full disk, or it was down)."
)
ABANDONED_MESSAGE = (
    "Its worker {name!r} set it Pending, then gave it up unstarted: the server could not "
    "record the worker's next step (it could not write then: the disk was full). Make room, "
    "then trigger it again."
)


def run_processes(pid: int) -> set[str] | None:
    """The flow runs whose processes descend from ``pid`` (a worker): their run ids.

    None when that cannot be known (a process whose environment may not be read).
    """
    import psutil

    found: set[str] = set()
    try:
        for proc in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):  # ended
                found.add(proc.environ().get("PREFECT__FLOW_RUN_ID") or "")
    except psutil.Error:
        return None
    return found - {""}


_ROOM_SEEN: dict[tuple[str, int, float], tuple[int, float]] = {}  # a start: bytes read, room


def disk_had_room_at(worker: WorkerRecord) -> float:
    """When the worker's watchdog last saw its home's disk get room again (0.0: never),
    reading only the whole lines this start's log gained since the last call."""
    key = (worker.log, worker.log_offset, worker.started_at)
    done, room = _ROOM_SEEN.get(key, (worker.log_offset, 0.0))
    with contextlib.suppress(OSError), open(worker.log, "rb") as f:
        f.seek(done)
        whole, newline, _ = f.read().rpartition(b"\n")
        found = re.findall(re.escape(DISK_WAS_FULL).encode() + rb" [\d.]+ ([\d.]+)", whole)
        room = float(found[-1]) if found else room
        _ROOM_SEEN[key] = done + len(whole) + len(newline), room
    return room


def abandoned(worker: WorkerRecord, since: float, now: float) -> bool:
    """Whether a run the worker set Pending at ``since`` (it has no process) was given up on
    a full disk: the watchdog saw room come back long enough ago, and not long before."""
    room = disk_had_room_at(worker)
    if not room or now - room < ABANDONED_AFTER_SECONDS:
        return False
    return now - since > ABANDONED_PENDING_SECONDS and since - room < ABANDONED_WINDOW


def crash_orphans(worker: WorkerRecord) -> list[str]:
    """Crash a live worker's runs that nothing will end (docs/architecture.md); their names."""
    api_url = registry.server_url_for(worker)
    in_flight = in_flight_runs(api_url, worker.pool)
    running = None if in_flight is None else run_processes(worker.pid)
    if api_url is None or in_flight is None or running is None:
        return []
    now = time.time()
    found: dict[str, list[dict[str, Any]]] = {ORPHAN_MESSAGE: [], ABANDONED_MESSAGE: []}
    for run in taken_by(in_flight, worker, others_serve_pool=True):
        state, gone = run.get("state") or {}, str(run["id"]) not in running
        changed = api.timestamp(state.get("timestamp")) or now
        if gone and run.get("infrastructure_pid") and now - changed > ORPHAN_AFTER_SECONDS:
            found[ORPHAN_MESSAGE].append(run)
        elif gone and state.get("name") == "Pending" and abandoned(worker, changed, now):
            found[ABANDONED_MESSAGE].append(run)
    if not any(found.values()) or not worker.alive():  # it ended: its watchdog finishes them
        return []
    said = {message.format(name=worker.name): runs for message, runs in found.items()}
    return [name for m, runs in said.items() for name in crash_runs(api_url, runs, m, False)]


def stop_run_processes(run_ids: Iterable[str]) -> None:
    """Kill the processes of these flow runs (their worker and its watchdog are gone, so
    nothing else would): a process runs a flow run when its environment names the run."""
    import psutil

    wanted = {str(run_id) for run_id in run_ids}
    if not wanted:
        return
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("PREFECT__FLOW_RUN_ID") in wanted:
                proc.kill()


def settle_damaged(found: registry.Damaged) -> Outcome | None:
    """Finish a worker whose state file is damaged and whose watchdog is gone (None while
    it runs): its runs in flight labelled with its name, in any pool; then the file goes."""
    home = found.path.parent.parent
    name = found.path.stem.removeprefix("worker-")
    if watchdog_runs_for(home, name):
        return None
    outcome = Outcome(name, 0, StopReason.UNKNOWN)
    server = registry.live_server(home)
    in_flight = in_flight_runs(server.api_url if server else None, None)
    if server is None or in_flight is None:
        return outcome
    runs = [run for run in in_flight if (run.get("labels") or {}).get(WORKER_LABEL) == name]
    message = CRASH_MESSAGE.format(
        name=name, reason=f"{describe_stop(StopReason.UNKNOWN)}; its state file was damaged"
    )
    outcome.crashed = crash_runs(server.api_url, runs, message)
    outcome.finished = len(outcome.crashed) == len(runs)
    stop_run_processes(run["id"] for run in runs)
    for pool in {run.get("work_pool_name") for run in runs} - {None}:
        forget_worker(server.api_url, str(pool), name)
    if outcome.finished:
        found.path.unlink(missing_ok=True)
    return outcome


def main(argv: list[str] | None = None) -> int:
    """The worker watchdog's ``--on-exit`` command: finish the worker that just ended
    (from its state file, or its arguments when that is damaged: :func:`stand_in`)."""
    parser = argparse.ArgumentParser(prog="python -m energy_flows.services.recovery")
    parser.add_argument("--home", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--pool")
    parser.add_argument("--queue", action="append", default=[])
    parser.add_argument("--since", type=float, default=0.0)
    parser.add_argument("--api-url")
    args = parser.parse_args(argv)
    pid = int(os.environ.get("ENERGY_FLOWS_CHILD_PID") or 0)
    path = registry.state_path(args.home, registry.Kind.WORKER, args.worker)
    found = registry.read(path)
    damaged = isinstance(found, registry.Damaged) and args.pool is not None
    if damaged:
        worker = stand_in(path, pid, args.pool, args.queue, args.since, args.api_url)
    elif isinstance(found, WorkerRecord) and found.pid == pid:
        worker = found
    else:
        return 0  # already finished by someone else, or a newer worker took the name
    code = os.environ.get("ENERGY_FLOWS_EXIT_CODE", "")
    exit_code = int(code) if code.lstrip("-").isdigit() else None
    reason = stop_reason(os.environ.get("ENERGY_FLOWS_STOP_REASON"))
    outcome = finish(worker, reason, exit_code, os.environ.get("ENERGY_FLOWS_DISK_FULL") == "1")
    save_outcome(worker, outcome)
    done = f"{len(outcome.crashed)} run(s) in flight marked Crashed"
    later = "its runs could not be checked (no server); the next start will"
    said = done if outcome.finished else later
    with contextlib.suppress(OSError):  # the log's disk may be full: the runs matter more
        print(f"[recovery] worker {worker.name!r} ended ({outcome.reason}): {said}", flush=True)
    if damaged and outcome.finished:
        path.unlink(missing_ok=True)  # nothing is left to do for it: its runs are final
        forget_outcome(worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
