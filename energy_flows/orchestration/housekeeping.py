"""Work that must be done before the package reads a queue or waits on runs.

The classroom services register here what only they know how to do: a
worker that ended (a kernel restart, a SIGKILL) may have left runs Pending
or Running in the server, and those must be marked Crashed before a queue's
counts, a ``diagnose()`` or a wait can be trusted. The orchestration layer
calls :func:`run` first thing in every such function; it knows nothing
about processes, and the services layer stays the only one that does.

Registered tasks must be cheap when there is nothing to do (they run
before every read) and must not raise: a failing task is skipped, never
allowed to break the read that triggered it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

_TASKS: dict[str, Callable[[], object]] = {}


def register(key: str, task: Callable[[], object]) -> None:
    """Run ``task`` before every queue read and wait; a second ``key`` replaces the first."""
    _TASKS[key] = task


def run() -> None:
    """Run every registered task (errors are swallowed: a read must not fail for them)."""
    for task in list(_TASKS.values()):
        with contextlib.suppress(Exception):
            task()
