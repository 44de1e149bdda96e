"""`energy-flows tour`: the whole 2022 walkthrough, headless, as an instructor runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import package_processes

pytestmark = pytest.mark.server

STEPS = [
    ("prefect orion start", "prefect server start"),
    ("prefect work-queue create energy_usage", "prefect work-queue create energy_usage --pool"),
    ("prefect deployment create orchestration.py", "deploy_energy_flow(interval=...)"),
    ("prefect deployment ls", "list_deployments()"),
    ("prefect work-queue inspect", "queue_status()"),
    ("prefect work-queue preview", "wait_for(until='late')"),
    ("prefect agent start", "prefect worker start --pool energy-pool --work-queue energy_usage"),
    ("prefect flow-run ls", "run_result()"),
    ("Ctrl-C in the agent's and Orion's terminals", "stop_all()"),
]


def test_tour_end_to_end(tmp_path: Path):
    home = tmp_path / "tour-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["ENERGY_FLOWS_HOME"] = str(home)
    env.pop("ENERGY_FLOWS_QUIET", None)
    command = [sys.executable, "-m", "energy_flows.cli", "tour"]
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    took = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\n{out}\n{done.stderr}"

    for prefect2, today in STEPS:
        assert f"Prefect 2 (2022): `{prefect2}" in out, prefect2
        assert today in out, today
    numbers = [int(n) for n in re.findall(r"^\[(\d+)\]", out, flags=re.MULTILINE)]
    assert numbers == list(range(1, len(STEPS) + 1))

    # Scheduled, then Late while nobody polls; the queue stays NOT_READY while we look.
    assert re.search(r"tour-missed-1\s+Scheduled", out)
    assert re.search(r"\d+ Late run\(s\)", out) and re.search(r"tour-missed-1\s+Late", out)
    assert "queue status still NOT_READY: looking at a queue is not polling it" in out
    assert "no worker polls energy_usage" in out
    # The worker drains the queue; completed runs and a result read back.
    assert re.search(r"energy-home-001-2024-01-01\s+Completed", out)
    assert re.search(r"queue status READY: [1-9]\d* Completed, 0 Late, 0 Failed, 0 Crashed", out)
    assert "predicted" in out and "mae_kwh" in out
    assert "energy-report-home-001" in out
    assert "tour finished: this machine is ready." in out

    assert (home / "prefect" / "prefect.db").is_file()
    time.sleep(0.5)
    assert package_processes(tmp_path) == []
    print(out)
    print(f"energy-flows tour took {took:.1f} s")
    # 60 s on an idle 2-core machine; the margin is for a loaded CI runner.
    assert took < 120, out
