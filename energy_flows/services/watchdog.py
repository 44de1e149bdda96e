"""A tiny parent that makes sure a child process never outlives its owner.

Run as ``python -I watchdog.py [options] -- ARGV...`` by :func:`process.spawn`;
the standard library and psutil only. Owners and order: docs/architecture.md.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil


class StopReason(enum.StrEnum):
    """Why a watchdog stopped its child; ``recovery.describe_stop`` turns it into words."""

    OWNER_ENDED = "owner-ended"  # its last owner (a kernel, a worker's watchdog) ended
    ASKED = "asked"  # SIGTERM or SIGINT: stop(), `energy-flows down`, Ctrl-C of `make lab`
    DEPENDENCY_GONE = "dependency-gone"  # --watch-pid ended (a worker's server)
    EXITED = "exited"  # the child exited by itself (ENERGY_FLOWS_EXIT_CODE says how)
    KILLED = "killed"  # the child died of a signal nobody here sent (kill -9, out of memory)
    UNKNOWN = "unknown"  # nothing recorded why (the watchdog itself was killed)


#: What the watchdog answers an owner that attaches: welcome, or "I am going away".
WELCOME, STOPPING = b"ok\n", b"stopping\n"

#: Seconds the ``--on-exit`` command may take.
ON_EXIT_TIMEOUT = 20.0
#: A child that ends within this many seconds of its log's disk being seen full (less than
#: FULL_BYTES free, as ``errors.disk_is_full``) died of it: ``ENERGY_FLOWS_DISK_FULL=1`` for
#: the on-exit command, even if room was made before it could look.
DISK_FULL_WINDOW, FULL_BYTES = 15.0, 1 << 20
#: What it logs when that disk has room again (``recovery.crash_orphans`` reads the times).
DISK_WAS_FULL = "the disk of this log was full (no space left) from/to epoch seconds"


def _create_time(pid: int) -> float | None:
    """When ``pid`` started (to tell it from a later process with the same PID), or None."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return -1.0  # alive, but not ours to inspect


def join(path: str) -> socket.socket | None:
    """Become an owner of the watchdog at the socket ``path``: the connection to keep open,
    or None when no watchdog listens there or it is stopping."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(2)
        conn.connect(path)
        if conn.recv(16).startswith(WELCOME.strip()):
            conn.settimeout(None)
            return conn
    except OSError:
        pass  # the socket file outlived its watchdog, or it is closing right now
    conn.close()
    return None


def _say(line: str) -> None:
    """One line into the log; a log that cannot be written (a full disk) never stops us."""
    with contextlib.suppress(OSError, ValueError):
        print(f"[watchdog {os.getpid()}] {line}", flush=True)


class Watchdog:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stop_reason: StopReason | None = None
        self.forced = False  # SIGKILLed after the grace period
        self.event = threading.Event()
        self.lock = threading.Lock()
        self.owners = 0
        self.child: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, float] = {}  # descendants of the child: pid -> create time
        self.held: socket.socket | None = None
        self.disk_full_at = -DISK_FULL_WINDOW  # when the log's disk was last seen full
        self.full_since = 0.0  # since when (wall clock) it is full, 0 while it has room

    # -- reasons to stop ---------------------------------------------------
    def request_stop(self, reason: StopReason) -> None:
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        self.event.set()

    def _owner_gone(self) -> None:
        with self.lock:
            self.owners -= 1
            last = self.owners <= 0
            if last and not self.args.detached and self.stop_reason is None:
                # Decided under the lock: an owner attaching now is told "stopping".
                self.stop_reason = StopReason.OWNER_ENDED
        if last and not self.args.detached:
            self.event.set()

    def _watch_stdin(self) -> None:
        # read() returns b"" only when every copy of the write end is closed.
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        self._owner_gone()

    def _serve_socket(self, path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        os.chmod(path, 0o600)
        server.listen(16)
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with self.lock:
                welcome = self.stop_reason is None
                if welcome:
                    self.owners += 1
            if welcome:
                threading.Thread(target=self._hold, args=(conn,), daemon=True).start()
                continue
            with contextlib.suppress(OSError):
                conn.sendall(STOPPING)
            conn.close()

    def _hold(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # held until the owner's end closes it
            conn.sendall(WELCOME)
            while conn.recv(4096):
                pass
        self._owner_gone()

    def _watch_pid(self, pid: int) -> None:
        started = _create_time(pid)
        while not self.event.is_set():
            now = _create_time(pid)
            if now is None or (started not in (None, -1.0) and abs(now - started) > 0.5):
                self.request_stop(StopReason.DEPENDENCY_GONE)
                return
            self.event.wait(0.5)

    def _remember_descendants(self) -> None:
        """Note the child's descendants now: once the child dies they are no longer its own."""
        assert self.child is not None
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process(self.child.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.seen[proc.pid] = proc.create_time()

    # -- main loop ---------------------------------------------------------
    def run(self) -> int:
        self._start()
        self._supervise()
        code = self.child.poll() if self.child else None
        if code is None:
            self._remember_descendants()
            code = self._stop_child()
        elif self.stop_reason is None:
            self.stop_reason = StopReason.KILLED if code < 0 else StopReason.EXITED
        self._finish(code)
        return code

    def _start(self) -> None:
        """Start the child and the threads that watch its owners."""
        args = self.args
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.request_stop(StopReason.ASKED))
        if args.hold:  # an owner of another service (a worker of its server) until we exit
            self.held = join(args.hold)
        # The child gets a process group of its own (everything it starts
        # joins it), and SIGINT at its default even if our parent ignored it
        # (e.g. a kernel's background thread): SIG_DFL is set before exec.
        self.child = subprocess.Popen(
            args.argv,
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        _say(f"started pid {self.child.pid}: {' '.join(args.argv)}")
        if not args.detached:
            self.owners += 1
            threading.Thread(target=self._watch_stdin, daemon=True).start()
        if args.socket and not args.detached:
            threading.Thread(target=self._serve_socket, args=(args.socket,), daemon=True).start()
        if args.watch_pid:
            threading.Thread(target=self._watch_pid, args=(args.watch_pid,), daemon=True).start()

    def _supervise(self) -> None:
        """Wait until the child exits or a reason to stop it comes."""
        assert self.child is not None
        ticks = 0
        while not self.event.is_set() and self.child.poll() is None:
            if ticks % 5 == 0:  # every second
                self._remember_descendants()
            ticks += 1
            self._note_full_disk()
            self.event.wait(0.2)
        self._note_full_disk()

    def _note_full_disk(self) -> None:
        with contextlib.suppress(OSError):  # our log, in the child's home (a pipe has no blocks)
            free = os.fstatvfs(1)
            if free.f_blocks and free.f_bavail * free.f_frsize < FULL_BYTES:
                self.disk_full_at = time.monotonic()
                self.full_since = self.full_since or time.time()
            elif self.full_since:
                _say(f"{DISK_WAS_FULL} {self.full_since:.1f} {time.time():.1f}")
                self.full_since = 0.0

    def _finish(self, code: int) -> None:
        """Clean up after the child: its leftovers, the socket, the on-exit command."""
        if self.args.socket:
            with contextlib.suppress(OSError):
                os.unlink(self.args.socket)
        self._kill_leftovers()
        forced = f"; killed after {self.args.grace:g} s" if self.forced else ""
        _say(f"stopped ({self.stop_reason}{forced}); exit code {code}")
        if self.args.on_exit:
            self._run_on_exit(code)
        if self.held is not None:
            self.held.close()

    def _stop_child(self) -> int:
        assert self.child is not None
        with contextlib.suppress(OSError):
            self.child.send_signal(signal.Signals[self.args.stop_signal])
        try:
            return self.child.wait(self.args.grace)
        except subprocess.TimeoutExpired:
            self.forced = True
        with contextlib.suppress(OSError):
            self.child.kill()
        return self.child.wait()

    def _kill_leftovers(self) -> None:
        """Whatever the child left behind (flow runs) goes with it."""
        assert self.child is not None
        with contextlib.suppress(OSError):
            os.killpg(self.child.pid, signal.SIGKILL)
        for pid, created in self.seen.items():
            if _create_time(pid) == created:  # still the same process, not a reused PID
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def _run_on_exit(self, code: int) -> None:
        full = time.monotonic() - self.disk_full_at < DISK_FULL_WINDOW
        env = dict(
            os.environ,
            ENERGY_FLOWS_STOP_REASON=self.stop_reason or StopReason.UNKNOWN,
            ENERGY_FLOWS_EXIT_CODE=str(code),
            ENERGY_FLOWS_CHILD_PID=str(self.child.pid if self.child else ""),
            ENERGY_FLOWS_DISK_FULL=str(int(full)),
        )
        try:
            subprocess.run(
                json.loads(self.args.on_exit),
                env=env,
                stdin=subprocess.DEVNULL,
                timeout=ON_EXIT_TIMEOUT,
                check=False,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            _say(f"the on-exit command failed: {exc}")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="watchdog")
    p.add_argument("--detached", action="store_true", help="do not stop when stdin closes")
    p.add_argument("--socket", help="unix socket other owners can attach to")
    p.add_argument("--hold", help="another watchdog's socket to hold as its owner")
    p.add_argument("--watch-pid", type=int, help="stop when this process ends")
    p.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    p.add_argument(
        "--stop-signal",
        default="SIGTERM",
        choices=["SIGTERM", "SIGINT", "SIGQUIT"],
        help="the signal that asks the child to stop (default SIGTERM)",
    )
    p.add_argument("--on-exit", help="JSON list: a command to run once the child has stopped")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.argv[:1] == ["--"]:
        args.argv = args.argv[1:]
    if not args.argv:
        p.error("nothing to run")
    return args


if __name__ == "__main__":
    sys.exit(Watchdog(parse(sys.argv[1:])).run())
