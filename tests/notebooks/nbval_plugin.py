"""pytest plugin for the notebook tests: every lesson's kernel gets a fresh home.

Loaded with ``-p tests.notebooks.nbval_plugin`` next to ``--nbval`` (see the
Makefile's ``notebooks-test``). nbval starts a notebook's kernel in the
notebook collector's ``setup()``, which pytest calls from the first cell's
``pytest_runtest_setup``. Our hook runs first (``tryfirst``) and points
``ENERGY_FLOWS_HOME`` at a new temporary folder, so the kernel, the server it
starts and everything the lesson creates live there, and runs of earlier
test sessions never leak in. When the notebook's last cell is torn down (and
nbval has stopped its kernel), the hook checks that nothing the lesson
started is still running, then deletes the home.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from energy_flows.lessons import leftover_processes
from tools.execute_lessons import TEMP_HOME_PREFIX, kernel_env

#: The sanitizer the lessons' outputs are compared with (the Makefile's --nbval-sanitize-with).
SANITIZE_CFG = Path(__file__).with_name("sanitize.cfg")


def sanitized(text: str) -> str:
    """``text`` as nbval compares it in the lessons (with :data:`SANITIZE_CFG`)."""
    from nbval.plugin import get_sanitize_patterns

    for pattern, replacement in get_sanitize_patterns(SANITIZE_CFG.read_text()):
        text = re.sub(pattern, replacement, text)
    return text


_SAVED_ENV: dict[str, str | None] = {}
_HOMES: dict[str, Path] = {}
_STARTED: dict[str, float] = {}
_TIMES: list[tuple[str, float]] = []
LESSON_TIME = "lesson_seconds"


#: Lessons whose Run All takes longest, started first (``--dist loadfile`` hands
#: out whole notebooks in collection order): the two test processes then end
#: together, not one of them alone with lesson 07 started last.
LONGEST_LESSONS_FIRST = ("07", "05", "06", "04", "02", "03", "01")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest lessons first; a notebook's cells keep their order (a stable sort)."""

    def rank(item: pytest.Item) -> int:
        lesson = item.path.name[:2]
        order = LONGEST_LESSONS_FIRST
        return order.index(lesson) if lesson in order else len(order)

    items.sort(key=rank)


def _notebook(item: pytest.Item) -> pytest.Collector | None:
    parent = item.parent
    return parent if parent is not None and str(parent.path).endswith(".ipynb") else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    nb = _notebook(item)
    if nb is None or nb.nodeid in _HOMES:
        return
    home = Path(tempfile.mkdtemp(prefix=TEMP_HOME_PREFIX)).resolve()
    _HOMES[nb.nodeid] = home
    _STARTED[nb.nodeid] = time.monotonic()
    env = kernel_env(home)
    # nbval starts the kernel with a copy of os.environ, right after this hook.
    for name in set(env) | set(os.environ):
        if os.environ.get(name) != env.get(name):
            _SAVED_ENV.setdefault(name, os.environ.get(name))
            if env.get(name) is None:
                del os.environ[name]
            else:
                os.environ[name] = env[name]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    yield
    nb = _notebook(item)
    if nb is None or (nextitem is not None and _notebook(nextitem) is nb):
        return
    # pytest has torn the notebook collector down: nbval stopped its kernel,
    # and the kernel's watchdogs stop the server and workers it started.
    home = _HOMES.pop(nb.nodeid, None)
    for name, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _SAVED_ENV.clear()
    if home is None:
        return
    # Carried by the teardown report, so that under pytest-xdist (``make test`` runs the
    # lessons in two processes) the controller can print the table too.
    item.user_properties.append(
        (LESSON_TIME, (nb.path.name, time.monotonic() - _STARTED.pop(nb.nodeid)))
    )
    deadline = time.monotonic() + 20
    left = leftover_processes(home)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = leftover_processes(home)
    for proc in left:
        try:
            proc.kill()
        except Exception:
            pass
    shutil.rmtree(home, ignore_errors=True)
    if left:
        names = ", ".join(" ".join(p.cmdline()[:4]) for p in left if p.is_running()) or "gone"
        pytest.fail(
            f"{nb.path.name} left {len(left)} process(es) running after its kernel ended: {names}",
            pytrace=False,
        )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for key, value in report.user_properties:
        if key == LESSON_TIME:
            _TIMES.append((str(value[0]), float(value[1])))


def pytest_terminal_summary(terminalreporter) -> None:
    if not _TIMES:
        return
    terminalreporter.section("lesson run times (kernel start to kernel end)")
    for name, seconds in sorted(_TIMES):
        terminalreporter.write_line(f"{name:40s} {seconds:6.1f} s")
