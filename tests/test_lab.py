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
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jsonschema
import psutil
import pytest

from energy_flows.lab import (
    LAB_DEFAULTS,
    LAB_DEFAULTS_FILE,
    LAB_SETTINGS_NAME,
    lab_settings_dir,
    ready_message,
)
from energy_flows.services.server import free_port
from energy_flows.waiting import wait_until
from tests.jupyterlab import Kernel, MakeLab, request

ROOT = Path(__file__).resolve().parents[1]
TOKEN = uuid.uuid4().hex


def _get(url: str, method: str = "GET", body: dict | None = None) -> dict:
    base, _, path = url.partition("/api/")
    return dict(request(base, TOKEN, method, f"/api/{path}", body, timeout=5))


def _wait(condition, timeout: float, what: str):
    """``wait_until`` where a connection refused (JupyterLab still starting) means not yet."""

    def attempt():
        try:
            return condition()
        except OSError:
            return None

    return wait_until(attempt, timeout, what=what, interval=0.3, max_interval=0.3)


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
    cache = tmp_path / "cache"  # empty: `energy-flows lab` builds the database template
    copy = tmp_path / "my-lessons"  # the learner's working copy (normally ROOT/my-lessons)
    originals = {p.name: p.read_bytes() for p in (ROOT / "notebooks").glob("*.ipynb")}
    lab = MakeLab.start(tmp_path, TOKEN, env={"ENERGY_FLOWS_CACHE": str(cache)})
    home, port, make = lab.home, lab.port, lab.process
    try:
        status = _wait(
            lambda: _get(f"http://127.0.0.1:{port}/api/status"), 60, "JupyterLab's /api/status"
        )
        assert "started" in status
        # No "Would you like to get notified about official Jupyter news?" on the first start:
        # the launcher's settings make "Never" the default of JupyterLab's fetchNews.
        notification = _get(
            f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/apputils-extension:notification"
        )
        assert notification["schema"]["properties"]["fetchNews"]["default"] == "false"
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
        out = (
            Kernel(lab.base, TOKEN, kernel["id"])
            .run(
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
                timeout=90,
            )
            .stdout
        )
        assert f"home {home}" in out
        assert f"cwd {copy}" in out
        server_pid = int(out.split("pid ")[1].split()[0])
        assert psutil.pid_exists(server_pid)
        # JupyterLab and this kernel share the home, but only the server is the lessons'.
        assert "left ['Prefect server', 'watchdog of a Prefect server']" in out, out

        address = f"    http://127.0.0.1:{port}/lab?token={TOKEN}"
        _wait(
            lambda: address in (tmp_path / "make-lab.log").read_text(errors="replace"),
            30,
            "the address with its token",
        )
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
        # The address with its token comes after JupyterLab's own start-up messages.
        lines = text.splitlines()
        address_line = lines.index(address)
        startup = ("is running at:", "Use Control-C to stop this server", "Skipped non-installed")
        last_startup = max(i for i, line in enumerate(lines) if any(s in line for s in startup))
        assert address_line > last_startup, "\n".join(lines[last_startup - 5 : address_line + 2])
        original = json.loads((ROOT / "notebooks" / lesson).read_text())
        assert len(original["cells"]) == len(json.loads(originals[lesson])["cells"]) > 3
        # The template new homes copy was built once, completely, and no scratch is left.
        assert "Preparing an empty Prefect database" in text, text[-2000:]
        version = importlib.metadata.version("prefect")
        assert [p.name for p in cache.iterdir()] == [f"prefect-{version}-empty.db"]
    finally:
        lab.kill()
        for pid in _package_pids(home):
            psutil.Process(pid).kill()


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
    # What the lessons' cells write when they run in notebooks/ (the notebook tests): not lessons.
    (source / "my_energy_flow.py").write_text("@___\n")
    (source / "prefect.yaml").write_text("deployments: []\n")
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


# --------------------------------------------------------------------------- what a learner sees

#: Stands in for JupyterLab: listens first, then writes its start-up messages, then
#: serves; jupyter-lsp's late line comes when /lsp/status is first asked, as in JupyterLab.
FAKE_JUPYTERLAB = r"""
import http.server, os, sys, time
port = int(next(a for a in sys.argv if a.startswith("--ServerApp.port=")).split("=")[1])

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/lsp/status":
            print("[I fake ServerApp] Skipped non-installed server(s): ...", file=sys.stderr, flush=True)
        ok = self.headers.get("Authorization") == "token " + os.environ["JUPYTER_TOKEN"]
        self.send_response(200 if ok else 403)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", port), Handler)
for line in ("Jupyter Server 2.x is running at:", f"http://127.0.0.1:{port}/lab?token=...",
             "Use Control-C to stop this server and shut down all kernels."):
    print("[I fake ServerApp]", line, file=sys.stderr, flush=True)
    time.sleep(0.3)
server.serve_forever()
"""

#: `energy-flows lab` with the fake JupyterLab (its real command line printed first).
LAB_WITH_FAKE = r"""
import sys
import energy_flows.lab as lab

real = lab.lab_command

def fake(*args, **kwargs):
    argv = real(*args, **kwargs)
    print("argv:", " ".join(argv), flush=True)
    return [sys.executable, "-c", sys.argv[1], *argv[3:]]

lab.lab_command = fake
lab.database.ensure_template = lambda say=None: None
from energy_flows.cli import main
sys.exit(main(["lab", "--no-browser", "--port", sys.argv[2], "--notebook-dir", sys.argv[3]]))
"""


def test_the_address_with_its_token_is_the_last_thing_printed(tmp_path: Path):
    """After JupyterLab's start-up messages, `make lab` prints the address to open, token included."""
    port = free_port()
    env = {**os.environ, "ENERGY_FLOWS_HOME": str(tmp_path / "home")}
    env.pop("JUPYTER_TOKEN", None)
    command = [sys.executable, "-c", LAB_WITH_FAKE, FAKE_JUPYTERLAB, str(port), str(tmp_path)]
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        lab = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: "/lab?token=" in log.read_text().partition("JupyterLab is ready.")[2],
            60,
            what="the address",
            interval=0.2,
        )
        time.sleep(0.5)  # nothing more comes
        lab.send_signal(signal.SIGINT)
        assert lab.wait(timeout=30) == 0
    finally:
        if lab.poll() is None:
            lab.kill()
    lines = log.read_text().splitlines()
    stopping = lines.index("Stopping JupyterLab and its kernels ...")
    address = [line for line in lines[:stopping] if line.strip()][-1]
    assert re.fullmatch(rf"    http://127\.0\.0\.1:{port}/lab\?token=[0-9a-f]{{48}}", address), (
        lines
    )
    assert any(
        line.startswith("[I fake ServerApp] Skipped") for line in lines[: lines.index(address)]
    )
    # The token goes to JupyterLab in its environment, not on its command line;
    # the launcher's settings folder is passed, with the news question answered "Never".
    argv = next(line for line in lines if line.startswith("argv: "))
    assert "token" not in argv.lower()
    settings_dir = tmp_path / "home" / LAB_SETTINGS_NAME
    assert f"--LabApp.app_settings_dir={settings_dir}" in argv.split()
    assert "--LabApp.news_url=None" in argv.split()
    overrides = json.loads((settings_dir / "overrides.d" / LAB_DEFAULTS_FILE).read_text())
    assert overrides == LAB_DEFAULTS


def test_the_news_setting_is_one_the_installed_jupyterlab_has(tmp_path: Path, monkeypatch):
    """JupyterLab's own schema names fetchNews, with "false" as its "Never" (an upgrade may not)."""
    schema_file = (
        Path(sys.prefix)
        / "share/jupyter/lab/schemas/@jupyterlab/apputils-extension"
        / "notification.json"
    )
    schema = json.loads(schema_file.read_text())
    [(plugin, defaults)] = LAB_DEFAULTS.items()
    assert plugin == "@jupyterlab/apputils-extension:notification"
    properties = schema["properties"]
    assert schema["properties"]["fetchNews"]["default"] == "none"  # "none" asks the question
    # "false" is "Never" (JupyterLab 4.5 names it in a oneOf, 4.2 lists it in an enum).
    news = properties["fetchNews"]
    assert "false" in [o["const"] for o in news.get("oneOf", [])] + news.get("enum", [])
    assert properties["checkForUpdates"]["type"] == "boolean"
    assert set(defaults) <= set(properties)
    for name, value in defaults.items():  # each value is one the schema accepts
        jsonschema.validate(value, properties[name])

    # An installation's own overrides are kept, and read after the launcher's (they win).
    app_dir = tmp_path / "app"
    (app_dir / "settings").mkdir(parents=True)
    (app_dir / "settings" / "overrides.json").write_text('{"a": {"b": 1}}')
    monkeypatch.setenv("JUPYTERLAB_DIR", str(app_dir))
    made = lab_settings_dir(tmp_path / "home")
    assert (made / "overrides.json").read_text() == '{"a": {"b": 1}}'
    assert sorted(p.name for p in (made / "overrides.d").iterdir()) == [LAB_DEFAULTS_FILE]
    (app_dir / "settings" / "overrides.json").unlink()
    assert not (lab_settings_dir(tmp_path / "home") / "overrides.json").exists()


def test_the_ready_message_ends_with_the_address():
    assert ready_message(8899, "abc")[-1] == "    http://127.0.0.1:8899/lab?token=abc"
    assert ready_message(8899, "abc", token_works=False)[-1] == "    http://127.0.0.1:8899/lab"
