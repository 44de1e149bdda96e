"""``energy-flows up | status | logs | down | reset`` in a terminal (real subprocesses)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from energy_flows.services import api, control, registry
from energy_flows.waiting import wait_until
from tests.notebooks.nbval_plugin import sanitized

pytestmark = pytest.mark.server


def cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, ENERGY_FLOWS_HOME=str(home))
    env.pop("ENERGY_FLOWS_QUIET", None)
    return subprocess.run(
        [sys.executable, "-m", "energy_flows.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_up_status_logs_down(tmp_path):
    home = tmp_path / "home"
    try:
        up = cli(home, "up", "--worker", "cli-pool/cli-queue")
        assert up.returncode == 0, up.stderr + up.stdout
        server = registry.server_record(home)
        assert server is not None and server.owner == "cli"
        assert f"Prefect UI:  {server.ui_url}" in up.stdout
        # The command has returned; the server and the worker keep running.
        assert api.healthy(server.api_url)
        (worker,) = registry.worker_records(home)
        assert worker.pool == "cli-pool" and worker.queues == ["cli-queue"]

        # Reuse costs little beyond starting the interpreter and importing the CLI:
        # timed against a command that does nothing else, so a busy machine slows both.
        started = time.monotonic()
        assert cli(home, "--help").returncode == 0
        baseline = time.monotonic() - started
        started = time.monotonic()
        again = cli(home, "up")
        reuse = time.monotonic() - started
        assert reuse < baseline + 1.5, f"reuse took {reuse:.1f} s, --help {baseline:.1f} s"
        assert again.returncode == 0 and "Reusing" in again.stdout
        assert registry.server_record(home).pid == server.pid

        status = cli(home, "status")
        assert status.returncode == 0
        assert "server" in status.stdout and "cli-pool: cli-queue" in status.stdout
        assert str(server.pid) in status.stdout

        logs = cli(home, "logs", "-n", "3")
        assert logs.returncode == 0 and len(logs.stdout.strip().splitlines()) <= 3
        assert cli(home, "logs", worker.name).returncode == 0
        missing = cli(home, "logs", "nope")
        assert missing.returncode == 1 and "Logs in this home" in missing.stderr

        down = cli(home, "down")
        assert down.returncode == 0
        assert "Stopped worker" in down.stdout and "Stopped the Prefect server" in down.stdout
        assert down.stdout.index("Stopped worker") < down.stdout.index("Stopped the Prefect")
        assert not psutil.pid_exists(server.pid) or not registry.live_records(home)
        assert "Nothing runs" in cli(home, "status").stdout
    finally:
        control.stop_all(home, quiet=True)


def test_up_rejects_a_bad_worker_spec(tmp_path):
    result = cli(tmp_path / "home", "up", "--worker", "no-slash")
    # a usage error (status 2, as argparse gives), found before anything starts
    assert result.returncode == 2 and "POOL/QUEUE" in result.stderr
    assert registry.server_record(tmp_path / "home") is None


def test_reset_removes_state(tmp_path):
    home = tmp_path / "home"
    (home / "prefect").mkdir(parents=True)
    (home / "prefect" / "prefect.db").write_text("x")
    (home / "cache").mkdir()
    result = cli(home, "reset", "--yes")
    assert result.returncode == 0, result.stderr
    assert not (home / "prefect").exists() and (home / "cache").exists()


def _hold_free_port() -> tuple[socket.socket, int]:
    """Listen on a free port as another program would; returns the socket and its port."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    return blocker, blocker.getsockname()[1]


def _up_processes(homes: list[Path], *args: str) -> list[subprocess.Popen]:
    """``energy-flows up ARGS`` for each home, all started at once."""
    processes = []
    for home in homes:
        env = dict(os.environ, ENERGY_FLOWS_HOME=str(home))
        env.pop("ENERGY_FLOWS_QUIET", None)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "energy_flows.cli", "up", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return processes


def _servers_of(home: Path) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if "server" in (p.info["cmdline"] or [])
        and "energy_flows.services.launch" in (p.info["cmdline"] or [])
        and not any("watchdog" in part for part in p.info["cmdline"])
        and p.environ().get("ENERGY_FLOWS_HOME") == str(home)
    ]


@pytest.mark.parametrize("attempt", range(3))
def test_two_concurrent_ups_share_one_server(tmp_path, attempt):
    """Two `energy-flows up` at once, their port held by another program: one server."""
    # The port is this test's own, not 4200: tests in the other process
    # start servers on 4200 when it is free, and must not be disturbed.
    blocker, port = _hold_free_port()
    home = tmp_path / "home"
    try:
        first, second = _up_processes([home, home], "--port", str(port))
        outputs = [p.communicate(timeout=120)[0] for p in (first, second)]
        assert first.returncode == 0 and second.returncode == 0, outputs
        assert sum("Reusing" in out for out in outputs) == 1, outputs
        assert len(_servers_of(home)) == 1
        assert all(f"{port} is taken" in out or "Reusing" in out for out in outputs), outputs
    finally:
        control.stop_all(home, quiet=True)
        blocker.close()


def test_two_homes_starting_on_one_free_port_at_once_both_start(tmp_path):
    """Two learners' servers check the same free port, one binds it first: the other retries.

    Both see the port free (a server binds it only seconds after the check),
    so one of them fails to bind. It must start again on another free port and
    say so, not fail with the shutdown traceback Prefect logs after the bind.
    """
    blocker, port = _hold_free_port()
    blocker.close()  # free now, and both servers will want it
    homes = [tmp_path / "a", tmp_path / "b"]
    try:
        processes = _up_processes(homes, "--port", str(port))
        outputs = [p.communicate(timeout=180)[0] for p in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs
        ports = [registry.live_server(home).port for home in homes]
        assert sorted(ports)[0] != sorted(ports)[1] and port in ports, (ports, outputs)
        retried = [out for out in outputs if f"Port {port} was taken meanwhile" in out]
        assert len(retried) == 1, outputs
        for home in homes:
            assert api.healthy(registry.live_server(home).api_url), home
    finally:
        for home in homes:
            control.stop_all(home, quiet=True)


def test_a_start_that_loses_its_port_is_retried_by_its_starter_not_replaced(tmp_path):
    """A second start in the same home waits for the first one's retry and reuses it.

    What the JupyterLab tile met on CI: the tile started the home's server on
    4200, another test's server bound 4200 first, and a kernel of the same home
    waiting on the tile's server started a server of its own when the tile's
    died. The tile's retry then found the kernel's server, without the proxy
    address, and its page left JupyterLab. Here another program binds the port
    the moment the first start has recorded its server (a server binds seconds
    later), and a second start comes in then.
    """
    probe, port = _hold_free_port()
    probe.close()  # free: the first start takes it
    home = tmp_path / "home"
    state = registry.state_path(home, "server", "server")
    blocker = socket.socket()
    try:
        (first,) = _up_processes([home], "--port", str(port))
        wait_until(state.exists, 60, what="the first start to record its server", interval=0.01)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        (second,) = _up_processes([home], "--port", str(port))
        outputs = [p.communicate(timeout=180)[0] for p in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], outputs
        assert f"Port {port} was taken meanwhile" in outputs[0], outputs
        assert "Reusing" in outputs[1], outputs
        rec = registry.live_server(home)
        assert rec is not None and rec.port != port
        assert [p.pid for p in _servers_of(home)] == [rec.pid], outputs
        assert f"(pid {rec.pid})" in outputs[1], outputs
        # A lesson that meets this (two lessons run at once in nbval) reads, once
        # sanitized, as a start that went well: the race is the machine's, not the lesson's.
        retried = sanitized(outputs[0])
        assert "failed" not in retried and "meanwhile" not in retried, retried
        assert retried.count("Starting the Prefect server for") == 1, retried
    finally:
        control.stop_all(home, quiet=True)
        blocker.close()


def test_a_retried_start_on_postgres_readies_its_database_once(tmp_path):
    """Lesson 07's start losing its port: the retry reuses the PostgreSQL it started, silently.

    Sanitized as nbval compares the lessons, the output reads like a start that went well.
    """
    probe, port = _hold_free_port()
    probe.close()
    home = tmp_path / "home"
    state = registry.state_path(home, "server", "server")
    blocker = socket.socket()
    try:
        (start,) = _up_processes([home], "--database", "postgres", "--port", str(port))
        wait_until(state.exists, 120, what="the start to record its server", interval=0.01)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        output = start.communicate(timeout=240)[0]
        assert start.returncode == 0 and f"Port {port} was taken meanwhile" in output, output
        assert "Reusing this home's PostgreSQL" not in output, output
        retried = sanitized(output)
        assert "failed" not in retried and "meanwhile" not in retried, retried
        assert registry.live_server(home).database.startswith("postgresql+asyncpg://")
    finally:
        control.stop_all(home, quiet=True)
        blocker.close()
