"""One way to start, watch and stop the package's child processes.

Every process the package starts (the Prefect server, workers, and
JupyterLab for ``energy-flows lab``) is started by :func:`spawn`, and a
command run to its end (building the database template) by :func:`run`,
which waits on the same kind of watchdog:

* its output goes to a log file, never to the notebook's output area;
* it runs under a tiny watchdog parent (``watchdog.py``, standard library
  only) in its own session, so the kernel's interrupt button does not reach
  it, while the end of its owner, however it ends, closes a pipe that the
  watchdog watches and makes it stop the child and its whole process group;
* it is started with SIGINT at its default, so SIGTERM/SIGINT stop it even
  when the caller ignored SIGINT;
* it creates its files readable by its user only (umask 077): the home's
  database, logs and results are private;
* with ``tied=False`` ("terminal mode", used by ``energy-flows up``) the
  watchdog ignores its owner: the child runs until it is stopped explicitly.

``docs/prefect-facts.md`` explains why a plain child, or ``start_new_session=True``
alone, leaves orphans behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from energy_flows.errors import ServiceError
from energy_flows.waiting import wait_until

WATCHDOG_SCRIPT = Path(__file__).with_name("watchdog.py")

#: Files the package's processes create are readable and writable by their user only.
PRIVATE_UMASK = 0o077

# Keep the write ends of the watchdogs' pipes, and the sockets attached to
# other owners' watchdogs, for the whole life of this process: the OS closes
# them when it ends, and that is the signal for the watchdogs to stop.
_HELD_POPENS: dict[int, subprocess.Popen[bytes]] = {}
_HELD_SOCKETS: dict[str, socket.socket] = {}


@dataclass(frozen=True)
class Spawned:
    """What :func:`spawn` started: the watchdog and the real child under it."""

    pid: int
    create_time: float
    watchdog_pid: int
    watchdog_create_time: float
    log_path: Path | None
    tied: bool

    def alive(self) -> bool:
        """Whether the child still runs (and is this child, not a reused PID)."""
        return is_alive(self.pid, self.create_time)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the child and its watchdog (SIGTERM, then SIGKILL); True if it ran."""
        return stop(
            self.pid, self.create_time, self.watchdog_pid, self.watchdog_create_time, timeout
        )


def _start_watchdog(
    argv: Sequence[str],
    env: dict[str, str],
    log_path: str | os.PathLike[str] | None,
    *,
    tied: bool,
    socket_path: str | None = None,
    watch_pid: int | None = None,
    grace: float = 5.0,
    cwd: str | os.PathLike[str] | None = None,
    hold: str | None = None,
    on_exit: Sequence[str] | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start the watchdog that runs ``argv`` (see :func:`spawn` for the arguments)."""
    # -I: no PYTHONPATH or user site; the environment's site-packages stay (psutil).
    cmd = [sys.executable, "-I", str(WATCHDOG_SCRIPT), "--grace", f"{grace:g}"]
    if stop_signal != signal.SIGTERM:
        cmd += ["--stop-signal", stop_signal.name]
    if not tied:
        cmd.append("--detached")
    if socket_path:
        cmd += ["--socket", socket_path]
    if watch_pid:
        cmd += ["--watch-pid", str(watch_pid)]
    if hold:
        cmd += ["--hold", hold]
    if on_exit:
        cmd += ["--on-exit", json.dumps(list(on_exit))]
    cmd += ["--", *argv]

    if log_path is not None:
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out: int | object = private_open(log_path, "ab")  # the child gets its own copy
    else:
        out = None
    try:
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if tied else subprocess.DEVNULL,
            stdout=out,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT if out is not None else None,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            umask=PRIVATE_UMASK,
        )
    finally:
        if out is not None:
            out.close()  # type: ignore[attr-defined]
    _HELD_POPENS[popen.pid] = popen
    return popen


def spawn(
    argv: Sequence[str],
    env: dict[str, str],
    log_path: str | os.PathLike[str] | None,
    *,
    tied: bool = True,
    socket_path: str | None = None,
    watch_pid: int | None = None,
    grace: float = 5.0,
    cwd: str | os.PathLike[str] | None = None,
    hold: str | None = None,
    on_exit: Sequence[str] | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> Spawned:
    """Start ``argv`` under a watchdog and return its process ids.

    Args:
        argv: the command, e.g. ``[sys.executable, "-m", "...", ...]``.
        env: its full environment (build it with
            :func:`energy_flows.settings.classroom_env`).
        log_path: file that receives the child's stdout and stderr (appended).
            ``None`` lets the child write to this process's terminal (for
            ``energy-flows lab``).
        tied: stop the child when this process ends (notebook kernels,
            tests). ``False`` is the terminal mode: it runs until stopped.
        socket_path: a unix socket other processes can attach to with
            :func:`attach`, to keep the child alive as long as they live too.
        watch_pid: stop the child when this process ends (a worker watches
            its server).
        grace: seconds between SIGTERM and SIGKILL when stopping.
        cwd: working directory of the child.
        hold: the socket of another service's watchdog; the new watchdog is an
            owner of that service as long as it lives (a worker holds its
            server, so the server outlives its workers).
        on_exit: a command the watchdog runs once the child has stopped, with
            ``ENERGY_FLOWS_STOP_REASON`` and ``ENERGY_FLOWS_EXIT_CODE`` set
            (a worker's marks the runs it had taken as Crashed).
        stop_signal: the signal that asks the child to stop (PostgreSQL takes
            SIGINT, its "fast shutdown"; SIGTERM would wait for every client
            to disconnect). SIGKILL still follows after ``grace``.
    """
    popen = _start_watchdog(
        argv,
        env,
        log_path,
        tied=tied,
        socket_path=socket_path,
        watch_pid=watch_pid,
        grace=grace,
        cwd=cwd,
        hold=hold,
        on_exit=on_exit,
        stop_signal=stop_signal,
    )
    log_path = Path(log_path) if log_path is not None else None

    def child_started() -> psutil.Process | None:
        if popen.poll() is not None:
            raise ServiceError(
                f"The process could not be started: {' '.join(argv)}\n"
                + (tail(log_path, 20) if log_path else "")
            )
        try:
            children = psutil.Process(popen.pid).children()
        except psutil.NoSuchProcess:
            return None
        return children[0] if children else None

    child = wait_until(child_started, 10, what=f"the watchdog to start {argv[0]}")
    return Spawned(
        pid=child.pid,
        create_time=child.create_time(),
        watchdog_pid=popen.pid,
        watchdog_create_time=psutil.Process(popen.pid).create_time(),
        log_path=log_path,
        tied=tied,
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` (a bind test, as uvicorn binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the operating system says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` and its children listen on (empty when it is gone)."""
    ports: set[int] = set()
    try:
        proc = psutil.Process(pid)
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return ports
    for p in family:
        try:
            for conn in p.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr:
                    ports.add(int(conn.laddr.port))
        except psutil.Error:
            continue
    return ports


def listens_on(pid: int, port: int | None) -> bool:
    """Whether process ``pid`` (or one of its children) listens on ``port``."""
    return port is not None and port in listening_ports(pid)


def socket_path_for(home: str | os.PathLike[str], name: str) -> str:
    """A short unix-socket path for a service of a home (socket paths max ~100 bytes)."""
    digest = hashlib.sha1(f"{Path(home)}|{name}".encode()).hexdigest()[:12]
    return str(Path(tempfile.gettempdir()) / f"energy-flows-{os.getuid()}-{digest}.sock")


#: What :func:`attach` found: an owner now, a service going away, or nothing to attach to.
ATTACHED, STOPPING, ABSENT = "attached", "stopping", "absent"


def attach(socket_path: str | None) -> str:
    """Tie a service started by another process to this one too.

    A kernel that reuses a server started by another kernel attaches to
    the server's watchdog: the server then lives as long as one of them does.
    Returns :data:`ATTACHED`; :data:`STOPPING` when the watchdog has already
    decided to stop the service (its owner just ended): wait for it to go,
    do not adopt it; or :data:`ABSENT` when there is nothing to attach to
    (e.g. a terminal-mode service, which is not tied to anyone).
    """
    if not socket_path or not os.path.exists(socket_path):
        return ABSENT
    held = _HELD_SOCKETS.get(socket_path)
    if held is not None:
        if _still_open(held):
            return ATTACHED
        # That watchdog has gone and another now listens at the same path (the
        # home's next server): the old connection ties this process to nothing.
        held.close()
        del _HELD_SOCKETS[socket_path]
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(2)
        conn.connect(socket_path)
        answer = conn.recv(16)
    except OSError:
        conn.close()
        # The socket file outlived its watchdog (killed), or it is closing right now.
        return ABSENT
    if not answer.startswith(b"ok"):
        conn.close()
        return STOPPING
    conn.settimeout(None)
    _HELD_SOCKETS[socket_path] = conn
    return ATTACHED


def _still_open(conn: socket.socket) -> bool:
    """True while the watchdog at the other end of ``conn`` holds it open."""
    try:
        conn.setblocking(False)
        return conn.recv(1, socket.MSG_PEEK) != b""  # b"": the other end closed it
    except BlockingIOError:
        return True  # open, nothing to read
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            conn.setblocking(True)


def private_open(path: str | os.PathLike[str], mode: str = "a") -> Any:
    """Open a file for writing, created readable and writable by its user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else 0), 0o600)
    return os.fdopen(fd, mode)


def run(
    argv: Sequence[str],
    env: dict[str, str],
    log_path: str | os.PathLike[str],
    *,
    timeout: float,
    cwd: str | os.PathLike[str] | None = None,
) -> int:
    """Run a command to its end under a watchdog, tied to this process; return its exit code.

    Like ``subprocess.run``, but the command also ends when this process
    dies (a killed kernel leaves nothing running), and it is stopped when
    ``timeout`` passes (``subprocess.TimeoutExpired``) or when this process
    is interrupted meanwhile.
    """
    watchdog = _start_watchdog(argv, env, log_path, tied=True, cwd=cwd)
    try:
        return watchdog.wait(timeout)
    except BaseException:
        # The watchdog passes SIGTERM on and takes the command's group with it.
        stop(watchdog.pid, None, watchdog.pid, None)
        raise
    finally:
        _forget(watchdog.pid)


def is_alive(pid: int | None, create_time: float | None = None) -> bool:
    """Whether ``pid`` runs and is the same process (not a reused PID).

    ``create_time`` (from psutil, stored in the state files) tells our
    process apart from an unrelated one that got the same PID later.
    """
    if not pid:
        return False
    held = _HELD_POPENS.get(pid)
    if held is not None and held.poll() is not None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if create_time is not None and abs(proc.create_time() - create_time) > 0.5:
            return False
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return True


def stop(
    pid: int,
    create_time: float | None,
    watchdog_pid: int | None = None,
    watchdog_create_time: float | None = None,
    timeout: float = 10.0,
) -> bool:
    """Stop a child started by :func:`spawn` (SIGTERM, then SIGKILL). Returns True if it ran.

    SIGTERM goes to the watchdog, which forwards it to the child and kills
    the whole group after its grace period; if the watchdog is gone, the
    child gets SIGTERM directly. Whatever still lives after ``timeout``
    seconds is killed.
    """
    child_alive = is_alive(pid, create_time)
    dog_alive = bool(watchdog_pid) and is_alive(watchdog_pid, watchdog_create_time)
    if not child_alive and not dog_alive:
        _forget(watchdog_pid)
        return False
    target = watchdog_pid if dog_alive else pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(target, signal.SIGTERM)  # type: ignore[arg-type]

    def all_gone() -> bool:
        return not is_alive(pid, create_time) and not (
            dog_alive and is_alive(watchdog_pid, watchdog_create_time)
        )

    try:
        wait_until(all_gone, timeout, what=f"process {pid} to stop")
    except Exception:
        if dog_alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(watchdog_pid, signal.SIGKILL)  # type: ignore[arg-type]
        for p in (pid, watchdog_pid):
            if p and is_alive(p):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, signal.SIGKILL)
        wait_until(all_gone, 5, what=f"process {pid} to die after SIGKILL")
    _forget(watchdog_pid)
    return True


def _forget(watchdog_pid: int | None) -> None:
    popen = _HELD_POPENS.pop(watchdog_pid or -1, None)
    if popen is not None:
        with contextlib.suppress(Exception):
            if popen.stdin:
                popen.stdin.close()
            popen.wait(timeout=1)


def tail(path: str | os.PathLike[str] | None, lines: int = 20, start: int = 0) -> str:
    """The last ``lines`` lines of a log file, from byte ``start`` on ("" if none)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(start, size - max(4096, lines * 400)))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


#: How a failed bind reads in the logs of uvicorn (Prefect) and of PostgreSQL.
PORT_TAKEN = re.compile(r"address already in use|port \d+ is already in use", re.IGNORECASE)


def failed_start_log(
    path: str | os.PathLike[str] | None, lines: int = 20, start: int = 0
) -> tuple[str, bool]:
    """What a service that failed to start logged: an excerpt, and whether its port was taken.

    The excerpt is the last ``lines`` lines from byte ``start`` on (this start's
    part of the log), preceded by this start's first error line when the tail
    does not hold it: a server that cannot bind its port logs that cause
    first and then a long shutdown traceback, which alone would hide it.
    """
    if path is None:
        return "", False
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(start, size - (1 << 20)))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return "", False
    all_lines = text.splitlines()
    last = all_lines[-lines:]
    first_error = next(
        (line for line in all_lines if "| ERROR" in line or PORT_TAKEN.search(line)), None
    )
    if first_error is not None and first_error not in last:
        last = [first_error, "  ...", *last[1:]]
    return "\n".join(last), PORT_TAKEN.search(text) is not None


def uptime(create_time: float) -> str:
    """A short human duration since ``create_time`` (e.g. ``"3 min 12 s"``)."""
    seconds = max(0, int(time.time() - create_time))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
