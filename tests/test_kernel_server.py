"""kernel_server's judgements, without a kernel: which cells run, which errors are shortened.

The real kernels, servers and lessons are in ``tests/test_open_tabs.py``; here the
pieces that decide are checked one by one, with a server process that is gone.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from energy_flows import kernel_server as ks


@pytest.fixture()
def gone_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ks._Link:
    """This process follows a server of ``tmp_path`` whose process has ended."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    link = ks._Link(
        tmp_path, "02", pid=ended.pid, create_time=0.0, api_url="http://127.0.0.1:4311/api"
    )
    monkeypatch.setattr(ks, "_LINK", link)
    return link


def _refused(source: str) -> str | None:
    """The message the guard refuses a cell with (IPython's code for it), or None."""
    try:
        ks._CellGuard().visit(ast.parse(source))
    except ks.ServerGone as exc:
        return str(exc)
    return None


def test_the_next_cell_is_refused_with_who_stopped_the_server(gone_server: ks._Link) -> None:
    assert gone_server.pid is not None
    ks.note_stopped(gone_server.home, gone_server.pid, "lesson 06")
    message = _refused("result = 1 + 1")
    assert message is not None
    assert "stopped by lesson 06" in message
    assert 'Run this notebook\'s first cell again (lesson_setup("02"))' in message


def test_the_first_cell_magics_and_a_server_start_always_run(gone_server: ks._Link) -> None:
    assert _refused('server = lesson_setup("02")') is None
    assert _refused("server = PrefectServer().start()") is None
    assert _refused("get_ipython().run_line_magic('tb', '')") is None  # %tb
    assert _refused("get_ipython().system('energy-flows status')") is None  # !energy-flows
    gone_server.stopped_here = True  # this notebook stopped it: its next cells run
    assert _refused("leftovers(server.home)") is None


def test_a_connection_error_to_this_server_gets_the_short_message(gone_server: ks._Link) -> None:
    request = httpx.Request("POST", "http://127.0.0.1:4311/api/flow_runs/")
    refused = httpx.ConnectError("[Errno 111] Connection refused", request=request)
    message = ks.connection_message(refused)
    assert message is not None and "first cell again" in message
    wrapped = RuntimeError(
        "Cannot create flow run. Failed to reach API at http://127.0.0.1:4311/api/."
    )
    assert ks.connection_message(wrapped) == message
    elsewhere = httpx.ConnectError(
        "refused", request=httpx.Request("GET", "http://10.0.0.7:4200/api")
    )
    assert ks.connection_message(elsewhere) is None  # another server: the usual traceback
    assert ks.connection_message(ValueError("no")) is None
    assert ks.ServerGone(message)._render_traceback_()[0] == f"ServerGone: {message}"


def test_open_lessons_are_the_live_kernels_that_ran_a_first_cell(tmp_path: Path) -> None:
    ks._mark_open(tmp_path, "05")
    assert ks.open_lessons(tmp_path) == []  # this process itself is left out
    assert ks.open_lessons(tmp_path, exclude_self=False) == [ks.OpenLesson("05", os.getpid())]
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    stale = ks._lessons_dir(tmp_path) / f"{ended.pid}.json"
    stale.write_text(json.dumps({"lesson": "02", "pid": ended.pid, "create_time": 0.0}))
    assert [o.lesson for o in ks.open_lessons(tmp_path, exclude_self=False)] == ["05"]
    assert not stale.exists()
