"""A real browser check: JupyterLab in headless Chromium runs a notebook with a QueueMonitor.

What a learner would see, checked on the rendered page:

1. the notebook starts a server, deploys the flow and creates a run that
   nobody takes; the live monitor shows the queue ``energy_usage`` with a
   Late count of at least 1;
2. the notebook starts a worker; the monitor, refreshing in the background,
   shows it online;
3. JupyterLab is shut down (SIGTERM): its kernel ends, and with it every
   process the notebook started (the watchdogs stop server and worker).

Screenshots go to ``$ENERGY_FLOWS_SCREENSHOT_DIR`` (default: the test's temp
folder). Skipped only when Debian's chromium is not installed, unless
``ENERGY_FLOWS_REQUIRE_BROWSER=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from energy_flows.errors import WaitTimeout
from energy_flows.waiting import wait_until
from tools.browser import jupyter_lab, launch_chromium

NOTEBOOK = Path(__file__).with_name("browser_notebooks") / "monitor.ipynb"

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.timeout(240)]

#: JavaScript: the numbers and names the live monitor shows (null until it is rendered).
READ_MONITOR = """() => {
  const view = document.querySelector('.energy-flows-queue-monitor .energy-flows-monitor');
  if (!view) return null;
  const table = view.querySelector('table');
  const head = [...table.querySelectorAll('tr:first-child th')].map(th => th.textContent.trim());
  const rows = [...table.querySelectorAll('tr')].slice(1).map(
    tr => [...tr.querySelectorAll('td')].map(td => td.textContent.trim()));
  const queues = rows.filter(r => r.length === head.length).map(
    r => Object.fromEntries(head.map((h, i) => [h, r[i]])));
  return {queues, text: view.innerText};
}"""

#: JavaScript: run the notebook's cells from ``start`` (inclusive) to ``stop`` (exclusive).
RUN_CELLS = """([start, stop]) => {
  const notebook = window.jupyterapp.shell.currentWidget.content;
  notebook.activeCellIndex = start;
  notebook.deselectAll();
  notebook.extendContiguousSelectionTo(stop - 1);
  window.jupyterapp.commands.execute('notebook:run-cell');  // runs the selected cells
  return notebook.widgets.slice(start, stop).length;
}"""

KERNEL_IDLE = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  const ctx = panel && panel.sessionContext;
  const kernel = ctx && ctx.session && ctx.session.kernel;
  return Boolean(kernel && kernel.status === 'idle' && panel.content.widgets.length >= 5);
}"""


def _processes_of(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("ENERGY_FLOWS_HOME", "").startswith(str(home)):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _late_count(monitor: dict | None, queue: str) -> int:
    for row in (monitor or {}).get("queues", []):
        if row.get("queue") == queue:
            return int(row.get("Late", "0").lstrip("≥") or 0)
    return 0


def _run_notebook(page: Any, lab: Any, shots: Path) -> None:
    """Open the notebook, run it in two steps, and check what the live monitor shows."""
    page.set_default_timeout(60_000)
    page.goto(lab.notebook_url("monitor.ipynb"))
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)

    # Step 1: set up, show the monitor, wait for the Late run (cells 1-3).
    page.evaluate(RUN_CELLS, [1, 4])
    page.wait_for_function(
        f"() => {{ const m = ({READ_MONITOR})(); if (!m) return false;"
        " const q = m.queues.find(r => r.queue === 'energy_usage');"
        " return Boolean(q && parseInt(q.Late || '0') >= 1); }",
        timeout=150_000,
    )
    monitor = page.evaluate(READ_MONITOR)
    assert _late_count(monitor, "energy_usage") >= 1, monitor
    assert "Work pool energy-pool" in monitor["text"]
    assert "live, every 1 s" in page.inner_text(".energy-flows-queue-monitor")
    page.screenshot(path=str(shots / "queue-monitor-late.png"))
    page.locator(".energy-flows-queue-monitor").screenshot(
        path=str(shots / "queue-monitor-late-widget.png")
    )

    # Step 2: start a worker (cell 4): the live monitor shows it.
    page.evaluate(RUN_CELLS, [4, 5])
    worker = "energy-pool-energy_usage"
    page.wait_for_function(
        f"() => {{ const m = ({READ_MONITOR})();"
        f" return Boolean(m && m.text.includes('Workers online: 1')"
        f" && m.text.includes({worker!r})); }}",
        timeout=90_000,
    )
    monitor = page.evaluate(READ_MONITOR)
    assert worker in monitor["text"] and "ONLINE" in monitor["text"]
    page.screenshot(path=str(shots / "queue-monitor-worker.png"))
    page.locator(".energy-flows-queue-monitor").screenshot(
        path=str(shots / "queue-monitor-worker-widget.png")
    )

    # Step 3: the run completes, the kernel goes idle, and the monitor still refreshes.
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    outputs = page.inner_text(".jp-Notebook")
    assert "'Completed'" in outputs, outputs[-2000:]
    before = page.evaluate(READ_MONITOR)["text"]
    page.wait_for_function(
        f"() => {{ const m = ({READ_MONITOR})(); return Boolean(m && m.text !== {before!r}"
        " && m.text.includes('Completed')); }",
        timeout=30_000,
    )


def test_queue_monitor_in_jupyterlab(tmp_path: Path, chromium: str) -> None:
    started = time.monotonic()
    shots = Path(os.environ.get("ENERGY_FLOWS_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / "monitor.ipynb")
    home = tmp_path / "home"

    with jupyter_lab(root, home=home) as lab, launch_chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            _run_notebook(page, lab, shots)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            notebook = (
                page.inner_text(".jp-Notebook") if page.query_selector(".jp-Notebook") else ""
            )
            print(f"--- page text at failure (screenshot {shots / 'failure.png'}):\n{notebook}")
            print(f"--- JupyterLab log:\n{lab.log_path.read_text()[-3000:]}")
            raise
        page.close()

    # JupyterLab is gone; its kernel, and the server and worker that kernel started, must follow.
    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not _processes_of(home), 30, what="the notebook's processes to end")
    survivors = _processes_of(home)
    described = [f"{p.pid}: {' '.join(p.cmdline())[:150]}" for p in survivors]
    for proc in survivors:
        try:
            proc.kill()
        except psutil.Error:
            pass
    assert not described, "processes of the notebook survived JupyterLab:\n" + "\n".join(described)
    print(f"browser check took {time.monotonic() - started:.0f} s; screenshots in {shots}")
    assert (shots / "queue-monitor-late.png").stat().st_size > 10_000


def test_prefect_ui_through_jupyter_server_proxy(
    tmp_path: Path, chromium: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under JupyterHub, the notebook's UI link works through jupyter-server-proxy.

    JupyterLab runs under ``/user/learner/`` like a hub's single-user server,
    with the real jupyter-server-proxy extension. A server started with
    ``JUPYTERHUB_SERVICE_PREFIX`` set gives a ``ui_url`` under
    ``/proxy/absolute/<port>/``; opened from JupyterLab's address, the UI
    must show the pool, and every request it makes (pages, scripts, API
    calls) must go through JupyterLab, never straight to the Prefect port.
    """
    from energy_flows.services import api
    from energy_flows.services.server import PrefectServer

    prefix = "/user/learner/"
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", prefix)
    root = tmp_path / "lab"
    root.mkdir()
    server = PrefectServer(home=tmp_path / "home", quiet=True).start()
    # Read while it runs: a stopped server has no address.
    ui_url = server.ui_url
    try:
        assert ui_url == f"{prefix}proxy/absolute/{server.port}/"
        api.call("POST", f"{server.api_url}/work_pools/", {"name": "hub-pool", "type": "process"})
        with (
            jupyter_lab(
                root,
                home=tmp_path / "lab-home",
                base_url=prefix,
                extra_env={"JUPYTERHUB_SERVICE_PREFIX": prefix},
            ) as lab,
            launch_chromium() as browser,
        ):
            origin = f"http://127.0.0.1:{lab.port}"
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            requests: list[str] = []
            failed: list[tuple[int, str]] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on(
                "response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None
            )
            page.goto(f"{origin}{ui_url}work-pools?token={lab.token}")
            page.wait_for_selector("text=hub-pool", timeout=60_000)
            page.screenshot(path=str(tmp_path / "ui-through-proxy.png"))
    finally:
        server.stop()
    api_calls = [u for u in requests if f"{ui_url}api/" in u]
    assert api_calls, requests
    assert all(u.startswith(origin + ui_url) for u in requests if u.startswith("http")), [
        u for u in requests if not u.startswith(origin)
    ]
    assert not failed, failed
