"""Start Prefect's processes fast: ``python -m energy_flows.services.launch prefect ARGS...``.

``... launch engine`` runs one flow run; :func:`prepare_kernel` imports Prefect
into a kernel the same way. How and why: docs/architecture.md.
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
    """Import ``modules`` with the cyclic garbage collector paused (and on again after, if it
    was); with ``freeze``, ``gc.freeze()`` leaves everything alive so far out of later
    collections."""
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
    """Import Prefect into this notebook kernel the fast way, if not done yet (its next cells
    would import it anyway). Nothing is frozen here: the kernel also holds the learner's
    own objects, whose garbage the collector must keep finding."""
    if all(name in sys.modules for name in KERNEL_PRELOAD):
        return
    block_optional_modules()
    preload(KERNEL_PRELOAD, freeze=False)


def exit_with_parent(interval: float = 0.5) -> None:
    """Send ourselves SIGTERM (a graceful stop) once our parent process has gone: a watchdog
    killed itself (``kill -9``, out of memory) would leave its child tied to no kernel."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def prefect_argv(*args: str) -> list[str]:
    """The command that runs ``prefect ARGS`` through this launcher (this environment's Python)."""
    return [sys.executable, "-m", "energy_flows.services.launch", "prefect", *args]


def process_kind(args: list[str]) -> str:
    """``server``, ``worker``, ``engine`` or ``prefect`` (any other command)."""
    if args[:1] == ["engine"]:
        return "engine"
    if args[:3] in (["prefect", "server", "start"], ["prefect", "worker", "start"]):
        return args[1]
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
        # prefect.engine was preloaded on purpose: no runpy warning per run in the log.
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
