"""How long a learner waits on each lesson: classroom settings vs Prefect's default timings.

    .venv/bin/python benchmarks/bench_lessons.py [03 04 ...]

Executes copies of the lessons (the stored notebooks are not touched), each in a
fresh home, once with the classroom settings and once with
``ENERGY_FLOWS_PREFECT_DEFAULTS=1`` (Prefect's own worker polling, heartbeat,
late threshold and server services), one lesson after the other in one run,
and prints the seconds and the ratio. A lesson that does not finish with
Prefect's defaults (a wait times out) is reported as failed, which is itself a
finding: the defaults do not fit a lesson's waiting budget.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from energy_flows.settings import PREFECT_DEFAULTS_VARIABLE  # noqa: E402
from tools.execute_lessons import execute_lesson, lesson_paths  # noqa: E402


def run_copy(path: Path, defaults: bool) -> tuple[float, bool]:
    """Execute a copy of one lesson; return (seconds, finished without error)."""
    with tempfile.TemporaryDirectory(prefix="ef-bench-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copy(path, copy)
        if defaults:
            os.environ[PREFECT_DEFAULTS_VARIABLE] = "1"
        try:
            run = execute_lesson(copy, timeout=240)
        finally:
            os.environ.pop(PREFECT_DEFAULTS_VARIABLE, None)
    return run.seconds, run.ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "lessons", nargs="*", help="lesson numbers (default: 01-06; 00 starts nothing)"
    )
    args = parser.parse_args()
    print(f"{'lesson':<28} {'classroom s':>12} {'defaults s':>11} {'ratio':>6}")
    paths = lesson_paths(args.lessons or None)
    if not args.lessons:
        paths = [p for p in paths if not p.name.startswith("00")]
    for path in paths:
        ours, ok_ours = run_copy(path, defaults=False)
        plain, ok_plain = run_copy(path, defaults=True)
        ratio = f"{ours / plain:.2f}" if ok_ours and ok_plain else "-"
        mark = lambda ok: "" if ok else " (failed)"  # noqa: E731
        print(
            f"{path.stem:<28} {ours:>12.1f}{mark(ok_ours)} {plain:>11.1f}{mark(ok_plain)} {ratio:>6}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
