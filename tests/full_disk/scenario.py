"""Runs inside a mount namespace whose home is a small tmpfs: the disk fills for real.

Started by tests/test_full_disk.py (``python -m full_disk.scenario``); prints one JSON
line with what a learner would have seen. Everything it starts, it stops.
"""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from flows_for_tests.nap import nap

from energy_flows import orchestration as orch
from energy_flows.orchestration import flow_run_command
from energy_flows.services import control, registry
from energy_flows.services.server import PrefectServer
from energy_flows.services.worker import Worker

HOME = Path(os.environ["ENERGY_FLOWS_HOME"])
FILLER = HOME / "filler"
FINAL = {"Completed", "Failed", "Crashed", "Cancelled"}
#: Not in flight: waiting in the queue for a worker (one that died of the full disk left them).
WAITING = {"Scheduled", "Late"}


def fill() -> None:
    """Write until the disk refuses even one byte more."""
    fd = os.open(FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def error_of(call: Any) -> dict[str, str]:
    try:
        call()
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": "", "message": ""}


def crash_message(run: orch.RunInfo) -> str:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(run.id)).state.message or ""


def left_in_flight(
    runs: list[orch.RunInfo], states: list[str], worker: Worker, room_at: float, api_url: str
) -> dict[str, Any]:
    """What the orphan search saw of runs still in flight, for a failure's message."""
    from energy_flows.services import api, process, recovery

    rec = worker.record
    seen: dict[str, Any] = {"room_at": room_at, "runs": []}
    if rec is not None:
        seen["watchdog_says_room_at"] = recovery.disk_had_room_at(rec)
        seen["run_processes"] = sorted(recovery.run_processes(rec.pid) or [])
        seen["worker_started_at"] = rec.started_at
        seen["watchdog_lines"] = [
            line
            for line in process.tail(rec.log, 400, start=rec.log_offset).splitlines()
            if "[watchdog" in line
        ]
    for run, state in zip(runs, states, strict=True):
        if state not in FINAL | WAITING:
            got = api.call("GET", f"{api_url}/flow_runs/{run.id}")
            seen["runs"].append(
                {
                    "id": run.id,
                    "state": got["state"]["name"],
                    "at": api.timestamp(got["state"]["timestamp"]),
                    "label": (got.get("labels") or {}).get(recovery.WORKER_LABEL),
                    "queue": got.get("work_queue_name"),
                    "infrastructure_pid": got.get("infrastructure_pid"),
                }
            )
    return seen


def runs_in_flight_when_the_disk_fills() -> dict[str, Any]:
    out: dict[str, Any] = {}
    server = PrefectServer(quiet=True).start()
    worker = Worker(pool="disk", queues=["q"], name="disk-agent", quiet=True).start()
    deployment = orch.deploy(
        nap, "nap", work_pool="disk", work_queue="q", job_variables={"command": flow_run_command()}
    ).full_name
    runs = [orch.trigger(deployment, parameters={"seconds": 20}) for _ in range(3)]
    deadline = time.monotonic() + 120
    while not all(orch.read_run(r).state == "Running" for r in runs):
        assert time.monotonic() < deadline, [orch.read_run(r).state for r in runs]
        time.sleep(0.5)

    fill()
    started = time.monotonic()
    for _ in range(200):  # runs are accepted while SQLite still finds room in its pages
        try:
            runs.append(orch.trigger(deployment, parameters={"seconds": 0}))
        except Exception as exc:
            out["trigger"] = {"type": type(exc).__name__, "message": str(exc)}
            break
    out["trigger_seconds"] = time.monotonic() - started
    out["deploy"] = error_of(
        lambda: orch.deploy(
            nap, "nap-2", work_pool="disk", work_queue="q", job_variables={"command": "x"}
        )
    )
    out["worker"] = error_of(
        lambda: Worker(pool="disk", queues=["q2"], name="second", quiet=True, timeout=30).start()
    )
    out["wait"] = error_of(lambda: orch.wait_for(runs, timeout=15))

    FILLER.unlink()  # what the message says: make room
    freed, room_at = time.monotonic(), time.time()
    deadline = freed + 60
    while True:
        states = [orch.read_run(r).state for r in runs]  # each read finishes ended workers
        if all(s in FINAL | WAITING for s in states) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out["final_after_room_seconds"] = time.monotonic() - freed
    out["states"] = states
    out["worker_died"] = worker.record is None
    out["left_in_flight"] = left_in_flight(runs, states, worker, room_at, server.api_url)
    out["crash_messages"] = [
        crash_message(r) for r, s in zip(runs, states, strict=True) if s == "Crashed"
    ]
    out["stopped"] = server.stop()
    return out


def a_start_on_a_full_disk() -> dict[str, Any]:
    fill()
    try:
        return {"start": error_of(lambda: PrefectServer(quiet=True, timeout=60).start())}
    finally:
        FILLER.unlink()


def main() -> None:
    result = {"runs": runs_in_flight_when_the_disk_fills(), "start": a_start_on_a_full_disk()}
    control.stop_all(HOME, quiet=True)
    result["left"] = [rec.pid for rec in registry.live_records(HOME)]
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
