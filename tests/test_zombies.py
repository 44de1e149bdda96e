"""Prefect's backstop for runs of workers the package did not start: heartbeats + an automation.

The package marks the runs of its own dead workers Crashed within seconds
(``services/recovery.py``). For any other worker, flow runs send heartbeats
(``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``) and the automation installed by
``ensure_zombie_automation()`` marks a silent run Crashed. The last test
proves it end to end: a real server, a plain ``prefect worker start``, a
real SIGKILL, and the run Crashed by the automation within the bound the
settings promise. It takes about two minutes (the automation waits 90 s).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest

from energy_flows import settings
from energy_flows.errors import OrchestrationError
from energy_flows.orchestration import ensure_zombie_automation, flow_run_command
from energy_flows.orchestration.zombies import CRASH_MESSAGE, _wanted, _within_seconds
from energy_flows.services import api
from energy_flows.services.server import PrefectServer
from energy_flows.waiting import wait_until

pytestmark = pytest.mark.server

#: Beyond heartbeat + within: the server evaluates such automations every 5 s,
#: then its actions service sets the state; a machine busy with other tests adds more.
SLACK_SECONDS = 30

FLOW_SOURCE = textwrap.dedent(
    """
    import time
    from prefect import flow

    @flow
    def nap(seconds: float = 600.0) -> float:
        time.sleep(seconds)
        return seconds
    """
)


# ----------------------------------------------------------------- no server needed


def test_classroom_settings_switch_the_backstop_on(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.PREFECT_DEFAULTS_VARIABLE, raising=False)
    env = settings.prefect_settings(tmp_path)
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(settings.FLOW_HEARTBEAT_SECONDS)
    assert settings.FLOW_HEARTBEAT_SECONDS == 30  # the smallest Prefect accepts
    assert "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED" not in env  # Prefect's default: on
    # Prefect's own timings for the benchmarks keep the heartbeat the automation relies on.
    monkeypatch.setenv(settings.PREFECT_DEFAULTS_VARIABLE, "1")
    assert settings.prefect_settings(tmp_path)["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"


def test_within_leaves_a_live_run_time_to_beat():
    assert _within_seconds(None, 30) == 90  # three missed heartbeats
    assert _within_seconds(dt.timedelta(minutes=2), 30) == 120
    assert _within_seconds(45, 30) == 45
    for bad in (44, 0, -5, float("nan"), True, "90"):
        with pytest.raises(OrchestrationError, match="within"):
            _within_seconds(bad, 30)


# ----------------------------------------------------------------- against a server


def _automations(name: str) -> list:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        return [a for a in c.read_automations_by_name(name) if a.name == name]


def test_ensure_zombie_automation_is_idempotent(prefect_server):
    from prefect import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.schemas.automations import Posture

    name = f"zombies-{uuid.uuid4().hex[:6]}"
    try:
        first = ensure_zombie_automation(name=name)
        assert first.changes == ("created",)
        assert (first.within_seconds, first.heartbeat_seconds, first.enabled) == (90, 30, True)
        again = ensure_zombie_automation(name=name)
        assert again.changes == () and again.id == first.id
        (automation,) = _automations(name)
        trigger, (action,) = automation.trigger, automation.actions
        assert trigger.posture == Posture.Proactive
        assert trigger.within == dt.timedelta(seconds=90)
        assert trigger.after == {"prefect.flow-run.heartbeat"}
        assert "prefect.flow-run.Crashed" in trigger.expect
        assert (action.state, action.message) == (StateType.CRASHED, CRASH_MESSAGE)
        text, html = repr(again), again._repr_html_()
        assert name in text and "90 s" in text and "enabled" in text
        assert "90 s without a heartbeat" in html and "none (already as asked)" in html

        longer = ensure_zombie_automation(within=120, name=name)
        assert longer.changes == ("within 90 s → 120 s",) and longer.id == first.id
        assert _automations(name)[0].trigger.within == dt.timedelta(seconds=120)

        # Two kernels creating it at once, then someone disabling it in the UI.
        with get_client(sync_client=True) as c:
            c.create_automation(_wanted(name, 90))
            c.pause_automation(uuid.UUID(first.id))
        repaired = ensure_zombie_automation(name=name)
        assert "removed 1 duplicate(s)" in repaired.changes
        (left,) = _automations(name)
        assert left.enabled and left.trigger.within == dt.timedelta(seconds=90)
        assert ensure_zombie_automation(name=name).changes == ()

        with pytest.raises(OrchestrationError, match="too short"):
            ensure_zombie_automation(within=10, name=name)
    finally:
        with get_client(sync_client=True) as c:
            for automation in _automations(name):
                c.delete_automation(automation.id)


def _heartbeats(api_url: str, run_id: object) -> int:
    """How many heartbeats of the run the server has stored."""
    body = {
        "filter": {
            "event": {"name": ["prefect.flow-run.heartbeat"]},
            "resource": {"id": [f"prefect.flow-run.{run_id}"]},
        },
        "limit": 1,
    }
    return int(api.call("POST", f"{api_url}/events/filter", body).get("total") or 0)


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kill_tree(proc: subprocess.Popen) -> list[psutil.Process]:
    """SIGKILL the process groups of ``proc`` and of every descendant (e.g. its flow runs)."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    groups = set()
    for p in tree:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(p.pid))
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    for p in tree:
        with contextlib.suppress(psutil.Error):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    psutil.wait_procs(tree, timeout=10)
    return tree


@pytest.mark.timeout(480)
def test_a_run_of_a_killed_outside_worker_ends_crashed(fresh_home, tmp_path):
    from prefect import flow, get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    begin = time.monotonic()
    server = PrefectServer(quiet=True).start()
    automation = ensure_zombie_automation()
    print(f"server up and automation installed after {time.monotonic() - begin:.1f} s")
    bound = settings.FLOW_HEARTBEAT_SECONDS + automation.within_seconds + SLACK_SECONDS
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "nap_flow.py").write_text(FLOW_SOURCE)
    prefect = str(Path(sys.executable).parent / "prefect")
    argv = [prefect, "worker", "start", "--pool", "outside", "--work-queue", "naps"]
    with open(tmp_path / "outside-worker.log", "ab") as log:
        # Not the package's Worker: nothing of the package watches this one.
        worker = subprocess.Popen(
            [*argv, "--type", "process"],
            env=settings.classroom_env(fresh_home, api_url=server.api_url),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def state() -> dict:
        return api.call("GET", f"{server.api_url}/flow_runs/{run.id}")["state"]

    def pool_online() -> bool:
        try:
            found = api.call("POST", f"{server.api_url}/work_pools/outside/workers/filter", {})
        except (OSError, api.ApiError):
            return False
        return any(w.get("status") == "ONLINE" for w in found or [])

    try:
        # Meanwhile (the worker takes seconds to start): its pool, the deployment, the run.
        with contextlib.suppress(ObjectAlreadyExists), get_client(sync_client=True) as c:
            template = ProcessWorker.get_default_base_job_template()
            c.create_work_pool(
                WorkPoolCreate(name="outside", type="process", base_job_template=template)
            )
        flow.from_source(str(tmp_path / "flows"), "nap_flow.py:nap").deploy(
            name="zombie",
            work_pool_name="outside",
            work_queue_name="naps",
            # The run's process starts in one interpreter, not two: seconds sooner on
            # a busy machine. The worker stays Prefect's own, unwatched by the package.
            job_variables={"command": flow_run_command()},
            print_next_steps=False,
            ignore_warnings=True,
        )
        run = run_deployment("nap/zombie", timeout=0)
        wait_until(pool_online, 120, what="the outside worker to come online", max_interval=1)
        print(f"outside worker online after {time.monotonic() - begin:.1f} s")
        wait_until(lambda: state()["type"] == "RUNNING", 120, what="the run to start")
        # Prefect's recipe arms on a run's first heartbeat (sent as it starts):
        # a run killed before that has reached the server is never found.
        wait_until(lambda: _heartbeats(server.api_url, run.id), 60, what="the first heartbeat")
        print(f"run Running, first heartbeat stored after {time.monotonic() - begin:.1f} s")

        tree = _kill_tree(worker)
        killed = time.monotonic()
        assert len(tree) >= 2, "the worker and its flow-run process"
        assert all(_gone(p) for p in tree)
        assert state()["type"] == "RUNNING"  # nothing of the package notices this worker

        final = wait_until(
            lambda: (s := state())["type"] != "RUNNING" and s,
            bound + 30,
            what="the zombie run to leave RUNNING",
            max_interval=1,
        )
        took = time.monotonic() - killed
        print(f"Crashed {took:.1f} s after the kill ({time.monotonic() - begin:.1f} s in all)")
        assert (final["type"], final["message"]) == ("CRASHED", CRASH_MESSAGE)
        assert took <= bound, f"Crashed {took:.0f} s after the kill; promised {bound:g} s"
    finally:
        _kill_tree(worker)


def test_two_equal_triggers_compare_equal_whatever_their_sets_order():
    """The server sends ``expect`` back in another order: that is not a change."""
    from energy_flows.orchestration.zombies import _trigger_key, _wanted

    wanted = _wanted("z", 90).trigger
    events = sorted(wanted.expect)
    for order in (events, events[::-1], events[1:] + events[:1]):
        read_back = wanted.model_copy(update={"expect": set(order)})
        assert _trigger_key(read_back) == _trigger_key(wanted)
    assert _trigger_key(wanted.model_copy(update={"threshold": 2})) != _trigger_key(wanted)
