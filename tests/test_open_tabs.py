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
* two tabs running ``lesson_setup("05")`` at the same moment both succeed.

Lessons 02, 05, 06 and 07 open at once, in a learner's order, are part of the
learner's journey (``tests/test_journey.py``), which keeps every tab open.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from energy_flows.services.process import free_port
from energy_flows.services.server import PrefectServer
from tests.tabs import Tab, assert_readable, errors, lesson, no_leftovers, shown_text
from tools.execute_lessons import kernel_env

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]


# --------------------------------------------------------------------------
# One tab, its server moved
# --------------------------------------------------------------------------


def test_a_tab_whose_server_moved_says_so_then_follows_it(tmp_path: Path) -> None:
    home, folder = tmp_path / "home", tmp_path / "my-lessons"
    folder.mkdir()
    tab = Tab(lesson("02"), home, folder)
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
    no_leftovers(home)


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
    no_leftovers(home)


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
