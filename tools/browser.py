"""Headless Chromium for checks and screenshots, and JupyterLab to point it at.

A development tool (``tools/`` is not installed with the package): the
browser tests (``tests/test_browser.py``) and ``make screenshots``
(:mod:`tools.screenshots`) use it; Playwright comes with the ``test`` extra.

The project never downloads a browser: it drives Debian's ``chromium``
package with Playwright's Python API (``executable_path=...``), so the same
code runs on a laptop, in CI (``.ci/run`` installs the package) and on a
classroom server.

* :func:`chromium_path` finds the browser (``None`` when it is not installed).
* :func:`launch_chromium` is a context manager that yields a Playwright
  ``Browser`` with a fresh profile and no background network traffic.
* :func:`jupyter_lab` starts JupyterLab on a folder, for a browser to open
  (the browser test runs a notebook in it; screenshots of lessons can too).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where Debian's ``chromium`` package puts the browser.
DEFAULT_CHROMIUM = "/usr/bin/chromium"

#: Flags for a quiet, reproducible headless browser (no sync, no updates, no QUIC).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """The Chromium executable to drive, or ``None`` when none is installed.

    ``ENERGY_FLOWS_CHROMIUM`` wins, then ``/usr/bin/chromium``, then
    ``chromium`` on the PATH.
    """
    for candidate in (os.environ.get("ENERGY_FLOWS_CHROMIUM"), DEFAULT_CHROMIUM):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


@contextlib.contextmanager
def launch_chromium(
    *, extra_args: tuple[str, ...] = (), headless: bool = True, **launch_options: Any
) -> Iterator[Any]:
    """Start headless Chromium with a fresh profile; yield a Playwright ``Browser``.

    Example::

        with launch_chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(server.ui_url)
            page.screenshot(path="output/prefect-ui.png")

    The browser and its temporary profile are removed when the block ends,
    also after an error. Raises ``FileNotFoundError`` when Chromium is missing.
    """
    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError(
            "Chromium is not installed. On Debian or Ubuntu: `sudo apt-get install chromium` "
            "(the project drives the system browser; it never downloads one)."
        )
    from playwright.sync_api import sync_playwright

    # Playwright's launch() gives every browser a fresh temporary profile
    # (it refuses --user-data-dir) and removes it on close.
    args = [*CHROMIUM_ARGS, *extra_args]
    if not headless:
        args.remove("--headless")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=args, headless=headless, **launch_options
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass(frozen=True)
class LabInfo:
    """A running JupyterLab: where it is and how to open a notebook in it.

    ``url`` includes the base path (``http://127.0.0.1:8888/user/alice``).
    """

    url: str
    token: str
    port: int
    pid: int
    log_path: Path

    def notebook_url(self, path: str) -> str:
        """The address that opens ``path`` (relative to the root folder) in JupyterLab."""
        return f"{self.url}/lab/tree/{path}?token={self.token}"


@contextlib.contextmanager
def jupyter_lab(
    root_dir: str | os.PathLike[str],
    *,
    home: str | os.PathLike[str] | None = None,
    port: int | None = None,
    log_path: str | os.PathLike[str] | None = None,
    timeout: float = 60,
    expose_app: bool = True,
    base_url: str = "/",
    extra_env: dict[str, str] | None = None,
) -> Iterator[LabInfo]:
    """Run JupyterLab on ``root_dir`` with the classroom environment; stop it afterwards.

    JupyterLab gets its own config, runtime, settings and workspace folders
    under the home (no announcement pop-ups, no state from a learner's own
    Jupyter), a random token, and, with ``expose_app``, ``window.jupyterapp``
    so a browser script can run JupyterLab commands such as
    ``notebook:run-all-cells``. ``base_url`` serves it under a path, as
    JupyterHub does (``/user/<name>/``); ``extra_env`` goes to JupyterLab and
    its kernels (e.g. ``JUPYTERHUB_SERVICE_PREFIX``). It is started by the package's one
    :func:`~energy_flows.services.process.spawn` function and stopped with
    SIGTERM, which makes JupyterLab shut its kernels down.
    """
    from energy_flows.errors import ServiceError
    from energy_flows.lab import lab_command
    from energy_flows.services.process import SpawnOptions, is_alive, spawn, tail
    from energy_flows.settings import classroom_env, ensure_home
    from energy_flows.waiting import wait_until

    home_path = ensure_home(home)
    lab_dir = home_path / "jupyter"
    for sub in ("config", "runtime", "settings", "workspaces"):
        (lab_dir / sub).mkdir(parents=True, exist_ok=True)
    # No news, update or "silence notifications?" toast over the notebook.
    plugin = lab_dir / "settings" / "@jupyterlab" / "apputils-extension"
    plugin.mkdir(parents=True, exist_ok=True)
    (plugin / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false, "doNotDisturbMode": true}'
    )
    if port is None:
        from energy_flows.services.server import free_port

        port = free_port()
    token = secrets.token_hex(16)
    log = Path(log_path) if log_path else home_path / "logs" / f"jupyterlab-{port}.log"
    env = classroom_env(
        home_path,
        extra={
            "JUPYTER_CONFIG_DIR": str(lab_dir / "config"),
            "JUPYTER_RUNTIME_DIR": str(lab_dir / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(lab_dir / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(lab_dir / "workspaces"),
            **(extra_env or {}),
        },
    )
    argv = lab_command(port, Path(root_dir).resolve(), open_browser=False, token=token)
    if expose_app:
        argv.append("--LabApp.expose_app_in_browser=True")
    base = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    argv.append(f"--ServerApp.base_url={base}")
    spawned = spawn(argv, env, log, SpawnOptions(grace=20, cwd=str(root_dir)))
    url = f"http://127.0.0.1:{port}{base.rstrip('/')}"

    def answering() -> bool:
        if not is_alive(spawned.pid, spawned.create_time):
            raise ServiceError(f"JupyterLab stopped while starting:\n{tail(log, 20)}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        wait_until(
            answering,
            timeout,
            what=f"JupyterLab to answer on {url}",
            missing=lambda: tail(log, 20),
        )
        yield LabInfo(url=url, token=token, port=port, pid=spawned.pid, log_path=log)
    finally:
        spawned.stop(timeout=30)
