"""How long a learner waits on each lesson: classroom settings vs Prefect's default timings.

    .venv/bin/python benchmarks/bench_lessons.py [03 04 ...]        # both, side by side
    .venv/bin/python benchmarks/bench_lessons.py --classroom-only     # Run All as learners do

Executes copies of the lessons (the stored notebooks are not touched; the files
their cells write land next to the copies), each in a fresh home, once with the
classroom settings and once with ``ENERGY_FLOWS_PREFECT_DEFAULTS=1`` (Prefect's
own worker polling, heartbeat, late threshold and server services), one lesson
after the other in one run, and prints the seconds and the ratio. A lesson that
does not finish with Prefect's defaults (a wait times out) is reported as
failed, which is itself a finding: the defaults do not fit a lesson's waiting
budget. Run All with the classroom settings must stay under ``--budget``
seconds (40: the lessons' promise on a 2-core machine); the exit code says
whether it did. The machine's load average is printed first: timings on a
machine busy with other work are not the lessons'.
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
    parser.add_argument("lessons", nargs="*", help="lesson numbers (default: all)")
    parser.add_argument(
        "--classroom-only", action="store_true", help="skip the run with Prefect's defaults"
    )
    parser.add_argument(
        "--budget", type=float, default=40.0, help="seconds a Run All may take (default 40)"
    )
    args = parser.parse_args()
    print("load average (1, 5, 15 min):", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(f"{'lesson':<28} {'classroom s':>12} {'defaults s':>11} {'ratio':>6}")
    over = []
    for path in lesson_paths(args.lessons or None):
        ours, ok_ours = run_copy(path, defaults=False)
        mark = lambda ok: "" if ok else " (failed)"  # noqa: E731
        if args.classroom_only:
            plain_text, ratio = "-", "-"
        else:
            plain, ok_plain = run_copy(path, defaults=True)
            plain_text = f"{plain:.1f}{mark(ok_plain)}"
            ratio = f"{ours / plain:.2f}" if ok_ours and ok_plain else "-"
        if not ok_ours or ours > args.budget:
            over.append(path.stem)
        print(
            f"{path.stem:<28} {ours:>12.1f}{mark(ok_ours)} {plain_text:>11} {ratio:>6}",
            flush=True,
        )
    print("load average (1, 5, 15 min):", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    if over:
        print(f"over the {args.budget:.0f} s budget (or failed): {', '.join(over)}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
