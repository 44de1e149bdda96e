"""The Prefect server as a managed process: real servers, real HTTP."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from energy_flows.errors import DiskFullError, HomeNotWritableError, ServiceError, WaitTimeout
from energy_flows.services import api, control, registry
from energy_flows.services import server as server_module
from energy_flows.services.server import PrefectServer
from energy_flows.waiting import wait_until

pytestmark = pytest.mark.server


def _gone(pid: int, timeout: float = 5.0) -> bool:
    def ended() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    try:
        return wait_until(ended, timeout, what=f"process {pid} to end")
    except WaitTimeout:
        return False


def test_session_server_is_healthy_and_the_client_points_at_it(prefect_server):
    assert prefect_server.status() == "running"
    assert api.healthy(prefect_server.api_url)
    assert prefect_server.api_url.startswith("http://127.0.0.1:")
    assert prefect_server.ui_url == prefect_server.api_url.removesuffix("/api")
    from prefect.settings import PREFECT_API_URL

    assert PREFECT_API_URL.value() == prefect_server.api_url
    assert os.environ["PREFECT_API_URL"] == prefect_server.api_url


def test_second_start_reuses_fast_and_does_not_duplicate(prefect_server):
    started = time.monotonic()
    again = PrefectServer(home=prefect_server.home, quiet=True).start()
    assert time.monotonic() - started < 0.5
    assert again.reused and again.pid == prefect_server.pid
    assert "Reusing" in again.messages[0]


def test_repr_logs_and_state_file(prefect_server):
    html = prefect_server._repr_html_()
    assert str(prefect_server.pid) in html and prefect_server.ui_url in html
    assert "running" in html and str(prefect_server.home) in html
    assert "running" in repr(prefect_server)
    logs = prefect_server.logs(tail=5)
    assert 0 < len(logs.splitlines()) <= 5
    state = json.loads((prefect_server.home / "state" / "server.json").read_text())
    assert state["pid"] == prefect_server.pid and state["owner"] == "kernel"
    assert {"watchdog_pid", "create_time", "port", "api_url", "argv", "log", "started_at"} <= set(
        state
    )


def test_running_lists_the_server(prefect_server):
    table = control.running(prefect_server.home)
    assert list(table["kind"]) == ["server"] or "server" in list(table["kind"])
    row = table[table["kind"] == "server"].iloc[0]
    assert row["pid"] == prefect_server.pid and row["state"] == "running"


def test_port_taken_context_manager_and_stop(fresh_home):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        with PrefectServer(port=taken, quiet=True) as server:
            assert server.port != taken
            assert f"Port {taken} is taken" in server.messages[0]
            assert api.healthy(server.api_url)
            # The UI in the browser must talk to this server, not to whatever runs on 4200.
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/ui-settings") as r:
                ui_settings = json.loads(r.read())
            assert ui_settings["api_url"] == f"http://127.0.0.1:{server.port}/api"
            pid, watchdog = server.pid, server.record.watchdog_pid
    assert _gone(pid) and _gone(watchdog)
    assert not (fresh_home / "state" / "server.json").exists()
    assert server.status() == "stopped"


def test_stale_state_file_is_reported_as_stopped_then_removed(fresh_home):
    from energy_flows.settings import ensure_home

    ensure_home(fresh_home)
    me = psutil.Process()
    for pid, create_time in [(999_999, 1.0), (me.pid, me.create_time() - 1000)]:
        rec = registry.ServerRecord(
            kind=registry.Kind.SERVER, name="server", home=str(fresh_home), pid=pid,
            create_time=create_time, watchdog_pid=999_998, watchdog_create_time=1.0,
            argv=[], log="", log_offset=0, started_at=0, owner=registry.Owner.KERNEL,
            owner_pid=1, port=1, api_url="http://127.0.0.1:1/api", ui_url="http://127.0.0.1:1",
        )  # fmt: skip
        rec.save()
        assert registry.live_server(fresh_home) is None
        assert control.running(fresh_home).empty
        assert rec.path.exists(), "reading must not change anything"
        control.reconcile(fresh_home, quiet=True)
        assert not rec.path.exists()


def test_unwritable_home_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(HomeNotWritableError, match="ENERGY_FLOWS_HOME"):
        PrefectServer(home=blocker / "home", quiet=True).start()


def test_server_that_fails_to_start_shows_its_log(fresh_home, monkeypatch):
    real = server_module.server_argv
    monkeypatch.setattr(server_module, "server_argv", lambda port: [*real(port), "--no-such-flag"])
    with pytest.raises(ServiceError) as info:
        PrefectServer(quiet=True).start()
    message = str(info.value)
    assert "no-such-flag" in message and str(fresh_home / "logs" / "server.log") in message
    assert "Nothing is left running" in message
    assert not (fresh_home / "state" / "server.json").exists()


def test_jupyterhub_prefix(fresh_home, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    server = PrefectServer(quiet=True).start()
    try:
        prefix = f"/user/alice/proxy/absolute/{server.port}"
        assert server.api_url == f"http://127.0.0.1:{server.port}{prefix}/api"
        assert server.ui_url.endswith(f"{prefix}/")
        assert api.healthy(server.api_url)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{prefix}/", timeout=10) as r:
            page = r.read().decode()
        assert r.status == 200 and "<html" in page.lower()
        with urllib.request.urlopen(
            f"http://127.0.0.1:{server.port}{prefix}/ui-settings", timeout=10
        ) as r:
            assert json.loads(r.read())["api_url"] == f"{prefix}/api"
    finally:
        server.stop()
    assert not Path(fresh_home / "state" / "server.json").exists()


def test_a_kernel_that_starts_a_server_gets_prefect_imported_the_fast_way(fresh_home):
    """The kernel imports Prefect right after the start: without the slow optional
    module, and with its garbage collector on and nothing of the learner's frozen."""
    import subprocess
    import sys

    probe = (
        "import gc, json, sys\n"
        "from energy_flows.services.server import PrefectServer\n"
        "before = 'prefect' in sys.modules\n"
        "server = PrefectServer(quiet=True).start()\n"
        "print(json.dumps({'before': before, 'prefect': 'prefect.deployments' in sys.modules,\n"
        "    'rfc3987_syntax': sys.modules.get('rfc3987_syntax') is not None,\n"
        "    'collector_on': gc.isenabled(), 'frozen': gc.get_freeze_count()}))\n"
        "server.stop()\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {
        "before": False,
        "prefect": True,
        "rfc3987_syntax": False,
        "collector_on": True,
        "frozen": 0,
    }, out.stderr


def test_a_start_that_cannot_record_its_server_stops_what_it_spawned(fresh_home, monkeypatch):
    """The state file cannot be written (a full disk): no unrecorded server is left running.

    The write fails as a full disk makes it fail (ENOSPC from the state file's save);
    tests/test_full_disk.py fills a real filesystem.
    """
    import errno

    from conftest import package_processes

    def full_disk(self: registry.ServiceRecord) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(registry.ServiceRecord, "save", full_disk)
    with pytest.raises(DiskFullError) as info:
        PrefectServer(quiet=True).start()
    message = str(info.value)
    assert message.startswith("The disk is full: the state file that records the Prefect server")
    assert f"could not be written to {fresh_home / 'state'} (the disk mounted at" in message
    assert "nothing is left running" in message and "ENERGY_FLOWS_HOME" in message
    assert wait_until(lambda: not package_processes(fresh_home), 15, what="no process left")
