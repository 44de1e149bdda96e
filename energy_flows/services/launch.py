"""Start Prefect processes fast: no optional ``rfc3987_syntax``, no collector pauses.

Every process the package starts (server, worker, one per flow run) spends
most of its start-up importing Prefect. Two things make that slow for no
benefit, and this launcher removes both:

* ``jsonschema`` imports ``rfc3987_syntax`` when it is installed (JupyterLab's
  dependencies install it) to validate "iri" strings, which Prefect never
  needs. It costs about a second per process. The launcher marks the module
  as absent (``sys.modules[name] = None`` makes ``import`` raise
  ``ImportError``, which jsonschema handles).
* Importing Prefect creates hundreds of thousands of long-lived objects
  (pydantic models, SQLAlchemy tables, FastAPI routes). Python's cyclic
  garbage collector runs again and again while they are created, and every
  full collection afterwards walks all of them again, though none of them is
  garbage. The launcher imports what the process needs with the collector
  paused, then moves those objects to the collector's permanent generation
  (``gc.freeze()``: later collections skip them) and turns the collector back
  on before any server, worker or flow code runs. Measured side by side, a
  server on an existing home answers about 0.7 s sooner
  (``benchmarks/bench_services.py``).

It runs:

* ``python -m energy_flows.services.launch prefect ARGS...``: the ``prefect``
  command (what ``.venv/bin/prefect`` runs), used for the server and workers;
* ``python -m energy_flows.services.launch engine``: ``python -m prefect.engine``,
  the one interpreter a worker starts per flow run.

Each of these processes also ends by itself when its watchdog (its parent)
is killed: nothing would tie it to its notebook any more
(:func:`exit_with_parent`).

A notebook kernel that starts or reuses a server gets the same treatment
through :func:`prepare_kernel` (without the freeze): a lesson's set-up cell
takes about 4 s instead of 8 s.

Only the standard library is imported here before Prefect itself.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import runpy
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable

#: Optional modules kept out of the processes the package starts.
BLOCKED_MODULES = ("rfc3987_syntax",)

#: What each kind of process imports at start, preloaded with the collector paused.
PRELOAD = {
    "server": ("prefect.cli", "prefect.cli._server_utils", "prefect.server.api.server"),
    "worker": ("prefect.cli", "prefect.cli.worker", "prefect.workers.process"),
    "engine": ("prefect.engine",),
    "prefect": ("prefect.cli",),
}


def block_optional_modules() -> None:
    """Make ``import rfc3987_syntax`` fail fast, as if it were not installed."""
    for name in BLOCKED_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def preload(modules: Iterable[str], *, freeze: bool = True) -> None:
    """Import ``modules`` with the cyclic garbage collector paused, then resume it.

    Import creates long-lived objects, not garbage, so the collections it
    would trigger find nothing. Reference counting still frees what it can
    meanwhile. With ``freeze``, ``gc.freeze()`` then tells the collector to
    leave everything alive so far alone in later collections. The collector
    is back on (if it was on) before this returns, for the code that runs next.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name in modules:
            # Only an optimisation: a module another Prefect release lacks is skipped.
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()


#: What a notebook kernel imports from Prefect once it talks to a server.
KERNEL_PRELOAD = ("prefect", "prefect.client.orchestration", "prefect.deployments")


def prepare_kernel() -> None:
    """Import Prefect into this notebook kernel the fast way, if not done yet.

    Called once the kernel is pointed at a server, just before the lesson's
    next cells import Prefect anyway: ``rfc3987_syntax`` stays out and the
    collector pauses during the import (``lesson_setup("04")`` in a fresh
    kernel: 3.8 s instead of 8.1 s). Nothing is
    frozen here: the kernel also holds the learner's own objects, whose
    garbage the collector must keep finding.
    """
    if all(name in sys.modules for name in KERNEL_PRELOAD):
        return
    block_optional_modules()
    preload(KERNEL_PRELOAD, freeze=False)


def exit_with_parent(interval: float = 0.5) -> None:
    """Send ourselves SIGTERM (a graceful stop) once our parent process has gone.

    The watchdog parent stops its child in every normal case; this covers the
    watchdog itself being killed (``kill -9``, the OOM killer), after which
    the orphan would otherwise run on, tied to no kernel. Portable: it watches
    ``os.getppid()``, which changes when the parent dies.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def process_kind(args: list[str]) -> str:
    """``server``, ``worker``, ``engine`` or ``prefect`` (any other command)."""
    if args[:1] == ["engine"]:
        return "engine"
    if args[:3] == ["prefect", "server", "start"]:
        return "server"
    if args[:3] == ["prefect", "worker", "start"]:
        return "worker"
    return "prefect"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] not in (["engine"], ["prefect"]):
        print(
            "usage: python -m energy_flows.services.launch (prefect ARGS... | engine)",
            file=sys.stderr,
        )
        return 2
    exit_with_parent()
    block_optional_modules()
    kind = process_kind(args)
    if kind == "server":
        from energy_flows.services.serverlog import shorten_busy_database_tracebacks

        shorten_busy_database_tracebacks()
    preload(PRELOAD[kind])
    if args[0] == "engine":
        sys.argv = [sys.argv[0], *args[1:]]
        # prefect.engine was preloaded above; runpy warns that it then runs a module
        # already imported, once per flow run in the worker's log. That is the point.
        warnings.filterwarnings(
            "ignore", message="'prefect.engine' found in sys.modules", category=RuntimeWarning
        )
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
        return 0
    from prefect.cli import app

    sys.argv = ["prefect", *args[1:]]
    app()  # Prefect's CLI exits the process itself (SystemExit with its code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
