"""The one wait loop of the package.

Every "wait until X" (a server answering, a worker online, a process gone)
goes through :func:`wait_until`, so they all share a timeout, a polite
polling rhythm and an error that says what was still missing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from energy_flows.errors import WaitTimeout

T = TypeVar("T")


def quiet_by_default() -> bool:
    """True when ``ENERGY_FLOWS_QUIET`` is set (the test suite, benchmarks): no progress lines.

    The lessons never set it: their stored outputs show what a learner sees.
    """
    return os.environ.get("ENERGY_FLOWS_QUIET", "").lower() not in ("", "0", "false", "no")


def say(message: str, quiet: bool = False) -> None:
    """Print one line for the learner, unless quiet."""
    if not (quiet or quiet_by_default()):
        print(message, flush=True)


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    progress: str | None = None,
    interval: float = 0.05,
    max_interval: float = 0.5,
    missing: Callable[[], str] | None = None,
) -> T:
    """Call ``condition()`` until it returns something truthy, and return that.

    ``condition`` may raise (e.g. :class:`~energy_flows.errors.ServiceError`
    when the process it waits for has died) to stop waiting at once.

    Args:
        condition: a cheap check; called again after ``interval`` seconds,
            the interval growing up to ``max_interval``.
        timeout: seconds before giving up with :class:`WaitTimeout`.
        what: what we wait for, e.g. ``"the Prefect server to answer on
            http://127.0.0.1:4200/api/health"``; it goes into the error.
        progress: when given, a line such as ``"Starting the Prefect
            server"`` is printed before waiting and completed with the time it
            took (one short line in a notebook, never a stream of dots).
        missing: optional callable giving extra detail for the error message
            (e.g. the last lines of a log).
    """
    start = time.monotonic()
    show = progress is not None and not quiet_by_default()
    if show:
        print(f"{progress} ...", end="", flush=True)
    try:
        while True:
            result = condition()
            elapsed = time.monotonic() - start
            if result:
                if show:
                    print(f" ready in {elapsed:.1f} s", flush=True)
                return result
            if elapsed >= timeout:
                detail = ""
                if missing is not None:
                    try:
                        detail = "\n" + missing()
                    except Exception as exc:  # the detail must never hide the timeout
                        detail = f"\n(could not collect details: {exc})"
                raise WaitTimeout(f"Gave up after {timeout:g} s waiting for {what}.{detail}")
            time.sleep(min(interval, max(0.0, timeout - elapsed)) or 0.01)
            interval = min(interval * 1.5, max_interval)
    except BaseException:
        if show:
            print(" failed", file=sys.stdout, flush=True)
        raise
