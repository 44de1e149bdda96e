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
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest
import websocket

from energy_flows.services.server import free_port

ROOT = Path(__file__).resolve().parents[1]
TOKEN = uuid.uuid4().hex


def _get(url: str, method: str = "GET") -> dict:
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"{}")


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


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
    env.pop("ENERGY_FLOWS_QUIET", None)
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

        kernel = _get(f"http://127.0.0.1:{port}/api/kernels", method="POST")
        out = _execute(
            port,
            kernel["id"],
            "import os\n"
            "from energy_flows import PrefectServer\n"
            "server = PrefectServer().start()\n"
            "print('home', os.environ['ENERGY_FLOWS_HOME'])\n"
            "print('pid', server.pid)\n",
        )
        assert f"home {home}" in out
        server_pid = int(out.split("pid ")[1].split()[0])
        assert psutil.pid_exists(server_pid)

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
