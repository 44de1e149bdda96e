"""The learner's journey: every lesson in order, in ONE home, one kernel after another.

nbval gives each lesson a fresh home; a learner does not. Here lessons 00 to
08 run top to bottom in a single home, each in a new kernel started right
after the previous one ended (as when a learner closes one lesson and opens
the next). In the middle, lesson 05's kernel is restarted while its worker
has runs in flight (Kernel > Restart), then 05 runs again from the top, then
06, then 07 (which moves the home onto PostgreSQL). Every lesson must pass
without `energy-flows reset`, every run must end final, and nothing may be
left running.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.util import run_sync

from energy_flows.errors import WaitTimeout
from energy_flows.lessons import leftover_processes
from energy_flows.waiting import wait_until
from tools.execute_lessons import kernel_env, lesson_paths

pytestmark = [pytest.mark.server, pytest.mark.timeout(1500)]

#: The cell of lesson 05 that starts the worker: runs are in flight right after it.
WORKER_CELL = 'Worker("energy-pool", ["energy_usage"], name="agent-1").start()'


def _client(path: Path, home: Path) -> tuple[NotebookClient, nbformat.NotebookNode]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    return client, nb


def _run_all(path: Path, home: Path) -> float:
    client, _nb = _client(path, home)
    started = time.monotonic()
    client.execute(env=kernel_env(home))
    return time.monotonic() - started


#: Run in lesson 05's kernel after its worker started: wait until it has taken runs.
IN_FLIGHT = """
import json, time
from energy_flows.orchestration import read_run
while not any(read_run(r).state in ("Pending", "Running") for r in runs):
    time.sleep(0.1)
print(json.dumps([r.name for r in runs if read_run(r).state in ("Pending", "Running")]))
"""


def _restart_mid_lesson_05(path: Path, home: Path) -> list[str]:
    """Run lesson 05 until its worker has taken runs, then Restart Kernel; return those runs."""
    client, nb = _client(path, home)
    with client.setup_kernel(env=kernel_env(home)):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            client.execute_cell(cell, index)
            if WORKER_CELL in cell.source:
                break
        else:
            pytest.fail(f"lesson 05 has no cell starting the worker ({WORKER_CELL})")
        wait = nbformat.v4.new_code_cell(IN_FLIGHT)
        nb.cells.append(wait)
        client.execute_cell(wait, len(nb.cells) - 1)
        taken = json.loads(wait.outputs[-1]["text"])
        # nbclient's managers are asynchronous: run their coroutines to the end here.
        run_sync(client.km.restart_kernel)(now=False)
        run_sync(client.kc.wait_for_ready)(timeout=60)
        # The new kernel holds nothing yet; the worker's runs are left behind.
        probe = nbformat.v4.new_code_cell("1 + 1")
        nb.cells.append(probe)
        client.execute_cell(probe, len(nb.cells) - 1)
    return taken


def _states(home: Path, names: list[str]) -> dict[str, str]:
    import sqlite3

    db = home / "prefect" / "prefect.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT name, state_name FROM flow_run").fetchall()
    return {name: state for name, state in rows if name in names}


def _runs_not_final(home: Path) -> list[str]:
    """Runs in the home's database that are Pending or Running (there must be none)."""
    import sqlite3

    db = home / "prefect" / "prefect.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT name, state_name FROM flow_run WHERE state_type IN "
            "('PENDING', 'RUNNING', 'CANCELLING')"
        ).fetchall()
    return [f"{name} ({state})" for name, state in rows]


def test_lessons_in_order_in_one_home_with_a_restart(tmp_path):
    home = tmp_path / "one-home"
    lessons = {p.name[:2]: p for p in lesson_paths()}
    times: dict[str, float] = {}
    for number in ("00", "01", "02", "03", "04"):
        times[number] = _run_all(lessons[number], home)
    in_flight = _restart_mid_lesson_05(lessons["05"], home)
    assert in_flight, "the restart came before the worker took any run"
    times["05 again"] = _run_all(lessons["05"], home)
    times["06"] = _run_all(lessons["06"], home)
    # Lesson 06 stopped everything; its kernel has ended.
    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not leftover_processes(home), 20, what="the last processes to end")
    assert leftover_processes(home) == []
    assert _runs_not_final(home) == []
    assert set(_states(home, in_flight).values()) == {"Crashed"}, _states(home, in_flight)
    # Lesson 07 moves the same home onto PostgreSQL, then stops it all again.
    times["07"] = _run_all(lessons["07"], home)
    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not leftover_processes(home), 20, what="the last processes to end")
    assert leftover_processes(home) == []
    # Lesson 08 (the terminals do the work; nobody types here) only reads: it runs after all.
    times["08"] = _run_all(lessons["08"], home)
    assert leftover_processes(home) == []
    print("journey:", ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
