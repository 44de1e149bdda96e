"""The "Prefect UI" tile in JupyterLab's Launcher (``energy_flows/jupyter/ui_tile.py``).

The quick checks read the tile's spec and answers without starting anything.
The browser checks run the real thing in headless Chromium, each in its own
home, with JupyterLab and jupyter-server-proxy as a learner has them:

* at base URL ``/`` (``make lab``): the tile starts the home's server with the
  proxy prefix and opens its dashboard, which shows the course's flow run and
  work pool; a kernel that starts a server afterwards reuses that one; when
  JupyterLab stops, the server stops with it;
* under ``/user/learner/`` with ``JUPYTERHUB_SERVICE_PREFIX`` and
  ``JUPYTERHUB_USER`` (a JupyterHub): the tile reuses the server a kernel (here:
  the test process) started, with a password as on every hub, and leaves it
  running for that kernel when JupyterLab stops. The owner's UI opens through
  JupyterLab without a Login page, and the password never reaches the browser.

Both end with exactly one server recorded for the home, and nothing of
theirs left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import psutil
import pytest

from energy_flows.errors import WaitTimeout
from energy_flows.jupyter import ui_tile
from energy_flows.services import registry, urls
from energy_flows.waiting import wait_until
from tests.conftest import status_without_password

#: A lesson's kernel, in short: start (or reuse) the home's server, say what it got.
KERNEL = """
import json
from energy_flows import PrefectServer
server = PrefectServer(quiet=True).start()
print(json.dumps({"reused": server.reused, "pid": server.pid, "ui_url": server.ui_url}))
"""

#: The same kernel, running the course's flow and creating its work pool, then ending.
SEED = """
from energy_flows import PrefectServer
from energy_flows.flows import energy_usage_pipeline
from energy_flows.orchestration import ensure_work_pool
from energy_flows.prefect_internals import flush_to_server
server = PrefectServer(quiet=True).start()
ensure_work_pool("energy-pool")
energy_usage_pipeline(meter_id="tile-check", days=30, test_days=7)
flush_to_server()
"""

#: The flow run SEED makes (the flow's run name is ``energy-{meter_id}-{start}``).
SEEDED_RUN = "energy-tile-check-2024-01-01"


# -- quick checks ------------------------------------------------------------------------------


def test_the_tile_is_an_entry_point_jupyter_server_proxy_accepts() -> None:
    from jupyter_server_proxy.config import make_server_process

    names = {e.name: e.value for e in entry_points(group="jupyter_serverproxy_servers")}
    assert names.get(ui_tile.NAME) == "energy_flows.jupyter.ui_tile:server_proxy_spec"
    spec = ui_tile.server_proxy_spec()
    # What jupyter-server-proxy does with an entry point's spec (4.2 to 4.4 alike).
    process = make_server_process(ui_tile.NAME, spec, None)
    assert process.launcher_entry.title == "Prefect UI"
    assert process.launcher_entry.path_info == "prefect-ui/"
    assert Path(process.launcher_entry.icon_path).is_file()
    assert process.absolute_url  # the tile's redirect must reach the browser unchanged
    command = " ".join(process.command)
    assert "-m energy_flows.jupyter.ui_tile" in command
    assert "{port}" in command and "{base_url}" in command


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [("/", "/proxy/absolute/4321/"), ("/user/learner/", "/user/learner/proxy/absolute/4321/")],
)
def test_a_server_with_the_proxy_prefix_gets_a_redirect(base_url: str, expected: str) -> None:
    prefix = expected.rstrip("/")
    reply = ui_tile.ready_reply(
        urls.api_url_for(4321, prefix), 4321, urls.ui_url_for(4321, prefix), base_url
    )
    assert (reply.status, reply.location) == (302, expected)


def test_a_server_without_the_prefix_is_linked_not_replaced() -> None:
    reply = ui_tile.ready_reply(
        urls.api_url_for(4321, None), 4321, "http://127.0.0.1:4321", "/user/learner/"
    )
    assert reply.status == 200 and reply.location is None
    assert "http://127.0.0.1:4321" in reply.body and "energy-flows down" in reply.body


def test_pages_while_starting_and_after_a_failure(tmp_path: Path) -> None:
    starting = ui_tile.starting_reply(tmp_path)
    assert starting.status == 200 and "http-equiv='refresh'" in starting.body
    failed = ui_tile.failed_reply("ServiceError: <port> taken")
    assert failed.status == 503 and "&lt;port&gt; taken" in failed.body


# -- in the browser ----------------------------------------------------------------------------


def _processes_of(home: Path) -> list[psutil.Process]:
    """Live processes whose ``ENERGY_FLOWS_HOME`` is ``home`` (JupyterLab, tile, server ...)."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("ENERGY_FLOWS_HOME") == str(home):
                found.append(proc)
    return found


def _prefect_servers_of(home: Path) -> list[int]:
    """The process ids of ``home``'s servers, read from the process table (not the registry)."""
    servers = []
    for proc in _processes_of(home):
        with contextlib.suppress(psutil.Error):
            argv = proc.cmdline()
            if argv[1:3] == ["-m", "energy_flows.services.launch"] and argv[4:6] == [
                "server",
                "start",
            ]:
                servers.append(proc.pid)
    return servers


@pytest.fixture
def start_kernel() -> Iterator[Callable[[Path, str], subprocess.Popen[str]]]:
    """``start_kernel(home, code)`` runs ``code`` as a lesson's kernel would, in ``home``.

    Read its output with :func:`_output`. A kernel still running at the end
    of the test (it failed before reading it) is killed.
    """
    from energy_flows.settings import classroom_env

    started: list[subprocess.Popen[str]] = []

    def start(home: Path, code: str) -> subprocess.Popen[str]:
        env = classroom_env(home)
        env.pop("JUPYTERHUB_SERVICE_PREFIX", None)  # a plain `make lab` kernel
        kernel = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(kernel)
        return kernel

    yield start
    for kernel in started:
        if kernel.poll() is None:
            kernel.kill()
            kernel.communicate()


def _output(kernel: subprocess.Popen[str]) -> str:
    """Wait for a kernel of ``start_kernel`` to end well; return what it printed."""
    out, err = kernel.communicate(timeout=180)
    assert kernel.returncode == 0, out[-2000:] + err[-3000:]
    return out


def _launcher(browser: Any, lab: Any, shots: Path) -> tuple[Any, Any]:
    """Open JupyterLab; return the page and the tile in its Launcher, picture loaded."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{lab.url}/lab?token={lab.token}")
    card = page.locator(".jp-LauncherCard", has_text=ui_tile.TITLE)
    card.wait_for(timeout=90_000)
    # The tile's picture, served by jupyter-server-proxy from the package.
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0",
        arg=card.locator("img").element_handle(timeout=30_000),
        timeout=30_000,
    )
    page.screenshot(path=str(shots / "launcher.png"))
    return page, card


def _click(page: Any, card: Any) -> tuple[Any, list[str], list[str]]:
    """Click the tile; return the tab it opens, and what that tab requested and failed."""
    requests: list[str] = []
    failed: list[str] = []
    page.context.on("request", lambda r: requests.append(r.url))
    page.context.on(
        "response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    with page.context.expect_page(timeout=30_000) as opened:
        card.click()
    ui = opened.value
    ui.set_viewport_size({"width": 1280, "height": 800})
    return ui, requests, failed


def _dashboard_url(lab: Any, port: int | str) -> str:
    """The pattern of the dashboard's address under ``<base>proxy/absolute/<port>/``.

    ``port`` may be ``"*"``: any port.
    """
    return f"{lab.url}/proxy/absolute/{port}/**/dashboard**"


def _check_tab(
    ui: Any,
    lab: Any,
    shot: Path,
    texts: list[str],
    url: str | None = None,
    link: str | None = None,
) -> None:
    """Follow the UI's menu ``link``, wait for ``url`` and ``texts``, then take ``shot``."""
    try:
        if link:
            ui.get_by_role("link", name=link, exact=True).first.click()
        if url:
            ui.wait_for_url(url, timeout=120_000)
        for text in texts:
            ui.get_by_text(text, exact=True).first.wait_for(timeout=60_000)
        ui.screenshot(path=str(shot))
    except Exception:
        ui.screenshot(path=str(shot.with_name("failure.png")))
        print(f"--- tab at {ui.url}:\n{ui.inner_text('body')[:2000]}")
        print(f"--- JupyterLab log:\n{lab.log_path.read_text()[-3000:]}")
        raise


def _assert_through_jupyterlab(lab: Any, port: int, requests: list[str], failed: list[str]) -> None:
    """The tab's pages and API calls went through JupyterLab, never straight to Prefect's port.

    (Prefect's own UI also asks amplitude.com for a configuration; offline,
    that request fails without effect. It is not the proxy's concern.)
    """
    ui_path = f"{lab.url}/proxy/absolute/{port}/"
    assert any(u.startswith(f"{ui_path}api/") for u in requests), requests
    direct = [u for u in requests if f"127.0.0.1:{port}" in u or f"localhost:{port}" in u]
    assert not direct, direct
    assert not [f for f in failed if lab.url in f], failed


def _wait_gone(home: Path) -> list[str]:
    """Wait for every process of ``home`` to end; kill and describe the ones that do not."""
    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not _processes_of(home), 30, what="the home's processes to end")
    survivors = _processes_of(home)
    described = []
    for proc in survivors:
        with contextlib.suppress(psutil.Error):
            described.append(f"{proc.pid}: {' '.join(proc.cmdline())[:150]}")
            proc.kill()
    return described


def _shots(tmp_path: Path, name: str) -> Path:
    root = Path(os.environ.get("ENERGY_FLOWS_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.browser
@pytest.mark.server
@pytest.mark.timeout(240)
def test_tile_starts_the_home_server_and_jupyterlab_stops_it(
    tmp_path: Path, chromium: str, start_kernel: Callable[[Path, str], subprocess.Popen[str]]
) -> None:
    """``make lab`` (base URL ``/``): the tile starts the server; the lessons reuse it."""
    from tools.browser import jupyter_lab, launch_chromium

    started = time.monotonic()
    home = tmp_path / "home"
    root = tmp_path / "lab"
    root.mkdir()
    shots = _shots(tmp_path, "tile-at-root")
    # The course's run and pool, made by a kernel that has ended by the click (its server
    # too), while JupyterLab starts.
    seed = start_kernel(home, SEED)
    with jupyter_lab(root, home=home) as lab, launch_chromium() as browser:
        page, card = _launcher(browser, lab, shots)
        print(f"JupyterLab's Launcher after {time.monotonic() - started:.0f} s")
        _output(seed)
        wait_until(lambda: not _prefect_servers_of(home), 30, what="the seeding server to stop")
        print(f"seeded after {time.monotonic() - started:.0f} s")
        ui, requests, failed = _click(page, card)
        first = wait_until(
            lambda: registry.live_server(home), 120, what="the tile to start the server"
        )
        # Owned like a kernel's server (energy-flows lab stops those), by the tile's process.
        owner = psutil.Process(first.owner_pid).cmdline()
        assert first.owner == "kernel" and "energy_flows.jupyter.ui_tile" in owner, owner
        # A lesson's kernel started now reuses the tile's server (checked below).
        kernel = start_kernel(home, KERNEL)
        # The port is the one the tab lands on: while the tile starts, another program (a
        # test beside this one) may take the port it tried first; the tile then retries on
        # another, and the tab follows it.
        dashboard = _dashboard_url(lab, "*")
        _check_tab(ui, lab, shots / "dashboard.png", ["Flow Runs", "energy-pool"], url=dashboard)
        print(f"dashboard after {time.monotonic() - started:.0f} s")
        rec = registry.live_server(home)
        assert rec is not None and rec.port and rec.owner_pid == first.owner_pid, rec
        assert f"/proxy/absolute/{rec.port}/" in ui.url, (ui.url, rec.port)
        _check_tab(ui, lab, shots / "runs.png", [SEEDED_RUN], link="Runs")
        _assert_through_jupyterlab(lab, rec.port, requests, failed)
        reused = json.loads(_output(kernel).strip().splitlines()[-1])
        assert reused["reused"] and reused["pid"] == rec.pid, reused
        assert reused["ui_url"] == f"/proxy/absolute/{rec.port}/"  # its link works in JupyterLab
        # One server for the home: in its registry and in the process table.
        assert [r.kind for r in registry.live_records(home)] == ["server"]
        assert _prefect_servers_of(home) == [rec.pid]

    # JupyterLab has stopped: the tile's server, and everything else of the home, with it.
    survivors = _wait_gone(home)
    assert not survivors, "still running after JupyterLab stopped:\n" + "\n".join(survivors)
    assert registry.live_server(home) is None
    print(f"tile check at / took {time.monotonic() - started:.0f} s; screenshots in {shots}")


@pytest.mark.browser
@pytest.mark.server
@pytest.mark.timeout(240)
def test_tile_under_a_hub_prefix_reuses_the_kernels_server(
    tmp_path: Path,
    chromium: str,
    monkeypatch: pytest.MonkeyPatch,
    start_kernel: Callable[[Path, str], subprocess.Popen[str]],
) -> None:
    """JupyterHub (``/user/learner/``): the tile reuses the server a kernel started.

    On a hub the server asks for a password (other users share the machine);
    through JupyterLab's proxy its owner sees the UI without typing it.
    """
    from energy_flows.services.server import PrefectServer
    from tools.browser import jupyter_lab, launch_chromium

    started = time.monotonic()
    prefix = "/user/learner/"
    home = tmp_path / "home"
    root = tmp_path / "lab"
    root.mkdir()
    shots = _shots(tmp_path, "tile-under-hub")
    # This test process plays the lesson's kernel that starts the server; a second kernel,
    # reusing it, runs the course's flow and makes its pool, then ends.
    hub = {"JUPYTERHUB_SERVICE_PREFIX": prefix, "JUPYTERHUB_USER": "learner"}
    for name, value in hub.items():
        monkeypatch.setenv(name, value)
    server = PrefectServer(home=home, quiet=True).start()
    try:
        secret = server.auth_string
        assert secret is not None, "on a JupyterHub the server asks for a password by default"
        _output(start_kernel(home, SEED))
        pid, port = server.pid, server.port
        assert port and server.ui_url == f"{prefix}proxy/absolute/{port}/"
        assert status_without_password(f"{server.api_url}/flows/filter") == 401
        with (
            jupyter_lab(root, home=home, base_url=prefix, extra_env=hub) as lab,
            launch_chromium() as browser,
        ):
            ui, requests, failed = _click(*_launcher(browser, lab, shots))
            # The course's run and pool, on the dashboard, the Runs page and the pool's page.
            dashboard = _dashboard_url(lab, port)
            _check_tab(
                ui, lab, shots / "dashboard.png", ["Flow Runs", "energy-pool"], url=dashboard
            )
            _check_tab(ui, lab, shots / "runs.png", [SEEDED_RUN], link="Runs")
            _check_tab(ui, lab, shots / "work-pools.png", ["energy-pool"], link="Work Pools")
            _assert_through_jupyterlab(lab, port, requests, failed)
            # No Login page was shown (the pages above show the data), and the browser
            # never held the password: the proxy sent it.
            assert ui.evaluate("localStorage.getItem('prefect-password')") is None
            assert secret not in ui.content()
            assert [r.kind for r in registry.live_records(home)] == ["server"]
            assert _prefect_servers_of(home) == [pid]
        # JupyterLab and its tile are gone; the kernel's server runs on for its kernel.
        rec = server.record
        assert rec is not None and rec.pid == pid
        wait_until(
            lambda: {p.pid for p in _processes_of(home)} <= {rec.pid, rec.watchdog_pid},
            30,
            what="JupyterLab and the tile to end",
        )
        assert server.pid == pid and server.status() == "running"
    finally:
        server.stop()
    survivors = [s for s in _wait_gone(home) if not s.startswith(f"{os.getpid()}:")]
    assert not survivors, "still running at the end:\n" + "\n".join(survivors)
    print(f"tile check under {prefix} took {time.monotonic() - started:.0f} s; shots in {shots}")
