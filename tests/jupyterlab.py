"""Driving a real JupyterLab from a test, as a browser does: its REST API and its websockets.

* :func:`request`: one call of JupyterLab's REST API (``/api/...``), with the token.
* :class:`Kernel`: code sent to a kernel over ``/api/kernels/<id>/channels``;
  :func:`open_notebook` starts one for a notebook, as opening it does (``/api/sessions``).
* :class:`MakeLab`: ``make lab`` started as a learner starts it, stopped with Ctrl-C.
* :class:`Terminal`: a terminal opened with ``POST /api/terminals`` and typed into over
  ``/terminals/websocket/<name>`` (``["stdin", text]`` in, ``["stdout", text]`` out).

Used by ``test_lab.py``, ``test_binder.py`` and ``test_walkthrough.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

ROOT = Path(__file__).resolve().parents[1]

#: Terminal control sequences (colours, cursor moves, titles) and carriage returns.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[=>()][0-9A-Za-z]?|\r"
)


def request(
    base: str, token: str, method: str, path: str, body: Any = None, timeout: float = 60
) -> Any:
    """Call JupyterLab's REST API at ``base`` (``http://127.0.0.1:PORT``); the decoded answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{base}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else {}


@dataclass
class Reply:
    """What a cell printed (``stdout``), displayed (``shown``: text/plain), and its error."""

    status: str
    stdout: str = ""
    shown: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def text(self) -> str:
        """Everything the cell showed, as text."""
        return self.stdout + "\n".join(self.shown) + self.error


class Kernel:
    """A kernel of a running JupyterLab, fed code over its websocket."""

    def __init__(self, base: str, token: str, kernel_id: str, session_id: str | None = None):
        self.base, self.token, self.id, self.session_id = base, token, kernel_id, session_id
        url = base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
        self._ws = websocket.create_connection(url, header=[f"Authorization: token {token}"])

    def run(self, code: str, timeout: float = 120, check: bool = True) -> Reply:
        """Execute ``code`` as a cell; its :class:`Reply` (an error fails the test unless ``check=False``)."""
        msg_id = uuid.uuid4().hex
        self._ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "session": self.id,
                        "username": "test",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "buffers": [],
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": True,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        reply = Reply("?")
        idle = False  # iopub's "idle" comes after the cell's last output; the reply may come first
        self._ws.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self._ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                reply.stdout += content["text"]
            elif kind in ("execute_result", "display_data"):
                reply.shown.append(str(content["data"].get("text/plain", "")))
            elif kind == "error":
                reply.error += "\n".join(content["traceback"])
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
            elif kind == "execute_reply":
                reply.status = content["status"]
            if idle and reply.status != "?":
                break
        else:
            raise TimeoutError(f"the cell did not finish within {timeout} s:\n{code[:300]}")
        if check:
            assert reply.status == "ok", f"{code[:300]}\n{reply.error}"
        return reply

    def close(self) -> None:
        self._ws.close()
        if self.session_id is not None:
            request(self.base, self.token, "DELETE", f"/api/sessions/{self.session_id}")


def open_notebook(base: str, token: str, path: str) -> Kernel:
    """A kernel for the notebook at ``path`` (relative to JupyterLab's root), as opening it starts."""
    session = request(
        base,
        token,
        "POST",
        "/api/sessions",
        {"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}},
    )
    return Kernel(base, token, session["kernel"]["id"], session["id"])


class Terminal:
    """A JupyterLab terminal: type into it, read what it shows.

    A thread reads the terminal's websocket all the time, as a browser tab
    does (JupyterLab closes a websocket that nobody reads). ``text`` is
    everything shown so far, control sequences removed.
    """

    def __init__(self, base: str, token: str, cwd: str | None = None, columns: int = 200):
        self.base, self.token = base, token
        body = {"cwd": cwd} if cwd else {}
        self.name = request(base, token, "POST", "/api/terminals", body)["name"]
        url = base.replace("http://", "ws://") + f"/terminals/websocket/{self.name}"
        self._ws = websocket.create_connection(url, header=[f"Authorization: token {token}"])
        self._raw = ""
        self._lock = threading.Lock()
        self._mark = 0
        self._commands = 0
        threading.Thread(target=self._read, daemon=True, name=f"terminal-{self.name}").start()
        # As a browser tab does: say how wide the terminal is (rows, columns, pixels).
        self._ws.send(json.dumps(["set_size", 50, columns, 800, 1600]))

    def _read(self) -> None:
        while True:
            try:
                msg = json.loads(self._ws.recv())
            except Exception:
                return
            if msg and msg[0] == "stdout":
                with self._lock:
                    self._raw += msg[1]

    @property
    def text(self) -> str:
        with self._lock:
            return _CONTROL.sub("", self._raw)

    def since_typed(self) -> str:
        """What the terminal showed since the last :meth:`type`."""
        return self.text[self._mark :]

    def type(self, keys: str) -> None:
        """Send ``keys`` as typed (``"\\r"`` is Enter, ``"\\x03"`` Ctrl-C)."""
        self._mark = len(self.text)
        self._ws.send(json.dumps(["stdin", keys]))

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """Wait until the output since the last :meth:`type` matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.since_typed())
            if found:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"terminal {self.name}: no {pattern!r} within {timeout} s; it shows:\n"
                    + self.text[-3000:]
                )
            time.sleep(0.2)

    def run(self, command: str, timeout: float = 120) -> tuple[str, int]:
        """Type ``command`` and Enter; wait until it has finished; its output and exit status."""
        self._commands += 1
        marker = f"done-{self._commands}"
        self.type(f'{command}; echo "{marker} rc=$?"\r')
        # The echo of the typed line shows "rc=$?"; only the output shows a number.
        found = self.wait_for(rf"{marker} rc=(\d+)", timeout)
        output = self.since_typed()[: found.start()]
        return output, int(found.group(1))

    def disconnect(self) -> None:
        """Close this tab's connection; the terminal and what runs in it go on (a closed tab)."""
        self._ws.close()

    def close(self) -> None:
        """Shut the terminal down, as its tab's *Shut Down* does."""
        self._ws.close()
        try:
            request(self.base, self.token, "DELETE", f"/api/terminals/{self.name}")
        except (OSError, urllib.error.HTTPError):
            pass


# --------------------------------------------------------------------------- `make lab`


@dataclass
class MakeLab:
    """``make lab`` running in its own process group, as a terminal's foreground job runs it."""

    process: subprocess.Popen[bytes]
    port: int
    home: Path
    log: Path
    token: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls, folder: Path, token: str, env: dict[str, str] | None = None, timeout: float = 90
    ) -> MakeLab:
        """Start ``make lab`` with its home and lessons' copy in ``folder``; wait until it answers."""
        from energy_flows.services.process import free_port

        port = free_port()
        home = folder / "home"
        environ = {**os.environ, "ENERGY_FLOWS_HOME": str(home), "JUPYTER_TOKEN": token}
        environ["ENERGY_FLOWS_MY_LESSONS"] = str(folder / "my-lessons")
        environ.pop("ENERGY_FLOWS_QUIET", None)
        environ.update(env or {})
        log = folder / "make-lab.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                ["make", "--no-print-directory", "lab", f"LAB_ARGS=--no-browser --port {port}"],
                cwd=ROOT,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, like a terminal's foreground job
            )
        lab = cls(process, port, home, log, token)
        deadline = time.monotonic() + timeout
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                request(lab.base, token, "GET", "/api/status", timeout=5)
                return lab
            except OSError:
                assert time.monotonic() < deadline, f"JupyterLab did not answer within {timeout} s"
                time.sleep(0.3)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ctrl_c(self, timeout: float = 60) -> int:
        """Ctrl-C in ``make lab``'s terminal (SIGINT to its process group); its exit status."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """The last resort of a failed test: SIGKILL to the whole group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
