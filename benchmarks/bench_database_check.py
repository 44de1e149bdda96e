"""What the database check before each server start costs (``pragma quick_check``).

Copies the migrated empty database (the template every new home starts from),
fills Prefect's ``log`` table until the file reaches each size, and times
:func:`energy_flows.services.database.quick_check` on it, three times each.

    .venv/bin/python benchmarks/bench_database_check.py --sizes 4 24 200
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

from energy_flows.services import database

STAMP = "2026-01-01T00:00:00+00:00"


def grow(path: Path, mib: int) -> int:
    """Add log lines (300 characters, as a run's) until ``path`` is ``mib`` MiB; how many."""
    added = 0
    with sqlite3.connect(path) as db:
        while path.stat().st_size < mib * 2**20:
            rows = [
                (str(uuid.uuid4()), "prefect.flow_runs", 20, str(uuid.uuid4()), "x" * 300)
                for _ in range(5000)
            ]
            db.executemany(
                "INSERT INTO log (id, name, level, flow_run_id, message, timestamp, created,"
                f" updated) VALUES (?, ?, ?, ?, ?, '{STAMP}', '{STAMP}', '{STAMP}')",
                rows,
            )
            db.commit()
            added += len(rows)
    return added


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 24, 200], help="MiB")
    args = parser.parse_args()
    template = database.ensure_template()
    assert template is not None, "no template: run `make setup`"
    with tempfile.TemporaryDirectory() as folder:
        for mib in args.sizes:
            path = Path(folder) / f"{mib}.db"
            shutil.copyfile(template, path)
            lines = grow(path, mib)
            times = []
            for _ in range(3):
                started = time.perf_counter()
                assert database.quick_check(path) is None
                times.append(time.perf_counter() - started)
            size = path.stat().st_size / 2**20
            ms = ", ".join(f"{t * 1000:.0f}" for t in times)
            print(f"{size:6.1f} MiB ({lines} log lines): quick_check {ms} ms")
            path.unlink()


if __name__ == "__main__":
    main()
