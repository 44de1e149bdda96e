"""The learner's journey: every lesson in order, in ONE home, tabs left open and revisited.

nbval gives each lesson a fresh home; a learner does not. Here lessons 00 to
08 run in a single home and a single folder, every exercise solved as the
lesson's solution says (``tools/lesson_solutions.py`` puts each solution into
its exercise cell): every check must say ✓, so the solutions as written in the
notebooks never rot. The files a lesson writes stay in the folder for the next
(lesson 02's flow is what lesson 03 deploys).

Learners keep tabs open, so lessons 02, 05, 06 and 07 stay open in four kernels
of the home at once (real kernels, as JupyterLab starts them):

* 00 to 04 in order (02's tab stays open);
* lesson 05's kernel is restarted while its worker has runs in flight
  (Kernel > Restart; their processes frozen, so that they are still in flight
  when the old kernel ends): those runs end Crashed, saying why, and their
  processes end with the worker;
* 05 again in a new tab, left unfinished with its workers running; 06 from the
  top (it names 05's workers and stops them), then 07 (which moves the home
  onto PostgreSQL);
* back to 02's and 05's exercises: one short message, the first cell again,
  every solution accepted; 07's first cell again names the tabs it affects;
* no cell shows a connection traceback, every message names the next step,
  every run ends final, nothing is left running, and no ``energy-flows reset``;
* lesson 08 last, without solutions: its checks read what the learner's
  terminals did, and its Run All must start nothing.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from nbclient import NotebookClient
from nbclient.util import run_sync

from energy_flows.errors import WaitTimeout
from energy_flows.lessons import leftover_processes
from energy_flows.services import registry
from energy_flows.waiting import wait_until
from tests.tabs import (
    NEXT_STEP,
    Tab,
    assert_readable,
    errors,
    no_leftovers,
    refused_then_set_up_again,
    run_all_solved,
    shown_text,
)
from tools.execute_lessons import kernel_env, lesson_paths
from tools.lesson_solutions import run_with_solutions

pytestmark = [pytest.mark.server, pytest.mark.timeout(2400)]

#: The cell of lesson 05 that starts the worker: runs are in flight right after it.
WORKER_CELL = 'Worker("energy-pool", ["energy_usage"], name="agent-1").start()'


def _client(path: Path, folder: Path) -> tuple[NotebookClient, nbformat.NotebookNode]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    return client, nb


def _run_all(path: Path, home: Path, folder: Path) -> float:
    """Run All of a lesson with every exercise solved; each check must accept its solution."""
    started = time.monotonic()
    _, verdicts = run_with_solutions(path, kernel_env(home), folder, timeout=240)
    for index, verdict in verdicts.items():
        if verdict:  # a %%writefile exercise prints none: the next check judges its file
            assert verdict.startswith("✓ "), f"{path.name} cell {index}:\n{verdict}"
    return time.monotonic() - started


#: Run in lesson 05's kernel after its worker started: wait until it has taken runs.
IN_FLIGHT = """
import json, time
from energy_flows.orchestration import read_run
taken = []
while not taken:
    taken = [r.id for r in runs if read_run(r).state in ("Pending", "Running")]
    time.sleep(0.1)
print(json.dumps(taken))
"""


def _freeze_run_processes(home: Path, taken: list[str]) -> dict[psutil.Process, str]:
    """Freeze (SIGSTOP) the processes of the runs ``taken`` as soon as the worker has started
    them: runs mid-computation, which cannot finish before the restart lands. (Lesson 05's
    runs take about a second; a kernel's shutdown under CI load once took 16 s, and a run
    that finished meanwhile had rightly Completed.)"""
    (worker,) = [w for w in registry.worker_records(home) if w.name == "agent-1"]
    frozen: dict[psutil.Process, str] = {}  # a frozen process: the run it runs

    def started() -> bool:
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process(worker.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    run_id = proc.environ().get("PREFECT__FLOW_RUN_ID")
                    if run_id in taken:
                        proc.send_signal(signal.SIGSTOP)
                        frozen[proc] = run_id
        return bool(frozen)

    wait_until(started, 60, what="the process of a run the worker took", max_interval=0.1)
    return frozen


def _restart_mid_lesson_05(path: Path, home: Path, folder: Path) -> dict[psutil.Process, str]:
    """Run lesson 05 until its worker has taken runs, freeze their processes, then Restart
    Kernel; return those processes, each with its run (in flight when the kernel ended)."""
    client, nb = _client(path, folder)
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
        frozen = _freeze_run_processes(home, json.loads(wait.outputs[-1]["text"]))
        # nbclient's managers are asynchronous: run their coroutines to the end here.
        run_sync(client.km.restart_kernel)(now=False)
        run_sync(client.kc.wait_for_ready)(timeout=60)
        # The new kernel holds nothing yet; the worker's runs are left behind.
        probe = nbformat.v4.new_code_cell("1 + 1")
        nb.cells.append(probe)
        client.execute_cell(probe, len(nb.cells) - 1)
    return frozen


def _alive(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    return False


def _kill(frozen: dict[psutil.Process, str]) -> None:
    """What a failed test would leave frozen forever."""
    for proc in filter(_alive, frozen):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def _rows(home: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows a query of the home's SQLite database returns (read-only)."""
    import sqlite3

    db = home / "prefect" / "prefect.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def _by_id(rows: list[tuple[Any, ...]], ids: list[str]) -> list[tuple[Any, ...]]:
    """The rows whose first column is one of these runs' ids (a run's name changes when
    its flow starts, its id never)."""
    wanted = {i.replace("-", "") for i in ids}
    return [row for row in rows if str(row[0]).replace("-", "") in wanted]


def _states(home: Path, ids: list[str]) -> dict[str, str]:
    """The state of each of these runs."""
    rows = _by_id(_rows(home, "SELECT id, name, state_name FROM flow_run"), ids)
    return {f"{name} ({i})": state for i, name, state in rows}


#: What the Crashed state of a run in flight at a kernel restart says (services/recovery.py).
KERNEL_ENDED = "the notebook kernel (or program) that started it ended"


def _messages(home: Path, ids: list[str]) -> list[str]:
    """The message of each of these runs' current state."""
    sql = (
        "SELECT flow_run.id, flow_run_state.message FROM flow_run "
        "JOIN flow_run_state ON flow_run.state_id = flow_run_state.id"
    )
    return [str(message) for _, message in _by_id(_rows(home, sql), ids)]


def _runs_not_final(home: Path) -> list[str]:
    """Runs in the home's database that are Pending or Running (there must be none)."""
    rows = _rows(
        home,
        "SELECT name, state_name FROM flow_run WHERE state_type IN "
        "('PENDING', 'RUNNING', 'CANCELLING')",
    )
    return [f"{name} ({state})" for name, state in rows]


def test_lessons_in_order_in_one_home_tabs_open_and_a_restart(tmp_path):
    home, folder = tmp_path / "one-home", tmp_path / "my-lessons"
    folder.mkdir()
    lessons = {p.name[:2]: p for p in lesson_paths()}
    times: dict[str, float] = {}
    tabs = {n: Tab(lessons[n], home, folder) for n in ("02", "05", "06", "07")}
    t02, t05, t06, t07 = tabs.values()
    with contextlib.ExitStack() as stack:
        for number in ("00", "01"):
            times[number] = _run_all(lessons[number], home, folder)
        started = time.monotonic()
        stack.enter_context(t02.open())
        run_all_solved(t02)  # its tab stays open
        times["02"] = time.monotonic() - started
        for number in ("03", "04"):
            times[number] = _run_all(lessons[number], home, folder)
        frozen = _restart_mid_lesson_05(lessons["05"], home, folder)
        stack.callback(_kill, frozen)
        in_flight = sorted(set(frozen.values()))
        # The runs' processes ended with the worker (README: Restart Kernel).
        assert wait_until(lambda: not any(map(_alive, frozen)), 30, what="the runs' processes")

        # 05 in a new tab, up to its clean-up: its workers run on, its exercises wait.
        started = time.monotonic()
        stack.enter_context(t05.open())
        t05.run_through(t05.index_of("pause_deployment("))
        times["05 again"] = time.monotonic() - started

        # 06 from the top: 05's workers would take the runs 06 needs Late; it says so.
        started = time.monotonic()
        stack.enter_context(t06.open())
        run_all_solved(t06)
        times["06"] = time.monotonic() - started
        said = "".join(shown_text(o) for i, o in t06.shown if i == t06.index_of("lesson_setup("))
        assert "lesson 05's workers 'agent-1' and 'agent-2'" in said, said
        assert "Worker(...)" in said, said
        # Lesson 06 stopped everything.
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: not leftover_processes(home), 20, what="the last processes to end")
        assert leftover_processes(home) == []
        assert _runs_not_final(home) == []
        # One behaviour, the README's: the runs in flight when the kernel ended are Crashed,
        # saying why (and stay so: their processes ended with the worker, none finished later).
        assert set(_states(home, in_flight).values()) == {"Crashed"}, _states(home, in_flight)
        reasons = _messages(home, in_flight)
        assert all(KERNEL_ENDED in m for m in reasons), reasons

        # 07 from the top (06 stopped the server: 07 starts it on PostgreSQL), then stops it.
        started = time.monotonic()
        stack.enter_context(t07.open())
        run_all_solved(t07)
        times["07"] = time.monotonic() - started

        # Back to 02's exercises: one message, the first cell again, then every solution.
        started = time.monotonic()
        message = refused_then_set_up_again(t02, t02.exercises[0])
        assert "stopped by lesson 06" in message or "stopped by lesson 07" in message, message
        for index in t02.exercises:
            t02.solve(index)

        # Back to 05's exercises: the same; its worker started again by its own cell.
        refused_then_set_up_again(t05, t05.exercises[0])
        t05.run(t05.index_of('name="agent-1").start()'))
        for index in t05.exercises:
            t05.solve(index)

        # 07's first cell again, while 02 and 05 use the SQLite server: said once, with whom.
        switch = t07.run(t07.index_of('lesson_setup("07")'))
        text = "".join(shown_text(o) for o in switch.outputs)
        assert not errors(switch), errors(switch)
        assert text.count("stopping it") == 1 and "To switch" not in text, text
        assert "lesson 02" in text and "lesson 05" in text and NEXT_STEP in text, text
        message = refused_then_set_up_again(t02, t02.exercises[-1])
        assert "stopped by lesson 07" in message and "PostgreSQL" in message, message
        t02.solve(t02.exercises[-1])  # on the PostgreSQL server now

        t05.run(t05.index_of("pause_deployment("))  # 05's clean-up: its workers stop
        t07.run(t07.index_of("server.stop()"))
        times["back in 02, 05, 07"] = time.monotonic() - started
        assert_readable(list(tabs.values()))
    no_leftovers(home)

    # Lesson 08 (the terminals do the work; nobody types here) only reads: it runs after all.
    client, _ = _client(lessons["08"], folder)
    started = time.monotonic()
    client.execute(env=kernel_env(home))
    times["08"] = time.monotonic() - started
    assert leftover_processes(home) == []
    print("journey:", ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
