"""A tiny parent that makes sure a child process never outlives its owner.

Run as ``python -I -S watchdog.py [options] -- ARGV...`` by
:func:`energy_flows.services.process.spawn`; standard library only, so it
starts in a few milliseconds. It is started in its own session (so the
kernel's interrupt button and a terminal's Ctrl-C never reach it) and
starts ``ARGV`` in its own process group. It then stops the child, and
everything the child started in that group (a worker's flow runs), when:

* its standard input reaches end-of-file: the owner (a notebook kernel)
  holds the other end of that pipe, and the operating system closes it
  whenever the owner ends: shutdown, restart, crash or ``SIGKILL``;
  every other owner that attached through ``--socket`` has gone too;
* ``--watch-pid PID`` is given and that process ends (a worker watches its
  server: a worker without a server would retry for minutes);
* it receives SIGTERM or SIGINT (a normal ``stop()``).

With ``--detached`` (the ``energy-flows up`` command) standard input is not
watched: the child runs until ``energy-flows down``.

Stopping sends SIGTERM to the child, waits ``--grace`` seconds, then
SIGKILLs the whole process group. The watchdog exits with the child's code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"


def _group_has_others() -> bool:
    """Whether another live process shares our process group (True if unknown)."""
    me, group = os.getpid(), os.getpgrp()
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state (Z: zombie, already dead), fields[2] the group
        if fields[2] == str(group) and fields[0] != "Z":
            return True
    return False


class Watchdog:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stop_reason: str | None = None
        self.event = threading.Event()
        self.lock = threading.Lock()
        self.owners = 0
        self.child: subprocess.Popen[bytes] | None = None

    # -- reasons to stop ---------------------------------------------------
    def request_stop(self, reason: str) -> None:
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        self.event.set()

    def _owner_gone(self, what: str) -> None:
        with self.lock:
            self.owners -= 1
            last = self.owners <= 0
        if last and not self.args.detached:
            self.request_stop(f"its owner ended ({what})")

    def _watch_stdin(self) -> None:
        # read() returns b"" only when every copy of the write end is closed.
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        self._owner_gone("the notebook kernel or program that started it")

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
                self.owners += 1
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        try:
            conn.sendall(b"ok\n")
            while conn.recv(4096):
                pass
        except OSError:
            pass
        finally:
            conn.close()
        self._owner_gone("another kernel that reused it")

    def _watch_pid(self, pid: int) -> None:
        started = _start_time(pid)
        while not self.event.is_set():
            now = _start_time(pid)
            if now is None or (started not in (None, "?") and now != started):
                self.request_stop(f"the process it depends on (pid {pid}) ended")
                return
            self.event.wait(0.5)

    # -- main loop ---------------------------------------------------------
    def run(self) -> int:
        args = self.args
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop("it was asked to stop"))
        signal.signal(signal.SIGINT, lambda *_: self.request_stop("it was interrupted"))
        # A child must react to SIGINT/SIGTERM even if our parent ignored SIGINT
        # (e.g. a kernel's background thread): the child gets SIG_DFL on exec.
        self.child = subprocess.Popen(
            args.argv,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        print(f"[watchdog {os.getpid()}] started pid {self.child.pid}: {' '.join(args.argv)}")
        sys.stdout.flush()
        if not args.detached:
            self.owners += 1
            threading.Thread(target=self._watch_stdin, daemon=True).start()
        if args.socket and not args.detached:
            threading.Thread(target=self._serve_socket, args=(args.socket,), daemon=True).start()
        if args.watch_pid:
            threading.Thread(target=self._watch_pid, args=(args.watch_pid,), daemon=True).start()

        while not self.event.is_set():
            if self.child.poll() is not None:
                break
            self.event.wait(0.2)
        code = self.child.poll()
        if code is None:
            code = self._stop_child()
        elif self.stop_reason is None:
            self.stop_reason = f"the process exited by itself with code {code}"
        print(f"[watchdog {os.getpid()}] stopped: {self.stop_reason}; exit code {code}")
        sys.stdout.flush()
        if args.socket:
            with contextlib.suppress(OSError):
                os.unlink(args.socket)
        # Anything the child left in our group (flow runs) goes with it.
        if _group_has_others():
            with contextlib.suppress(OSError):
                os.killpg(os.getpgrp(), signal.SIGKILL)
        return code

    def _stop_child(self) -> int:
        assert self.child is not None
        with contextlib.suppress(OSError):
            self.child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.args.grace
        while time.monotonic() < deadline:
            if self.child.poll() is not None:
                return self.child.returncode
            time.sleep(0.05)
        self.stop_reason = f"{self.stop_reason}; killed after {self.args.grace:g} s"
        with contextlib.suppress(OSError):
            self.child.kill()
        return self.child.wait()


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="watchdog")
    p.add_argument("--detached", action="store_true", help="do not stop when stdin closes")
    p.add_argument("--socket", help="unix socket other owners can attach to")
    p.add_argument("--watch-pid", type=int, help="stop when this process ends")
    p.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.argv[:1] == ["--"]:
        args.argv = args.argv[1:]
    if not args.argv:
        p.error("nothing to run")
    return args


if __name__ == "__main__":
    sys.exit(Watchdog(parse(sys.argv[1:])).run())
