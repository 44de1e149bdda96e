"""The one spawn function: watchdog ties, detached mode, signals, stops. No Prefect needed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from energy_flows.errors import WaitTimeout
from energy_flows.services import process
from energy_flows.waiting import wait_until

SLEEPER = [
    sys.executable,
    "-c",
    "import signal, time; print('SIGINT:', signal.getsignal(signal.SIGINT), flush=True); "
    "time.sleep(120)",
]

OWNER = textwrap.dedent(
    """
    import json, sys, time, os
    from energy_flows.services import process
    mode = sys.argv[1]
    if mode == "attach":
        assert process.attach(sys.argv[4])
        print(json.dumps({}), flush=True)
    elif mode == "run":
        process.run(json.loads(sys.argv[2]), dict(os.environ), sys.argv[3], timeout=120)
    else:
        options = process.SpawnOptions(tied=(mode == "tied"), socket=sys.argv[4] or None)
        s = process.spawn(json.loads(sys.argv[2]), dict(os.environ), sys.argv[3], options)
        print(json.dumps({"pid": s.pid, "watchdog": s.watchdog_pid}), flush=True)
    time.sleep(120)
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(*pids: int, timeout: float = 5.0) -> None:
    wait_until(lambda: all(_gone(p) for p in pids), timeout, what=f"processes {pids} to end")


@pytest.fixture
def env(fresh_home):
    fresh_home.mkdir(parents=True, exist_ok=True)
    return dict(os.environ)


def _owner(mode: str, log, socket_path: str = "") -> tuple[subprocess.Popen, dict]:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, mode, json.dumps(SLEEPER), str(log), socket_path],
        stdout=subprocess.PIPE,
        text=True,
    )
    return owner, json.loads(owner.stdout.readline())


def test_tied_child_dies_when_its_owner_is_killed(fresh_home, env):
    owner, pids = _owner("tied", fresh_home / "child.log")
    assert not _gone(pids["pid"]) and not _gone(pids["watchdog"])
    owner.kill()
    owner.wait()
    _wait_gone(pids["pid"], pids["watchdog"], timeout=3)


def test_run_returns_the_exit_code_and_writes_the_log(fresh_home, env):
    code = "import sys; print('migrating', flush=True); sys.exit(3)"
    log = fresh_home / "once.log"
    assert process.run([sys.executable, "-c", code], env, log, timeout=30) == 3
    assert "migrating" in log.read_text()


def test_run_stops_the_command_at_its_timeout(fresh_home, env):
    log = fresh_home / "slow.log"
    with pytest.raises(subprocess.TimeoutExpired):
        process.run(SLEEPER, env, log, timeout=1.0)
    wait_until(lambda: "SIGINT:" in log.read_text(), 5, what="the sleeper's first line")
    sleepers = [
        p for p in psutil.process_iter(["cmdline"]) if SLEEPER[2] in (p.info["cmdline"] or [])
    ]
    assert not [p for p in sleepers if not _gone(p.pid)]


def test_run_command_dies_with_a_killed_owner(fresh_home, env):
    log = fresh_home / "owned.log"
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, "run", json.dumps(SLEEPER), str(log), ""]
    )
    wait_until(lambda: log.exists() and "SIGINT:" in log.read_text(), 10, what="the command")
    child = next(
        p for p in psutil.Process(owner.pid).children(recursive=True) if SLEEPER[2] in p.cmdline()
    )
    owner.kill()
    owner.wait()
    _wait_gone(child.pid, timeout=3)


def test_detached_child_survives_its_owner_until_stopped(fresh_home, env):
    owner, pids = _owner("detached", fresh_home / "child.log")
    owner.kill()
    owner.wait()
    time.sleep(1)
    assert not _gone(pids["pid"])
    assert process.stop(pids["pid"], None, pids["watchdog"], None, timeout=5)
    _wait_gone(pids["pid"], pids["watchdog"])


def test_attached_owner_keeps_child_alive_until_it_ends_too(fresh_home, env):
    sock = process.socket_path_for(fresh_home, "test")
    first, pids = _owner("tied", fresh_home / "child.log", sock)
    wait_until(lambda: os.path.exists(sock), 5, what="the watchdog socket")
    second, _ = _owner("attach", "", sock)
    first.kill()
    first.wait()
    time.sleep(1)
    assert not _gone(pids["pid"]), "the second owner should keep the child alive"
    second.kill()
    second.wait()
    _wait_gone(pids["pid"], pids["watchdog"], timeout=3)


ATTACH_TWICE = textwrap.dedent(
    """
    import sys, time
    from energy_flows.services import process
    print(process.attach(sys.argv[1]), flush=True)
    sys.stdin.readline()
    print(process.attach(sys.argv[1]), flush=True)
    time.sleep(120)
    """
)


def test_attach_after_the_service_was_replaced_ties_to_the_new_one(fresh_home, env):
    """A process attached to a home's first server, then attaching to its next one, holds the next.

    Both servers' watchdogs listen at the same socket path; the old connection
    must not be taken for a tie to the new watchdog.
    """
    sock = process.socket_path_for(fresh_home, "test")
    first, pids1 = _owner("tied", fresh_home / "child1.log", sock)
    wait_until(lambda: os.path.exists(sock), 5, what="the first watchdog's socket")
    attacher = subprocess.Popen(
        [sys.executable, "-c", ATTACH_TWICE, sock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert attacher.stdout.readline().strip() == "True"
        assert process.stop(pids1["pid"], None, pids1["watchdog"], None, timeout=5)
        _wait_gone(pids1["pid"], pids1["watchdog"])
        first.kill()
        first.wait()
        second, pids2 = _owner("tied", fresh_home / "child2.log", sock)
        wait_until(lambda: os.path.exists(sock), 5, what="the second watchdog's socket")
        attacher.stdin.write("again\n")
        attacher.stdin.flush()
        assert attacher.stdout.readline().strip() == "True"
        second.kill()
        second.wait()
        time.sleep(1)
        assert not _gone(pids2["pid"]), "the attacher should keep the second child alive"
    finally:
        attacher.kill()
        attacher.wait()
    _wait_gone(pids2["pid"], pids2["watchdog"], timeout=5)


def test_child_gets_default_sigint_even_if_the_caller_ignores_it(fresh_home, env):
    log = fresh_home / "child.log"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        spawned = process.spawn(SLEEPER, env, log)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        line = wait_until(
            lambda: [x for x in process.tail(log).splitlines() if x.startswith("SIGINT:")],
            10,
            what="the child's first line",
        )
        assert "default_int_handler" in line[0]
        assert psutil.Process(spawned.watchdog_pid).pid == os.getsid(spawned.watchdog_pid)
    finally:
        process.stop(spawned.pid, spawned.create_time, spawned.watchdog_pid, None)
    _wait_gone(spawned.pid, spawned.watchdog_pid)


def test_watch_pid_stops_the_child_when_that_process_ends(fresh_home, env):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    options = process.SpawnOptions(watch_pid=other.pid)
    spawned = process.spawn(SLEEPER, env, fresh_home / "c.log", options)
    other.kill()
    other.wait()
    _wait_gone(spawned.pid, spawned.watchdog_pid, timeout=5)
    assert "stopped (dependency-gone)" in process.tail(fresh_home / "c.log")
    assert not process.is_alive(spawned.watchdog_pid)


def test_stop_kills_a_child_that_ignores_sigterm(fresh_home, env):
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('SIGTERM' + ' ignored', flush=True); time.sleep(60)",
    ]
    spawned = process.spawn(stubborn, env, fresh_home / "s.log", process.SpawnOptions(grace=0.5))
    # The watchdog logs the command line too: wait for the text only the child prints.
    wait_until(
        lambda: "SIGTERM ignored" in process.tail(fresh_home / "s.log"), 10, what="the child"
    )
    started = time.monotonic()
    assert process.stop(spawned.pid, spawned.create_time, spawned.watchdog_pid, None, timeout=5)
    assert time.monotonic() - started < 3
    assert _gone(spawned.pid)
    log = process.tail(fresh_home / "s.log")
    assert "killed after" in log, log


def test_is_alive_tells_a_reused_pid_apart():
    me = psutil.Process()
    assert process.is_alive(me.pid, me.create_time())
    assert not process.is_alive(me.pid, me.create_time() - 100)
    assert not process.is_alive(None)


def test_wait_until_returns_the_value_or_says_what_is_missing():
    values = iter([0, 0, 42])
    assert wait_until(lambda: next(values), 5, what="the answer") == 42
    with pytest.raises(WaitTimeout, match=r"waiting for the impossible\.\nstill nothing"):
        wait_until(lambda: False, 0.2, what="the impossible", missing=lambda: "still nothing")


def test_launcher_keeps_rfc3987_syntax_out():
    probe = "import sys; import jsonschema; print('rfc3987_syntax' in sys.modules and " \
        "sys.modules['rfc3987_syntax'] is not None)"  # fmt: skip
    plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    code = f"from energy_flows.services.launch import block_optional_modules as b; b(); {probe}"
    blocked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert blocked.stdout.strip() == "False", blocked.stderr
    if plain.stdout.strip() != "True":
        pytest.skip("rfc3987_syntax is not installed here: nothing to block")


@pytest.mark.parametrize("collector_on_before", [True, False])
def test_preload_imports_with_the_collector_paused_and_restores_it(collector_on_before):
    code = (
        "import gc, sys\n"
        f"{'' if collector_on_before else 'gc.disable()'}\n"
        "from energy_flows.services.launch import preload\n"
        "preload(['json', 'decimal'])\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 0, 'decimal' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == [str(collector_on_before), "True", "True"], out.stderr


def test_launcher_says_how_to_use_it():
    out = subprocess.run(
        [sys.executable, "-m", "energy_flows.services.launch", "serve"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "usage:" in out.stderr


def test_a_failed_bind_is_found_under_the_shutdown_traceback_that_follows_it(tmp_path):
    """Uvicorn logs the bind error, then ~20 lines of shutdown traceback: both are shown."""
    log = tmp_path / "server.log"
    earlier = "00:10:00.000 | ERROR   | an earlier start's error\n"
    bind = (
        "00:20:26.743 | ERROR   | uvicorn.error - [Errno 98] error while attempting "
        "to bind on address ('127.0.0.1', 4200): address already in use\n"
    )
    shutdown = "".join(f'  File "x.py", line {n}, in lifespan\n' for n in range(24))
    log.write_text(earlier + bind + shutdown + "AssertionError: Reactive triggers not started\n")
    text, port_taken = process.failed_start_log(log, 20, start=len(earlier))
    assert port_taken
    assert text.splitlines()[0] == bind.rstrip("\n")
    assert text.splitlines()[-1] == "AssertionError: Reactive triggers not started"
    assert "an earlier start" not in text
    # Another failure is not taken for a port problem.
    log.write_text(earlier + shutdown)
    assert process.failed_start_log(log, 20)[1] is False


def test_the_home_lock_is_reentrant_in_a_thread_and_excludes_the_kernels_other_threads(tmp_path):
    """A widget's thread and the cell's thread of one kernel: the second waits, then holds it.

    (It once counted holders per process: the widget's thread went in without waiting, and
    whichever left last failed with a KeyError on the lock's path.)"""
    import threading

    from energy_flows.services import registry

    events: list[str] = []
    inside = threading.Event()

    def widget() -> None:
        inside.wait(10)
        with registry.locked(tmp_path):
            events.append("widget in")

    thread = threading.Thread(target=widget)
    thread.start()
    with registry.locked(tmp_path):
        with registry.locked(tmp_path):  # stop_all inside stop: the same thread goes on
            events.append("cell in")
            inside.set()
            time.sleep(0.5)  # the widget's thread tries meanwhile, and must wait
        events.append("cell still holds it")
    thread.join(10)
    assert events == ["cell in", "cell still holds it", "widget in"]
    with registry.locked(tmp_path):  # and it is free again
        events.append("free")
