"""One way to start, watch and stop the package's child processes, and their files.

:func:`spawn` starts a process under the watchdog (``watchdog.py``), :func:`run`
runs a command to its end the same way; why a watchdog: docs/architecture.md.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from energy_flows.errors import DiskFullError, ServiceError, disk_full, is_disk_full
from energy_flows.services import watchdog
from energy_flows.waiting import wait_until

WATCHDOG_SCRIPT = Path(__file__).with_name("watchdog.py")

#: Files the package's processes create are readable and writable by their user only.
PRIVATE_UMASK = 0o077

# The watchdogs' pipes and the sockets attached to other owners' watchdogs live as
# long as this process: the OS closes them when it ends, the watchdogs' signal to stop.
_HELD_POPENS: dict[int, subprocess.Popen[bytes]] = {}
_HELD_SOCKETS: dict[str, socket.socket] = {}


@dataclass(frozen=True)
class SpawnOptions:
    """How a process is tied to its owners and stopped (the watchdog's options).

    Attributes:
        tied: stop it when this process ends (kernels, tests); ``False`` is the
            terminal mode of ``energy-flows up``: it runs until stopped.
        socket: a unix socket where other processes :func:`attach`, to keep it
            alive as long as they live too.
        watch_pid: stop it when this process ends (a worker watches its server).
        hold: another service's watchdog socket, held as one of its owners for
            this one's whole life (a worker holds its server: the server outlives it).
        on_exit: a command the watchdog runs once the child has stopped, with
            ``ENERGY_FLOWS_STOP_REASON`` (a :class:`~energy_flows.services.watchdog.StopReason`),
            ``ENERGY_FLOWS_EXIT_CODE`` and ``ENERGY_FLOWS_DISK_FULL`` set.
        grace: seconds between the stop signal and SIGKILL.
        stop_signal: what asks it to stop (PostgreSQL's fast shutdown is SIGINT).
        cwd: its working directory.
    """

    tied: bool = True
    socket: str | None = None
    watch_pid: int | None = None
    hold: str | None = None
    on_exit: tuple[str, ...] = ()
    grace: float = 5.0
    stop_signal: signal.Signals = signal.SIGTERM
    cwd: str | None = None

    def watchdog_argv(self, argv: Sequence[str]) -> list[str]:
        """The watchdog's command line that runs ``argv`` with these options."""
        # -I: no PYTHONPATH or user site; the environment's site-packages stay (psutil).
        cmd = [sys.executable, "-I", str(WATCHDOG_SCRIPT), "--grace", f"{self.grace:g}"]
        if self.stop_signal != signal.SIGTERM:
            cmd += ["--stop-signal", self.stop_signal.name]
        if not self.tied:
            cmd.append("--detached")
        for flag, value in (
            ("--socket", self.socket),
            ("--watch-pid", self.watch_pid),
            ("--hold", self.hold),
        ):
            if value:
                cmd += [flag, str(value)]
        if self.on_exit:
            cmd += ["--on-exit", json.dumps(list(self.on_exit))]
        return [*cmd, "--", *argv]


@dataclass(frozen=True)
class Spawned:
    """A process started by :func:`spawn`: its pid and its watchdog's, with their start
    times (psutil's ``create_time``: a later process with the same pid is not ours)."""

    pid: int
    create_time: float
    watchdog_pid: int
    watchdog_create_time: float

    def alive(self) -> bool:
        """Whether the process still runs (and is this one, not a reused pid)."""
        return is_alive(self.pid, self.create_time)

    def watchdog_alive(self) -> bool:
        """Whether its watchdog still runs (it may be finishing what the process left)."""
        return is_alive(self.watchdog_pid, self.watchdog_create_time)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the process and its watchdog (SIGTERM, then SIGKILL); True if either ran."""
        return stop(
            self.pid, self.create_time, self.watchdog_pid, self.watchdog_create_time, timeout
        )


def _start_watchdog(
    argv: Sequence[str],
    env: dict[str, str],
    log_path: str | os.PathLike[str] | None,
    options: SpawnOptions,
) -> subprocess.Popen[bytes]:
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log = contextlib.nullcontext() if log_path is None else private_open(log_path, "ab")
    with log as out:  # the child gets its own copy
        popen = subprocess.Popen(
            options.watchdog_argv(argv),
            stdin=subprocess.PIPE if options.tied else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            env=env,
            cwd=options.cwd,
            start_new_session=True,
            close_fds=True,
            umask=PRIVATE_UMASK,
        )
    _HELD_POPENS[popen.pid] = popen
    return popen


def spawn(
    argv: Sequence[str],
    env: dict[str, str],
    log_path: str | os.PathLike[str] | None,
    options: SpawnOptions | None = None,
) -> Spawned:
    """Start ``argv`` under a watchdog; returns once the child runs.

    ``env`` is its whole environment (:func:`energy_flows.settings.classroom_env`);
    its stdout and stderr are appended to ``log_path`` (``None``: this
    process's terminal, for ``energy-flows lab``).
    """
    popen = _start_watchdog(argv, env, log_path, options or SpawnOptions())

    def child_started() -> psutil.Process | None:
        if popen.poll() is not None:
            detail = tail(log_path, 20)
            raise ServiceError(f"The process could not be started: {' '.join(argv)}\n{detail}")
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
    )


def run(
    argv: Sequence[str],
    env: dict[str, str],
    log_path: str | os.PathLike[str],
    *,
    timeout: float,
    cwd: str | os.PathLike[str] | None = None,
) -> int:
    """Run a command to its end under a watchdog, tied to this process; return its exit code.

    Like ``subprocess.run``, but the command also ends when this process dies,
    and it is stopped when ``timeout`` passes (``subprocess.TimeoutExpired``)
    or when this process is interrupted meanwhile.
    """
    options = SpawnOptions(cwd=None if cwd is None else str(cwd))
    watchdog = _start_watchdog(argv, env, log_path, options)
    try:
        return watchdog.wait(timeout)
    except BaseException:
        # The watchdog passes SIGTERM on and takes the command's group with it.
        stop(watchdog.pid, None, watchdog.pid, None)
        raise
    finally:
        _forget(watchdog.pid)


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
        with contextlib.suppress(psutil.Error):  # it ended meanwhile, or is not ours to read
            for conn in p.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr:
                    ports.add(int(conn.laddr.port))
    return ports


def listens_on(pid: int, port: int | None) -> bool:
    """Whether process ``pid`` (or one of its children) listens on ``port``."""
    return port is not None and port in listening_ports(pid)


def socket_path_for(home: str | os.PathLike[str], name: str) -> str:
    """A short unix-socket path for a service of a home (socket paths max ~100 bytes)."""
    digest = hashlib.sha1(f"{Path(home)}|{name}".encode()).hexdigest()[:12]
    return str(Path(tempfile.gettempdir()) / f"energy-flows-{os.getuid()}-{digest}.sock")


def attach(socket_path: str | None) -> bool:
    """Become an owner of a service another process started (it then lives as long as we do);
    False when no watchdog listens there, or it has decided to stop (wait for it to go)."""
    if not socket_path or not os.path.exists(socket_path):
        return False
    held = _HELD_SOCKETS.get(socket_path)
    if held is not None:
        if _still_open(held):
            return True
        # That watchdog has gone and another now listens at the same path (the
        # home's next server): the old connection ties this process to nothing.
        held.close()
        del _HELD_SOCKETS[socket_path]
    conn = watchdog.join(socket_path)
    if conn is not None:
        _HELD_SOCKETS[socket_path] = conn
    return conn is not None


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


def timestamped_path(folder: Path, stem: str, suffix: str = "") -> Path:
    """``folder/<stem>.<YYYYmmdd-HHMMSS><suffix>``, with ``-2``, ``-3`` ... if that is taken:
    where a file is kept aside (a damaged database, a learner's copy of a lesson)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = folder / f"{stem}.{stamp}{suffix}"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{stem}.{stamp}-{n}{suffix}"
    return target


def write_private(path: Path, text: str | bytes, what: str | None = None) -> None:
    """Replace ``path`` with ``text`` in one step (readers never see half a file), 0600.

    A full disk raises :class:`~energy_flows.errors.DiskFullError` naming ``what``
    (default: the file's name), and leaves the file as it was.
    """
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with private_open(partial, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise disk_full(path, what or f"the file {path.name}") from exc
        raise


def refuse_read_only(paths: Iterable[Path], what: str, so: str) -> None:
    """Refuse the first of ``paths`` (``what``) that is read-only, saying what follows (``so``).

    The owner's write bit is read as well: root's access check says yes to
    everything (and PostgreSQL, run as ``nobody`` for root, gets no such pass).
    """
    for path in paths:
        if path.exists() and (not os.access(path, os.W_OK) or not path.stat().st_mode & 0o200):
            raise ServiceError(
                f"{what} {'folder' if path.is_dir() else 'file'} {path} is read-only, so {so}. "
                f"Make it writable (`chmod u+w {path}`), or start from a fresh home: "
                "`energy-flows reset --yes` (deletes this home's runs), or set "
                "ENERGY_FLOWS_HOME to another folder. Nothing was started."
            )


def is_alive(pid: int | None, create_time: float | None = None) -> bool:
    """Whether ``pid`` runs and is the same process (``create_time``: not a reused pid)."""
    if not pid:
        return False
    held = _HELD_POPENS.get(pid)
    if held is not None and held.poll() is not None:
        return False
    try:
        proc = psutil.Process(pid)
        same = create_time is None or abs(proc.create_time() - create_time) <= 0.5
        return same and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def stop(
    pid: int,
    create_time: float | None,
    watchdog_pid: int | None = None,
    watchdog_create_time: float | None = None,
    timeout: float = 10.0,
) -> bool:
    """Stop a child started by :func:`spawn` (SIGTERM, then SIGKILL). Returns True if it ran.

    SIGTERM goes to the watchdog, which forwards it and kills the child's
    group after its grace period (or to the child itself, if its watchdog is
    gone). Whatever still lives after ``timeout`` seconds is killed.
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


def _read_from(path: str | os.PathLike[str], start: int, most: int) -> str:
    """The last ``most`` bytes of a file from byte ``start`` on, as text ("" if unreadable)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(start, size - most))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def mark_log(path: str | os.PathLike[str], what: str) -> int:
    """Write ``==== <time> <what>`` into a log; returns where the lines after it begin."""
    try:
        with private_open(path, "a") as f:
            f.write("\n")
            offset = f.tell()
            f.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {what}\n")
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(path, f"the log {Path(path).name}") from exc
        raise
    return offset


def tail(path: str | os.PathLike[str] | None, lines: int = 20, start: int = 0) -> str:
    """The last ``lines`` lines of a log file, from byte ``start`` on ("" if none)."""
    if path is None:
        return ""
    return "\n".join(_read_from(path, start, max(4096, lines * 400)).splitlines()[-lines:])


#: How a failed bind reads in the logs of uvicorn (Prefect) and of PostgreSQL.
PORT_TAKEN = re.compile(r"address already in use|port \d+ is already in use", re.IGNORECASE)


def failed_start_log(
    path: str | os.PathLike[str], lines: int = 20, start: int = 0
) -> tuple[str, bool]:
    """What a service that failed to start logged: an excerpt, and whether its port was taken.

    The last ``lines`` lines from byte ``start`` on (this start's part of the
    log), preceded by the first error line when the tail does not hold it: a
    server that cannot bind its port logs the cause first, then a long traceback.
    """
    text = _read_from(path, start, 1 << 20)
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
