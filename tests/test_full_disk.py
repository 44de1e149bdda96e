"""A full disk, for real: the home on a small tmpfs that the test fills.

The scenario (``tests/full_disk/scenario.py``) runs in user and mount namespaces
of its own (``unshare --user --map-root-user --mount``: no root needed), where a
tmpfs is mounted on its home; the rest of the machine never sees that mount.
Where namespaces are not allowed, root's plain ``unshare --mount`` is tried; with
neither, the test is skipped saying which is missing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import package_processes

from energy_flows.waiting import wait_until

pytestmark = pytest.mark.server

TESTS = Path(__file__).parent
#: Big enough for Prefect's database and logs, small enough to fill in a moment.
TMPFS_SIZE = "48m"


def _namespace_command() -> list[str]:
    """How to get a mount namespace here, or a skip that names what is missing."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("util-linux's `unshare` is not installed: the full-disk test needs it")
    for command in ([unshare, "--user", "--map-root-user", "--mount"], [unshare, "--mount"]):
        probe = subprocess.run([*command, "true"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return command
    pytest.skip(
        "neither user namespaces (`unshare --user --map-root-user --mount`) nor root's "
        f"`unshare --mount` are allowed here ({probe.stderr.decode().strip()}): "
        "the full-disk test needs one of them to mount a small tmpfs"
    )


def test_a_full_disk_leaves_no_run_stuck_no_process_and_says_so(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    cache = tmp_path / "cache"  # the template cache stays on a disk with room
    script = (
        f"mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 tmpfs {home} && "
        f"exec {sys.executable} -m full_disk.scenario"
    )
    env = dict(
        os.environ,
        ENERGY_FLOWS_HOME=str(home),
        ENERGY_FLOWS_CACHE=str(cache),
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    )
    done = subprocess.run(
        [*_namespace_command(), "sh", "-c", script],
        env=env,
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-5000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    runs, start = result["runs"], result["start"]

    # trigger(), deploy and a new worker name the full disk, not "busy" or HTTP 500.
    for what in ("trigger", "deploy", "worker"):
        said = runs[what]
        if what == "deploy" and not said["type"]:
            continue  # SQLite found room for it in pages it already had
        assert said["type"] == "DiskFullError", (what, said)
        assert said["message"].startswith("The disk is full: "), (what, said)
        assert f"(the disk mounted at {home}," in said["message"], (what, said)
        assert "ENERGY_FLOWS_HOME" in said["message"] and "too busy" not in said["message"]
    assert "the server answered HTTP 500" in runs["trigger"]["message"]
    assert runs["trigger_seconds"] < 60, "trigger() kept retrying a server whose disk is full"
    # A wait that gives up says why first.
    assert runs["wait"]["type"] == "WaitTimeout" and "The disk is full" in runs["wait"]["message"]

    # Once there is room again, every run is final within half a minute; those of the worker
    # that died of the full disk are Crashed, saying so.
    # The three runs in flight when it filled are final; none is left in flight (runs the
    # worker never took may wait in the queue, Scheduled or Late, for the next worker).
    final = {"Completed", "Failed", "Crashed", "Cancelled"}
    assert all(s in final for s in runs["states"][:3]), json.dumps(runs, indent=1)
    assert all(s in final | {"Scheduled", "Late"} for s in runs["states"]), json.dumps(runs)
    # (runs of a live worker whose process ended unrecorded, or that it set Pending and gave
    # up unstarted: looked for every 5 s, once their state is 10 s old, or 45 s old and 20 s
    # after room was made; Prefect would leave the second kind Pending for ever)
    assert runs["final_after_room_seconds"] < 45, json.dumps(runs, indent=1)
    for message in runs["crash_messages"]:
        if runs["worker_died"]:
            assert "while the disk that holds its home was full" in message, json.dumps(runs)
        else:  # its end, or its start, unrecorded: found without the worker's help; or
            # Prefect's worker itself, which lived, reported its run's process failing (its
            # Running could not be written) once there was room: Prefect's own words
            ours = "the server could not record" in message
            prefects = re.search(r"exited with (non-zero )?status code:? -?\d+\.", message)
            assert ours or prefects, json.dumps(runs, indent=1)

    # A start on a full disk: one clear message, no server left unrecorded.
    assert start["start"]["type"] == "DiskFullError", start
    assert start["start"]["message"].startswith("The disk is full: "), start
    assert result["left"] == []
    assert wait_until(lambda: not package_processes(home), 15, what="no process left")


#: The child of the watchdog below: it fills its disk, lets the watchdog see it full,
#: makes room again and exits at once, as a worker whose last log line did not fit does
#: while a learner frees space.
_DIES_OF_A_FULL_DISK = """
import errno, os, sys, time
filler = os.path.join(sys.argv[1], "filler")
fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
for size in (1 << 20, 4096, 1):
    try:
        while True:
            os.write(fd, b"0" * size)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
time.sleep(1)
os.unlink(filler)
sys.exit(1)
"""
_EXITS = "import sys; sys.exit(1)"
#: The watchdog's on-exit command here: it keeps what it was told, and the watchdog's log
#: (on the tmpfs, gone with the namespace).
_TELL = """
import os, shutil, sys
open(sys.argv[1], "w").write(os.environ.get("ENERGY_FLOWS_DISK_FULL", "?"))
shutil.copy(sys.argv[2], sys.argv[1] + ".log")
"""


@pytest.mark.parametrize(
    ("child", "said"),
    [(_DIES_OF_A_FULL_DISK, "1"), (_EXITS, "0")],
    ids=["dies-of-a-full-disk", "exits-with-room"],
)
def test_the_watchdog_tells_its_on_exit_command_the_disk_was_full_when_its_child_ended(
    tmp_path, child, said
):
    """Judged when the child ends, not when the on-exit command looks (seconds later under
    load; the scenario above once lost the words that way: room had been made meanwhile).
    Its log says when the disk was full: the orphan search reads it (test_recovery.py)."""
    from energy_flows.services.process import WATCHDOG_SCRIPT
    from energy_flows.services.watchdog import DISK_WAS_FULL

    home, told = tmp_path / "home", tmp_path / "told"
    home.mkdir()
    on_exit = [sys.executable, "-c", _TELL, str(told), str(home / "worker.log")]
    watchdog = [sys.executable, "-I", str(WATCHDOG_SCRIPT), "--detached"]
    watchdog += ["--on-exit", json.dumps(on_exit), "--", sys.executable, "-c", child, str(home)]
    script = (
        f"mount -t tmpfs -o size=4m,mode=0700 tmpfs {home} && "
        f"exec {shlex.join(watchdog)} > {home}/worker.log 2>&1"
    )
    done = subprocess.run(
        [*_namespace_command(), "sh", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert told.read_text() == said
    log = (tmp_path / "told.log").read_text()
    spans = [line.split()[-2:] for line in log.splitlines() if DISK_WAS_FULL in line]
    if said == "0":
        assert spans == [], log
    else:  # full from the child's fill until it made room, a second later
        ((full, room),) = spans
        assert 0.9 < float(room) - float(full) < 30, log


def test_the_watchdog_and_the_package_call_the_same_disk_full() -> None:
    """The watchdog runs on the standard library alone (``python -I``): its own constant."""
    from energy_flows.errors import FULL_DISK_BYTES
    from energy_flows.services.watchdog import FULL_BYTES

    assert FULL_BYTES == FULL_DISK_BYTES
