"""Shared fixtures: isolated homes, one real Prefect server per session, workers.

* Every test session gets its own ``ENERGY_FLOWS_HOME`` under pytest's temp
  folder, so nothing writes to the repository's ``.energy_flows``.
* ``fresh_home``: a new, empty home for one test (``ENERGY_FLOWS_HOME`` set).
* ``prefect_server``: one real server for the whole session, in its own home;
  the test process's Prefect client points at it (``server.api_url``).
* ``worker_factory``: start workers against that server; all stopped afterwards.
* At the end of the session, any process the package started for a test
  home that is still alive is killed and reported as an error: tests must
  leave nothing behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

#: Command-line markers of the processes this package starts.
PACKAGE_PROCESS_MARKERS = ("energy_flows/services/watchdog.py", "energy_flows.services.launch")


def package_processes(root: Path) -> list[psutil.Process]:
    """Live processes started by the package whose home lies under ``root``."""
    found = []
    root_text = str(root)
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if not any(marker in cmdline for marker in PACKAGE_PROCESS_MARKERS):
                continue
            home = proc.environ().get("ENERGY_FLOWS_HOME", "")
            if home.startswith(root_text):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


#: The longest tests (``--durations``, 2 cores), started first: with two test processes
#: (``make unit`` runs pytest-xdist) the run then ends when the short ones run out, not
#: minutes after, with one process left waiting for a long test that started last.
LONGEST_FIRST = (
    "tests/test_journey.py",
    "tests/test_walkthrough.py::test_the_walkthrough_typed_into_jupyterlab_terminals",
    "tests/test_recovery.py::test_starting_the_instant_the_previous_owner_exits_works_every_time",
    "tests/test_zombies.py::test_a_run_of_a_killed_outside_worker_ends_crashed",
    "tests/test_screenshots.py",
    "tests/test_prefect_defaults.py",
    "tests/test_install_routes.py::test_the_lowest_prefect_installs_as_declared_with_plain_pip",
    "tests/test_kernel_lifecycle.py::test_restart_with_runs_in_flight_leaves_no_zombie",
    "tests/test_binder.py",
    "tests/test_full_disk.py",
    "tests/test_open_tabs.py",
    "tests/test_walkthrough.py::test_a_worker_before_its_pool",
    "tests/test_ui_tile.py",
    "tests/test_browser.py",
    "tests/test_lab.py",
    "tests/test_postgres.py",
)


def _rank(item: pytest.Item) -> int:
    for rank, prefix in enumerate(LONGEST_FIRST):
        if item.nodeid.startswith(prefix):
            return rank
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest tests first (a stable sort: the rest keep their order)."""
    items.sort(key=_rank)


@pytest.fixture(scope="session")
def test_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder under which every home of this test session lives."""
    return tmp_path_factory.getbasetemp()


@pytest.fixture(scope="session", autouse=True)
def _session_home_and_leak_check(test_root: Path) -> Iterator[None]:
    home = test_root / "session-home"
    old = {k: os.environ.get(k) for k in ("ENERGY_FLOWS_HOME", "ENERGY_FLOWS_QUIET")}
    os.environ["ENERGY_FLOWS_HOME"] = str(home)
    os.environ["ENERGY_FLOWS_QUIET"] = "1"
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    leaks = package_processes(test_root)
    if leaks:
        described = [f"{p.pid}: {' '.join(p.cmdline())[:160]}" for p in leaks]
        for proc in leaks:
            try:
                proc.kill()
            except psutil.Error:
                pass
        pytest.fail(
            "Processes started by energy-flows survived the test session (now killed):\n"
            + "\n".join(described),
            pytrace=False,
        )


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A new, empty home folder for one test; ``ENERGY_FLOWS_HOME`` points at it.

    Whatever the test started for it is stopped afterwards.
    """
    home = tmp_path / "home"
    monkeypatch.setenv("ENERGY_FLOWS_HOME", str(home))
    yield home
    if (home / "state").is_dir():
        from energy_flows.services.control import stop_all

        stop_all(home, quiet=True)


@contextlib.contextmanager
def prefect_settings_kept() -> Iterator[None]:
    """Put this process's Prefect variables and settings back as they were, afterwards.

    Starting a server points the process's Prefect client at it (as it must in
    a kernel). In the test process that would leave every later test talking
    to a server that has since stopped. A fixture of module scope that starts
    a server must use this itself: it is set up before the autouse fixture
    below takes its copy.
    """
    saved = {k: v for k, v in os.environ.items() if k.startswith(_RESTORED_PREFIXES)}
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith(_RESTORED_PREFIXES)]:
            if key not in saved:
                del os.environ[key]
        os.environ.update(saved)
        _refresh_prefect_settings()


@pytest.fixture(autouse=True)
def _restore_prefect_settings() -> Iterator[None]:
    """Undo what a test's ``PrefectServer().start()`` did to this process's settings."""
    with prefect_settings_kept():
        yield


_RESTORED_PREFIXES = ("PREFECT_", "ENERGY_FLOWS_", "DO_NOT_TRACK", "NO_COLOR")


def _refresh_prefect_settings() -> None:
    import sys

    if "prefect.context" in sys.modules:
        import prefect.context

        prefect.context.refresh_global_settings_context()


@pytest.fixture(scope="session")
def prefect_server(test_root: Path) -> Iterator[Any]:
    """One real Prefect server for the session, in its own home.

    Yields the :class:`~energy_flows.services.server.PrefectServer`; this test
    process's Prefect settings point at it (``PREFECT_API_URL`` =
    ``server.api_url``). Stopped, with its workers, at the end of the session.
    """
    from energy_flows.services.server import PrefectServer

    server = PrefectServer(home=test_root / "server-home", quiet=True).start()
    try:
        yield server
    finally:
        _drain_prefect_senders()
        server.stop()


def _drain_prefect_senders() -> None:
    """Send the run logs and events still queued in this process, while the server is up.

    Prefect ships them from background threads; left queued, they retry
    against a stopped server at exit and add about a minute to the session.
    """
    from energy_flows.prefect_internals import flush_to_server

    flush_to_server()


@pytest.fixture
def worker_factory(prefect_server: Any) -> Iterator[Callable[..., Any]]:
    """Start workers against ``prefect_server``: ``worker_factory(pool=..., queues=[...])``.

    Takes the arguments of :class:`~energy_flows.services.worker.Worker`
    (``home`` is the server's). Every worker started is stopped afterwards.
    """
    from energy_flows.services.worker import Worker

    started: list[Any] = []

    def make(pool: str = "test-pool", queues: Any = ("test-queue",), **kwargs: Any) -> Any:
        kwargs.setdefault("quiet", True)
        worker = Worker(pool=pool, queues=queues, home=prefect_server.home, **kwargs).start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


@pytest.fixture
def chromium() -> str:
    """Debian's chromium, or a skip that says why (a failure where CI requires the browser).

    ``.ci/run`` sets ``ENERGY_FLOWS_REQUIRE_BROWSER=1`` and installs chromium:
    there a missing browser must fail the run, never hide behind a skip.
    """
    from tools.browser import chromium_path

    path = chromium_path()
    if path is not None:
        return path
    reason = (
        "Debian's chromium is not installed (/usr/bin/chromium): "
        "`sudo apt-get install chromium` to run the browser tests."
    )
    if os.environ.get("ENERGY_FLOWS_REQUIRE_BROWSER", "") not in ("", "0"):
        pytest.fail(reason + " ENERGY_FLOWS_REQUIRE_BROWSER is set: this must not be skipped.")
    print(f"SKIP: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def started_kernel(folder: Path) -> Iterator[tuple[Any, Any, Path]]:
    """A real ipykernel, as JupyterLab starts one, with its own ENERGY_FLOWS_HOME in ``folder``.

    Yields ``(manager, client, home)``; afterwards the kernel is shut down (if a
    test has not done so) and whatever it started in that home is stopped.
    """
    import jupyter_client

    from energy_flows.services import control

    home = folder / "home"
    env = dict(os.environ, ENERGY_FLOWS_HOME=str(home), ENERGY_FLOWS_QUIET="1")
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel(env=env, cwd=str(folder))
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    try:
        yield manager, client, home
    finally:
        client.stop_channels()
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
        control.stop_all(home, quiet=True)


def status_without_password(url: str) -> int:
    """The HTTP status of a POST to ``url`` that carries no password (what another user can send)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
