"""Kernel > Restart Kernel and Run All Cells, many times in a row, in one home.

What a learner does when a lesson misbehaves: restart and run everything
again. Each lesson gets one kernel; after each Run All the kernel is
restarted (killing whatever the lesson left running: the server, workers,
runs in flight) and every cell runs again. All lessons share one home, in
order, as on a learner's machine. Afterwards no run may be left Pending or
Running and nothing the package started may be left alive.

    .venv/bin/python -m tools.stress_restart --times 20            # every lesson
    .venv/bin/python -m tools.stress_restart --times 20 01 05      # some lessons

Prints one line per Run All and a table at the end; exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbclient.util import run_sync

from energy_flows.errors import WaitTimeout
from energy_flows.lessons import leftover_processes
from energy_flows.waiting import wait_until
from tools.execute_lessons import kernel_env, lesson_paths


@dataclass
class Tally:
    """The Run Alls of one lesson: how long each took, and what failed."""

    lesson: str
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def runs_not_final(home: Path) -> list[str]:
    """Runs of the home's database that are still Pending, Running or Cancelling."""
    db = home / "prefect" / "prefect.db"
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT name, state_name FROM flow_run WHERE state_type IN "
            "('PENDING', 'RUNNING', 'CANCELLING')"
        ).fetchall()
    return [f"{name} ({state})" for name, state in rows]


def _run_all(client: NotebookClient, nb: nbformat.NotebookNode) -> str | None:
    """Run every code cell in order; the first error, in one line, or None."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        try:
            client.execute_cell(cell, index)
        except CellExecutionError as exc:
            last = str(exc).strip().splitlines()[-1:] or ["?"]
            return f"cell {index}: {last[0][:200]}"
    return None


def stress_lesson(path: Path, home: Path, times: int) -> Tally:
    """Run All, then Restart Kernel and Run All ``times - 1`` more times, in one kernel."""
    tally = Tally(path.stem)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    with client.setup_kernel(env=kernel_env(home)):
        for attempt in range(1, times + 1):
            if attempt > 1:
                run_sync(client.km.restart_kernel)(now=False)
                run_sync(client.kc.wait_for_ready)(timeout=60)
            fresh = nbformat.read(path, as_version=4)
            nb.cells[:] = fresh.cells
            started = time.monotonic()
            error = _run_all(client, nb)
            tally.seconds.append(time.monotonic() - started)
            mark = "ok" if error is None else f"FAILED {error}"
            print(f"{path.stem} #{attempt}: {tally.seconds[-1]:.1f} s {mark}", flush=True)
            if error is not None:
                tally.failures.append(f"#{attempt} {error}")
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers, e.g. 01 05 (default: all)")
    parser.add_argument("--times", type=int, default=20, help="Run Alls per lesson (default 20)")
    parser.add_argument("--home", type=Path, default=None, help="the home (default: a new one)")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="ef-stress-")) / "home"
    paths = lesson_paths(args.lessons or None)
    tallies = [stress_lesson(path, home, args.times) for path in paths]
    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not leftover_processes(home), 30, what="the last processes to end")
    left = [f"{p.pid} {' '.join(p.cmdline())[:80]}" for p in leftover_processes(home)]
    stuck = runs_not_final(home)
    print(f"\n{'lesson':<28} {'ok':>7} {'median':>8} {'max':>8}")
    for t in tallies:
        ok = len(t.seconds) - len(t.failures)
        print(
            f"{t.lesson:<28} {ok:>3}/{len(t.seconds):<3} "
            f"{statistics.median(t.seconds):>7.1f}s {max(t.seconds):>7.1f}s"
        )
        for failure in t.failures:
            print(f"    {failure}")
    print(f"home: {home}")
    print(f"runs not final: {stuck or 'none'}")
    print(f"processes left running: {left or 'none'}")
    return 0 if not any(t.failures for t in tallies) and not stuck and not left else 1


if __name__ == "__main__":
    sys.exit(main())
