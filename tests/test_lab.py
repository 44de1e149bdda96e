"""`make lab`: JupyterLab answers on loopback, and Ctrl-C or SIGTERM stops everything.

The test does what a learner does: runs `make lab`, opens a kernel, starts
the Prefect server from it (as lesson 01 does), then presses Ctrl-C in the
terminal (SIGINT to the foreground process group) or sends SIGTERM. Nothing
the package started may survive.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest
import websocket

from energy_flows.services.server import free_port
from energy_flows.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
TOKEN = uuid.uuid4().hex


def _get(url: str, method: str = "GET", body: dict | None = None) -> dict:
    headers = {"Authorization": f"token {TOKEN}", "Content-Type": "application/json"}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"{}")


def _wait(condition, timeout: float, what: str):
    """``wait_until`` where a connection refused (JupyterLab still starting) means not yet."""

    def attempt():
        try:
            return condition()
        except OSError:
            return None

    return wait_until(attempt, timeout, what=what, interval=0.3, max_interval=0.3)


def _execute(port: int, kernel_id: str, code: str, timeout: float = 90) -> str:
    """Run ``code`` in a JupyterLab kernel over its websocket; return its stdout."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels?token={TOKEN}", timeout=timeout
    )
    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "msg_type": "execute_request",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "store_history": False},
                "channel": "shell",
            }
        )
    )
    out, status = [], None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and status is None:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind == "error":
            out.append("\n".join(msg["content"]["traceback"]))
        elif kind == "execute_reply":
            status = msg["content"]["status"]
    ws.close()
    assert status == "ok", "".join(out)
    return "".join(out)


def _package_pids(home: Path) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if "jupyterlab" in cmd or "energy_flows" in cmd or "ipykernel" in cmd:
                if proc.environ().get("ENERGY_FLOWS_HOME") == str(home):
                    pids.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return pids


@pytest.mark.server
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_make_lab_serves_and_stops_everything(tmp_path: Path, how: str) -> None:
    home = tmp_path / "home"
    port = free_port()
    cache = tmp_path / "cache"  # empty: `energy-flows lab` builds the database template
    env = {**os.environ, "ENERGY_FLOWS_HOME": str(home), "JUPYTER_TOKEN": TOKEN}
    env["ENERGY_FLOWS_CACHE"] = str(cache)
    copy = tmp_path / "my-lessons"  # the learner's working copy (normally ROOT/my-lessons)
    env["ENERGY_FLOWS_MY_LESSONS"] = str(copy)
    env.pop("ENERGY_FLOWS_QUIET", None)
    originals = {p.name: p.read_bytes() for p in (ROOT / "notebooks").glob("*.ipynb")}
    log = open(tmp_path / "make-lab.log", "wb")
    make = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"LAB_ARGS=--no-browser --port {port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        status = _wait(
            lambda: _get(f"http://127.0.0.1:{port}/api/status"), 60, "JupyterLab's /api/status"
        )
        assert "started" in status
        # JupyterLab listens on loopback only.
        listening = {
            c.laddr.ip
            for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
        assert listening and listening <= {"127.0.0.1"}, listening

        # JupyterLab opens the working copy, made from notebooks/ ...
        listed = _get(f"http://127.0.0.1:{port}/api/contents")["content"]
        assert sorted(item["name"] for item in listed) == sorted(originals)
        # ... and a save (autosave, Ctrl-S) changes the copy, never notebooks/.
        lesson = "05_agents_and_workers.ipynb"
        saved = json.loads(originals[lesson])
        saved["cells"] = saved["cells"][:3]  # half-run, as a learner leaves it
        url = f"http://127.0.0.1:{port}/api/contents/{lesson}"
        _get(url, method="PUT", body={"type": "notebook", "format": "json", "content": saved})
        assert len(json.loads((copy / lesson).read_text())["cells"]) == 3

        kernel = _get(f"http://127.0.0.1:{port}/api/kernels", method="POST")
        out = _execute(
            port,
            kernel["id"],
            "import os\n"
            "from energy_flows import PrefectServer\n"
            "from energy_flows.lessons import leftovers\n"
            "server = PrefectServer().start()\n"
            "print('home', os.environ['ENERGY_FLOWS_HOME'])\n"
            "print('cwd', os.getcwd())\n"
            "print('pid', server.pid)\n"
            "found = leftovers()\n"
            "found = found[found['seen in'] == 'process table']\n"
            "print('left', sorted(found['what']))\n",
        )
        assert f"home {home}" in out
        assert f"cwd {copy}" in out
        server_pid = int(out.split("pid ")[1].split()[0])
        assert psutil.pid_exists(server_pid)
        # JupyterLab and this kernel share the home, but only the server is the lessons'.
        assert "left ['Prefect server', 'watchdog of a Prefect server']" in out, out

        if how == "ctrl-c":
            os.killpg(make.pid, signal.SIGINT)  # the terminal sends SIGINT to the whole group
        else:
            lab_cli = next(
                p
                for p in psutil.Process(make.pid).children(recursive=True)
                if "energy-flows" in " ".join(p.cmdline())
            )
            lab_cli.send_signal(signal.SIGTERM)
        make.wait(timeout=60)
        _wait(lambda: not psutil.pid_exists(server_pid), 10, "the lesson's server to stop")
        _wait(lambda: not _package_pids(home), 10, "every process of the home to stop")
        text = (tmp_path / "make-lab.log").read_text(errors="replace")
        assert "Everything is stopped." in text, text[-2000:]
        assert f"Made your copy of the lessons in {copy}" in text, text[-2000:]
        original = json.loads((ROOT / "notebooks" / lesson).read_text())
        assert len(original["cells"]) == len(json.loads(originals[lesson])["cells"]) > 3
        # The template new homes copy was built once, completely, and no scratch is left.
        assert "Preparing an empty Prefect database" in text, text[-2000:]
        version = importlib.metadata.version("prefect")
        assert [p.name for p in cache.iterdir()] == [f"prefect-{version}-empty.db"]
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
        for pid in _package_pids(home):
            psutil.Process(pid).kill()
        log.close()


# --------------------------------------------------------------------------- what is left


def test_leftovers_count_what_the_lessons_started_not_jupyterlab_or_kernels(tmp_path: Path):
    """Under `make lab`, JupyterLab and every kernel share the home: they are not leftovers."""
    from energy_flows.lessons import leftover_processes, leftovers

    home, elsewhere = tmp_path / "home", tmp_path / "other-home"
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    launch = ["-m", "energy_flows.services.launch", "prefect"]
    commands = {
        "kernel": ([*sleep, "-m", "ipykernel_launcher", "-f", "kernel.json"], home),
        "lab watchdog": ([*sleep, "watchdog.py", "--", "python", "-m", "jupyterlab"], home),
        "server": ([*sleep, *launch, "server", "start"], home),
        "worker watchdog": (
            [*sleep, "watchdog.py", "--", "python", *launch, "worker", "start"],
            home,
        ),
        "other home's server": ([*sleep, *launch, "server", "start"], elsewhere),
    }
    procs = {
        name: subprocess.Popen(argv, env={**os.environ, "ENERGY_FLOWS_HOME": str(where)})
        for name, (argv, where) in commands.items()
    }
    try:
        pids = {p.pid for p in leftover_processes(home)}
        assert pids == {procs["server"].pid, procs["worker watchdog"].pid}
        table = leftovers(home)
        assert list(table.columns) == ["seen in", "what", "pid", "command"]
        found = table[table["seen in"] == "process table"]
        assert sorted(found["what"]) == ["Prefect server", "watchdog of a Prefect worker"]
        assert set(table["pid"]) <= pids
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
    assert leftovers(home).empty


# --------------------------------------------------------------------------- the working copy


def _lessons(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(f"original {name}")
    return folder


def test_the_working_copy_is_made_once_and_never_overwrites_a_lesson(tmp_path: Path):
    from energy_flows.lab import sync_working_copy

    source = _lessons(tmp_path / "notebooks", "01_a.ipynb", "02_b.ipynb")
    (source / ".ipynb_checkpoints").mkdir()
    copy = tmp_path / "my-lessons"
    said: list[str] = []

    assert [p.name for p in sync_working_copy(source, copy, say=said.append)] == [
        "01_a.ipynb",
        "02_b.ipynb",
    ]
    assert sorted(p.name for p in copy.iterdir()) == ["01_a.ipynb", "02_b.ipynb"]
    assert said == [
        f"Made your copy of the lessons in {copy} (the originals in {source} stay as they are)."
    ]

    # The learner's work survives the next start; nothing to say.
    (copy / "01_a.ipynb").write_text("my answers")
    said.clear()
    assert sync_working_copy(source, copy, say=said.append) == []
    assert said == []
    assert (copy / "01_a.ipynb").read_text() == "my answers"

    # A lesson added to notebooks/ (a `git pull`) arrives on the next start.
    _lessons(source, "03_c.ipynb")
    (source / "01_a.ipynb").write_text("original, improved")
    assert [p.name for p in sync_working_copy(source, copy, say=said.append)] == ["03_c.ipynb"]
    assert said == [
        f"Copied the new lesson(s) 03_c.ipynb into {copy}; your other lessons are untouched."
    ]
    assert (copy / "01_a.ipynb").read_text() == "my answers"
    assert (source / "01_a.ipynb").read_text() == "original, improved"


def test_reset_lesson_puts_the_original_back_and_keeps_a_backup(tmp_path: Path):
    from energy_flows.errors import EnergyFlowsError
    from energy_flows.lab import reset_lesson, sync_working_copy

    source = _lessons(tmp_path / "notebooks", "04_x.ipynb", "05_y.ipynb")
    copy = tmp_path / "my-lessons"
    sync_working_copy(source, copy, say=None)
    (copy / "05_y.ipynb").write_text("half-run")
    said: list[str] = []

    assert reset_lesson("05", copy, source, say=said.append) == copy / "05_y.ipynb"
    assert (copy / "05_y.ipynb").read_text() == "original 05_y.ipynb"
    backups = list((copy / "backups").iterdir())
    assert [b.read_text() for b in backups] == ["half-run"]
    assert backups[0].name.startswith("05_y.") and backups[0].suffix == ".ipynb"
    assert said[0] == f"Kept your copy of lesson 05 as {backups[0]}."
    assert said[1].startswith(f"{copy / '05_y.ipynb'} is the original lesson again.")

    # Twice in the same second: both old copies are kept.
    (copy / "05_y.ipynb").write_text("second try")
    reset_lesson(5, copy, source, say=None)
    assert sorted(b.read_text() for b in (copy / "backups").iterdir()) == ["half-run", "second try"]

    # An unchanged lesson needs no backup; an unknown one is named.
    said.clear()
    reset_lesson("04_x", copy, source, say=said.append)
    assert said == [f"{copy / '04_x.ipynb'} is the original already: nothing to reset."]
    with pytest.raises(EnergyFlowsError, match=r"no lesson 09 in .*\(lessons: 04, 05\)"):
        reset_lesson("09", copy, source, say=None)


def test_reset_from_the_command_line(tmp_path: Path):
    """`python -m energy_flows.lab --reset 05` on the real lessons, into a copy elsewhere."""
    copy = tmp_path / "my-lessons"
    env = {**os.environ, "ENERGY_FLOWS_MY_LESSONS": str(copy)}
    command = [sys.executable, "-m", "energy_flows.lab", "--reset", "05"]
    lesson = ROOT / "notebooks" / "05_agents_and_workers.ipynb"
    copy.mkdir()
    (copy / lesson.name).write_text("{}")

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    backup = next((copy / "backups").iterdir())
    assert done.stdout.splitlines()[0] == f"Kept your copy of lesson 05 as {backup}."
    assert (copy / lesson.name).read_bytes() == lesson.read_bytes()

    wrong = subprocess.run([*command[:-1], "99"], env=env, capture_output=True, text=True)
    assert wrong.returncode == 1
    assert "There is no lesson 99" in wrong.stderr


def test_run_lab_resets_instead_of_starting_when_asked(tmp_path: Path, monkeypatch, capsys):
    """`energy-flows lab --reset 05` (once the command offers it) resets, then exits."""
    import argparse

    from energy_flows.lab import run_lab

    copy = tmp_path / "my-lessons"
    monkeypatch.setenv("ENERGY_FLOWS_MY_LESSONS", str(copy))
    args = argparse.Namespace(notebook_dir=None, port=0, no_browser=True, reset=["05"])
    assert run_lab(args) == 0
    lessons = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in copy.glob("*.ipynb")) == lessons
    out = capsys.readouterr().out
    assert f"Made your copy of the lessons in {copy}" in out
    assert "nothing to reset" in out
