"""Lessons left open in tabs: every kernel keeps working, or says what to do.

Learners keep every lesson's tab open and go back to earlier ones. Here the
tabs are real kernels, started as JupyterLab starts them (nbclient, the
kernel environment of the notebook tests), all in one home:

* a lesson's kernel whose server another program stopped and started again
  elsewhere refuses its next cell with one short message ("run this
  notebook's first cell again"), and once the first cell ran again, its flow
  runs are recorded on the new server, task runs included (Prefect's event
  sender re-pointed, not only its settings);
* a flow called after the server stopped shows that message, not a
  connection error's frames, and ``%tb`` still shows them;
* two tabs running ``lesson_setup("05")`` at the same moment both succeed;
* lessons 02, 05, 06 and 07 open at once, run in a learner's order (05 left
  unfinished, 06, 07, then back to 02's and 05's exercises): every exercise
  accepts its solution, no cell shows a connection traceback, and every
  message names the next step.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from energy_flows.lessons import leftover_processes
from energy_flows.services.process import free_port
from energy_flows.services.server import PrefectServer
from energy_flows.waiting import wait_until
from tools.execute_lessons import kernel_env, lesson_paths
from tools.lesson_solutions import solutions, verdict, with_solutions

pytestmark = [pytest.mark.server, pytest.mark.timeout(1500)]

#: What a connection error's traceback shows; no cell may show it.
CONNECTION_WORDS = ("ConnectError", "Connection refused", "ConnectionRefusedError")

#: What the short message for a stopped server asks for.
NEXT_STEP = "first cell again"


class Tab:
    """One lesson open in a tab: its notebook (solutions filled in) and a kernel of its own."""

    def __init__(self, path: Path, home: Path, folder: Path) -> None:
        self.name = path.name[:2]
        self.original = nbformat.read(path, as_version=4)
        self.nb = with_solutions(self.original)
        self.home = home
        self.client = NotebookClient(
            self.nb,
            timeout=300,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(folder)}},
        )
        #: Every output this tab showed: (cell index, output).
        self.shown: list[tuple[int, Any]] = []

    @contextlib.contextmanager
    def open(self) -> Any:
        with self.client.setup_kernel(env=kernel_env(self.home)):
            yield self

    @property
    def exercises(self) -> list[int]:
        return [item.exercise_index for item in solutions(self.original)]

    def run(self, index: int) -> Any:
        """Run cell ``index`` (again); return it with its new outputs."""
        cell = self.nb.cells[index]
        cell.outputs = []
        self.client.execute_cell(cell, index)
        self.shown += [(index, copy.deepcopy(out)) for out in cell.outputs]
        return cell

    def run_code(self, source: str) -> Any:
        """Run a new cell, as a learner types one at the end of the notebook."""
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        return self.run(len(self.nb.cells) - 1)

    def run_through(self, stop: int, skip_exercises: bool = True) -> None:
        """Run the code cells before ``stop`` in order (Shift-Enter down the page)."""
        for index, cell in enumerate(self.nb.cells[:stop]):
            if cell.cell_type == "code" and not (skip_exercises and index in self.exercises):
                cell = self.run(index)
                assert not errors(cell), f"lesson {self.name} cell {index}: {errors(cell)}"

    def index_of(self, text: str) -> int:
        """The first code cell whose source contains ``text``."""
        for index, cell in enumerate(self.nb.cells):
            if cell.cell_type == "code" and text in cell.source:
                return index
        raise AssertionError(f"lesson {self.name} has no cell with {text!r}")

    def solve(self, index: int) -> str:
        """Run exercise ``index`` with its solution; its check's verdict must be ✓."""
        cell = self.run(index)
        assert not errors(cell), f"lesson {self.name} exercise {index}: {errors(cell)}"
        said = verdict(cell)
        if said:  # a %%writefile exercise prints none: the next check judges its file
            assert said.startswith("✓ "), f"lesson {self.name} exercise {index}:\n{said}"
        return said


def errors(cell: Any) -> list[str]:
    return [
        f"{out.get('ename')}: {out.get('evalue')}"
        for out in cell.outputs
        if out.get("output_type") == "error"
    ]


def shown_text(output: Any) -> str:
    """All the text an output shows (a stream, a value, an error's traceback)."""
    parts = [output.get("text", "")]
    parts += [str(v) for v in output.get("data", {}).values()]
    parts += output.get("traceback", [])
    return "\n".join("".join(p) if isinstance(p, list) else str(p) for p in parts)


def assert_readable(tabs: list[Tab]) -> None:
    """No output shows a connection traceback; every error is the short message naming the step."""
    for tab in tabs:
        for index, output in tab.shown:
            text = shown_text(output)
            where = f"lesson {tab.name} cell {index}"
            assert not any(word in text for word in CONNECTION_WORDS), f"{where}:\n{text}"
            if output.get("output_type") == "error":
                assert output["ename"] == "ServerGone", f"{where}:\n{text}"
                assert NEXT_STEP in output["evalue"], f"{where}:\n{text}"
                assert len(output["traceback"]) <= 2, f"{where}:\n{text}"


def _lesson(number: str) -> Path:
    return {p.name[:2]: p for p in lesson_paths()}[number]


def _no_leftovers(home: Path) -> None:
    with contextlib.suppress(Exception):
        wait_until(lambda: not leftover_processes(home), 30, what="the last processes to end")
    assert leftover_processes(home) == []


# --------------------------------------------------------------------------
# One tab, its server moved
# --------------------------------------------------------------------------


def test_a_tab_whose_server_moved_says_so_then_follows_it(tmp_path: Path) -> None:
    home, folder = tmp_path / "home", tmp_path / "my-lessons"
    folder.mkdir()
    tab = Tab(_lesson("02"), home, folder)
    first = tab.index_of('lesson_setup("02")')
    with tab.open():
        flow_cell = tab.index_of("result = energy_usage_pipeline(")
        tab.run_through(flow_cell + 1)

        # Another program stops the server and starts it again on another port.
        PrefectServer(home, quiet=True).stop()
        moved = PrefectServer(home, port=free_port(), quiet=True).start()
        try:
            refused = tab.run(flow_cell)
            assert errors(refused), "the cell ran against a server that had gone"
            message = refused.outputs[-1]["evalue"]
            assert "was stopped" in message and moved.api_url in message, message
            assert 'first cell again (lesson_setup("02"))' in message, message

            # The first cell again: the kernel follows, events and logs included.
            tab.run(first)
            check = tab.run_code(
                "from energy_flows.exercises.answers import task_runs_of\n"
                "import prefect.settings\n"
                "r = energy_usage_pipeline(meter_id='home-002', days=60, return_state=True)\n"
                "from energy_flows.waiting import wait_until\n"
                "tasks = wait_until(lambda: len(task_runs_of(r.state_details.flow_run_id)) >= 2 \n"
                "    and task_runs_of(r.state_details.flow_run_id), 30, what='its task runs')\n"
                "print(prefect.settings.get_current_settings().api.url, len(tasks))"
            )
            assert not errors(check), errors(check)
            url, count = shown_text(check.outputs[-1]).split()[-2:]
            assert url == moved.api_url
            assert int(count) >= 2, "the flow's task runs were not recorded on the new server"

            # A flow called once the server stopped: the short message; %tb the frames.
            assert not errors(tab.run_code("server.stop()"))
            called = tab.run_code("energy_usage_pipeline(meter_id='home-003', days=60)")
            assert [o["ename"] for o in called.outputs if o["output_type"] == "error"] == [
                "ServerGone"
            ], called.outputs
            full = tab.run_code("%tb")
            assert "ConnectError" in shown_text(full.outputs[-1]) or any(
                "ConnectError" in shown_text(o) for o in full.outputs
            ), full.outputs
            tab.shown = [s for s in tab.shown if s[0] != len(tab.nb.cells) - 1]  # %tb's frames
            assert_readable([tab])
        finally:
            moved.stop()
    _no_leftovers(home)


# --------------------------------------------------------------------------
# Two tabs, one Run All each, at the same moment
# --------------------------------------------------------------------------


def _kernel(home: Path, folder: Path) -> tuple[Any, Any]:
    from jupyter_client.manager import start_new_kernel

    return start_new_kernel(kernel_name="python3", env=kernel_env(home), cwd=str(folder))


def test_two_tabs_set_up_lesson_05_at_the_same_moment(tmp_path: Path) -> None:
    """Both kernels start or reuse the server and create the pool, queue, deployment, automation."""
    home, folder = tmp_path / "home", tmp_path / "my-lessons"
    folder.mkdir()
    kernels = [_kernel(home, folder) for _ in range(2)]
    shown: list[list[str]] = [[], []]
    replies: list[Any] = [None, None]

    def run(i: int) -> None:
        def keep(msg: Any) -> None:
            if msg["msg_type"] in ("stream", "error", "execute_result"):
                shown[i].append(str(msg["content"]))

        kc = kernels[i][1]
        replies[i] = kc.execute_interactive(
            'from energy_flows.lessons import lesson_setup\nserver = lesson_setup("05")',
            timeout=300,
            output_hook=keep,
        )

    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(360)
        for i in range(2):
            assert replies[i] is not None, f"tab {i} did not answer"
            assert replies[i]["content"]["status"] == "ok", "\n".join(shown[i])
            assert not any("Traceback" in text or "Error" in text for text in shown[i]), shown[i]
    finally:
        for km, kc in kernels:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        PrefectServer(home, quiet=True).stop()
    _no_leftovers(home)


# --------------------------------------------------------------------------
# Lessons 02, 05, 06 and 07 open at once, in a learner's order
# --------------------------------------------------------------------------


def _run_all_solved(tab: Tab) -> None:
    """Run All, every exercise with its solution: each check must accept it."""
    for index, cell in enumerate(tab.nb.cells):
        if cell.cell_type != "code":
            continue
        if index in tab.exercises:
            tab.solve(index)
        else:
            ran = tab.run(index)
            assert not errors(ran), f"lesson {tab.name} cell {index}: {errors(ran)}"


def _refused_then_set_up_again(tab: Tab, index: int) -> str:
    """Back in a tab: its next cell says the server went; its first cell continues."""
    refused = tab.run(index)
    assert [o["ename"] for o in refused.outputs if o["output_type"] == "error"] == ["ServerGone"], (
        refused.outputs
    )
    first = tab.index_of(f'lesson_setup("{tab.name}")')
    ran = tab.run(first)
    assert not errors(ran), errors(ran)
    return str(refused.outputs[-1]["evalue"])


def test_lessons_02_05_06_07_open_at_once(tmp_path: Path) -> None:
    home, folder = tmp_path / "home", tmp_path / "my-lessons"
    folder.mkdir()
    tabs = {n: Tab(_lesson(n), home, folder) for n in ("02", "05", "06", "07")}
    t02, t05, t06, t07 = tabs.values()
    with contextlib.ExitStack() as stack:
        for tab in tabs.values():  # four kernels of one home, open at once
            stack.enter_context(tab.open())

        # 02 up to its first exercise; 05 up to its clean-up, its exercises left for later.
        t02.run_through(t02.exercises[0])
        t05.run_through(t05.index_of("pause_deployment("))

        # 06 from the top: 05's workers would take the runs 06 needs Late; it says so.
        _run_all_solved(t06)
        said = "".join(shown_text(o) for i, o in t06.shown if i == t06.index_of("lesson_setup("))
        assert "lesson 05's workers 'agent-1' and 'agent-2'" in said, said
        assert "Worker(...)" in said, said

        # 07 from the top (06 stopped the server: 07 starts it on PostgreSQL).
        _run_all_solved(t07)

        # Back to 02's exercises: one message, the first cell again, then every solution.
        message = _refused_then_set_up_again(t02, t02.exercises[0])
        assert "stopped by lesson 06" in message or "stopped by lesson 07" in message, message
        for index in t02.exercises:
            t02.solve(index)

        # Back to 05's exercises: the same; its worker started again by its own cell.
        _refused_then_set_up_again(t05, t05.exercises[0])
        t05.run(t05.index_of('name="agent-1").start()'))
        for index in t05.exercises:
            t05.solve(index)

        # 07's first cell again, while 02 and 05 use the SQLite server: said once, with whom.
        switch = t07.run(t07.index_of('lesson_setup("07")'))
        text = "".join(shown_text(o) for o in switch.outputs)
        assert not errors(switch), errors(switch)
        assert text.count("stopping it") == 1 and "To switch" not in text, text
        assert "lesson 02" in text and "lesson 05" in text and NEXT_STEP in text, text
        message = _refused_then_set_up_again(t02, t02.exercises[-1])
        assert "stopped by lesson 07" in message and "PostgreSQL" in message, message
        t02.solve(t02.exercises[-1])  # on the PostgreSQL server now

        t05.run(t05.index_of("pause_deployment("))  # 05's clean-up: its workers stop
        t07.run(t07.index_of("server.stop()"))
        assert_readable(list(tabs.values()))
    _no_leftovers(home)


# --------------------------------------------------------------------------
# A run that should have turned Late
# --------------------------------------------------------------------------


def test_wait_until_late_names_the_worker_that_took_a_run(
    prefect_server: Any, worker_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another lesson's worker took the run first: the wait says which, and what to do."""
    from energy_flows.lessons import wait_until_late
    from energy_flows.orchestration import deploy_energy_flow, ensure_work_pool, trigger

    pool, queue, deployment = "taken-pool", "taken-queue", "taken-early"
    ensure_work_pool(pool)
    deploy_energy_flow(deployment, parameters={"days": 60}, work_pool=pool, work_queue=queue)
    worker_factory(pool=pool, queues=[queue], name="agent-2")
    # Due now: the worker (polling every second) takes it long before it would turn Late (5 s).
    run = trigger(deployment, flow_run_name="unattended-9")
    table = wait_until_late([run], timeout=60)
    assert list(table["state"]) != ["Late"], table
    said = capsys.readouterr().out
    assert "not Late: the worker 'agent-2'" in said, said
    assert "Worker(name='agent-2').stop()" in said and "run this cell again" in said, said
