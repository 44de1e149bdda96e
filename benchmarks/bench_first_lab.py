"""The first `make lab` on a fresh clone: set-up, then JupyterLab answering.

    .venv/bin/python benchmarks/bench_first_lab.py                  # uv where make finds it
    .venv/bin/python benchmarks/bench_first_lab.py --installer pip  # pip alone, side by side

Clones this checkout into a temporary folder, runs ``make lab`` there (no
browser) and reports how long the set-up took (until ``.venv/.installed``
appears) and how long until JupyterLab answered, then stops it with Ctrl-C.
Each installer runs in a clone of its own; the ratio compares them. Package
caches (pip's, uv's, the migrated database's) are used as they are: run it
once to warm them, as a learner's second clone would find them.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_lab(installer: str, folder: Path, timeout: float = 900) -> tuple[float, float]:
    """Seconds until ``make lab``'s set-up was done, and until JupyterLab answered."""
    clone = folder / f"clone-{installer}"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    port = 18800 if installer == "uv" else 18801
    env = {**os.environ, "ENERGY_FLOWS_HOME": str(folder / f"home-{installer}")}
    env["JUPYTER_TOKEN"] = "bench"
    log = open(folder / f"make-lab-{installer}.log", "wb")
    start = time.monotonic()
    lab = subprocess.Popen(
        ["make", "lab", f"INSTALLER={installer}", f"LAB_ARGS=--no-browser --port {port}"],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    setup = None
    try:
        while time.monotonic() - start < timeout:
            if lab.poll() is not None:
                raise SystemExit(f"make lab ended: {(folder / f'make-lab-{installer}.log')}")
            if setup is None and (clone / ".venv" / ".installed").exists():
                setup = time.monotonic() - start
            try:
                url = f"http://127.0.0.1:{port}/api/status?token=bench"
                urllib.request.urlopen(url, timeout=2).read()
                return setup or 0.0, time.monotonic() - start
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"JupyterLab did not answer within {timeout} s")
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGINT)
            lab.wait(timeout=120)
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--installer", action="append", choices=["uv", "pip"])
    args = parser.parse_args()
    installers = args.installer or ["uv"]
    with tempfile.TemporaryDirectory(prefix="ef-first-lab-") as tmp:
        results = {name: first_lab(name, Path(tmp)) for name in installers}
    print(f"{'installer':10} {'set-up':>8} {'JupyterLab answers':>20}")
    for name, (setup, ready) in results.items():
        print(f"{name:10} {setup:7.1f}s {ready:19.1f}s")
    if {"uv", "pip"} <= results.keys():
        print(f"ratio uv/pip (JupyterLab answers): {results['uv'][1] / results['pip'][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
