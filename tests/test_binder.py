"""Binder's route, end to end, the way repo2docker runs it (slow: one to three minutes).

repo2docker builds an image in these steps, which the test replays in a fresh
virtual environment (the image's environment) and a temporary home:

1. ``pip install -r binder/requirements.txt`` (Python from ``runtime.txt``),
   from the top of the repository: the pinned set, before the repository is copied;
2. the repository copied in (here: the checkout's files, as git sees them);
3. ``binder/postBuild``, from the top of the repository, with the environment's
   ``bin/`` first on PATH: installs the package, builds the database template;
4. at start, ``binder/start jupyter lab ...``: ``start`` exports the variables and
   becomes JupyterLab.

Then lesson 01 runs in a kernel JupyterLab starts, as a learner's click would:
a session opened through JupyterLab's REST API (``/api/sessions``), its cells
sent one by one over the kernel's websocket. It must pass and use the home
``start`` set. The packages come from a local wheelhouse
(``tests/wheelhouse.py``): downloading them takes minutes more the first time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import psutil
import pytest

from tests.jupyterlab import Terminal, open_notebook, request
from tests.wheelhouse import ROOT, ensure_wheelhouse, offline_pip_env

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]

TOKEN = "binder-test-token"
LESSON = "01_start_orion.ipynb"

#: Sent after the lesson's cells: which home the kernel used, where it ran, on which Python.
WHERE = (
    "import os, sys\nfrom energy_flows import settings\n"
    "print('home', settings.home_dir())\nprint('cwd', os.getcwd())\n"
    "print('python', sys.prefix)"
)


def _run_in_jupyterlab(base: str, notebook: str, codes: list[str], timeout: float) -> list[str]:
    """Run ``codes`` one by one in a kernel JupyterLab starts for ``notebook``; their stdout.

    As the browser does: a session for the notebook's path (JupyterLab starts
    the kernel in the notebook's folder, with its own environment), then each
    cell as an ``execute_request`` on the kernel's websocket. A cell that
    fails stops the run with its traceback.
    """
    kernel = open_notebook(base, TOKEN, notebook)
    try:
        return [kernel.run(code, timeout).stdout for code in codes]
    finally:
        kernel.close()


def _copy_checkout(target: Path) -> Path:
    """The repository as repo2docker copies it: the files git tracks or would track."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = ROOT / relative
        if source.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> dict:
    base, _, path = url.partition("/api/")
    return dict(request(base, TOKEN, "GET", f"/api/{path}", timeout=5))


class Phases:
    """Wall-clock time of each step, printed and stored in the test report."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._last = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.times[name] = round(now - self._last, 1)
        self._last = now
        print(f"binder test: {name} took {self.times[name]:.0f} s", flush=True)

    def __str__(self) -> str:
        total = sum(self.times.values())
        return ", ".join(f"{k} {v:.0f} s" for k, v in self.times.items()) + f"; total {total:.0f} s"


@pytest.fixture
def stop_afterwards() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Process groups (JupyterLab) to stop when the test ends, however it ends."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_binder_build_then_start_runs_lesson_01(
    tmp_path: Path,
    stop_afterwards: list[subprocess.Popen[bytes]],
    record_property: pytest.RecordProperty,
) -> None:
    phases = Phases()
    wheels = ensure_wheelhouse()
    phases.done("wheelhouse")

    repo = _copy_checkout(tmp_path / "repo")
    home = tmp_path / "jovyan"  # the user's home; deliberately not the repository
    home.mkdir()
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    env = offline_pip_env(
        {
            "PATH": f"{env_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
        },
        wheels,
    )
    phases.done("venv")

    def run(argv: list[str], cwd: Path, timeout: float) -> str:
        result = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"{argv}:\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
        return result.stdout

    # 1. The pinned set, as repo2docker installs it (--no-compile only saves time here).
    run(
        ["python", "-m", "pip", "install", "--no-compile", "-r", "binder/requirements.txt"],
        repo,
        600,
    )
    phases.done("pip install -r binder/requirements.txt")

    # 3. postBuild, from the top of the repository.
    run(["./binder/postBuild"], repo, 300)
    phases.done("postBuild")
    cache = env_dir / "share" / "energy-flows" / "cache"
    assert list(cache.glob("prefect-*-empty.db")), f"postBuild built no template in {cache}"
    assert not (repo / "build").exists() and not (repo / "energy_flows.egg-info").exists()
    # Installed, not editable: imported from the environment, with every file of the package.
    where = run(["python", "-c", "import energy_flows; print(energy_flows.__file__)"], home, 60)
    installed = Path(where.strip()).parent
    assert installed.is_relative_to(env_dir), installed
    shipped = {
        p.relative_to(repo / "energy_flows")
        for p in (repo / "energy_flows").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    missing = sorted(str(p) for p in shipped if not (installed / p).is_file())  # checked last

    # 4. JupyterLab through start, as the container runs it.
    port = _free_port()
    log = (tmp_path / "jupyterlab.log").open("wb")
    lab_argv = [str(repo / "binder" / "start"), "jupyter", "lab", "--no-browser"]
    lab_argv += [f"--port={port}", "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0"]
    lab_argv += [f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={repo}"]
    if os.geteuid() == 0:  # Binder runs as jovyan; this machine may run the tests as root
        lab_argv.append("--allow-root")
    lab = subprocess.Popen(
        lab_argv,
        cwd=repo,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stop_afterwards.append(lab)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert lab.poll() is None, (tmp_path / "jupyterlab.log").read_text()[-3000:]
        try:
            status = _get_json(f"{base}/api/status")
            break
        except OSError:
            assert time.monotonic() < deadline, "JupyterLab did not answer within 120 s"
            time.sleep(0.5)
    phases.done("JupyterLab answers")
    assert "started" in status
    expected_home = home / ".energy_flows"
    lab_env = psutil.Process(lab.pid).environ()  # start exec'd: this pid is JupyterLab
    assert lab_env["ENERGY_FLOWS_HOME"] == str(expected_home)
    assert lab_env["ENERGY_FLOWS_CACHE"] == str(cache)
    assert "python3" in _get_json(f"{base}/api/kernelspecs")["kernelspecs"]

    # Lesson 01 in a kernel JupyterLab starts for it (in notebooks/, with start's variables).
    lesson = nbformat.read(repo / "notebooks" / LESSON, as_version=4)
    codes = [cell.source for cell in lesson.cells if cell.cell_type == "code"]
    try:
        said = _run_in_jupyterlab(base, f"notebooks/{LESSON}", [*codes, WHERE], 300)[-1]
        phases.done("lesson 01")
    finally:
        start = str(repo / "binder" / "start")
        subprocess.run([start, "energy-flows", "down"], cwd=repo, env=env, timeout=60)
    assert f"home {expected_home}\n" in said and f"cwd {repo / 'notebooks'}\n" in said
    # Lesson 08's terminals: the environment's prefect, in the course's Prefect home.
    terminal = Terminal(base, TOKEN)
    try:
        shown, status = terminal.run('echo "home=$PREFECT_HOME"; command -v prefect')
    finally:
        terminal.close()
    assert status == 0, shown
    assert f"home={expected_home / 'walkthrough' / 'prefect'}\n" in shown, shown
    assert f"{env_dir / 'bin' / 'prefect'}\n" in shown, shown
    assert f"python {env_dir}\n" in said  # the kernel is the environment's Python
    assert (expected_home / "prefect" / "prefect.db").is_file()
    # The home came from start, not from the checkout rule (which would give repo/.energy_flows).
    assert (
        not (repo / ".energy_flows").exists()
        and not (repo / "notebooks" / ".energy_flows").exists()
    )

    record_property("binder_phases", str(phases))
    print(f"\nBinder route: {phases}")
    assert not missing, f"the installed package lacks {missing}: add them to package-data"
