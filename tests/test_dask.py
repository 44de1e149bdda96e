"""The batch flow on a real Dask cluster of processes (``services/cluster.py``).

Real Prefect (the session's server) and real ``distributed``: a LocalCluster
of two worker processes per flow run. What is checked:

* the batch on Dask gives the same rows as on Prefect's default task runner;
* the dashboard link answers HTTP 200 while the cluster runs, here and under a
  JupyterHub prefix, and every socket of the cluster listens on 127.0.0.1;
* after a completed run, a failed run and a KeyboardInterrupt, none of the
  cluster's processes is left and its ports are closed;
* bad settings are refused before anything starts.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import psutil
import pytest

from energy_flows.errors import DataError
from energy_flows.services.cluster import dashboard_link_for, dashboard_links, dask_runner

#: A short batch: four meters, the fewest days the flow accepts with 28 test days.
BATCH = {"n_meters": 4, "days": 49, "test_days": 28}


def _children() -> dict[int, str]:
    """This process's descendants: pid -> command line."""
    found = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            found[proc.pid] = " ".join(proc.cmdline())
        except psutil.Error:
            continue
    return found


def _is_python_helper(cmdline: str) -> bool:
    # multiprocessing's resource tracker: one per process, shared, ends with it.
    return "multiprocessing.resource_tracker" in cmdline


class ClusterWatch:
    """Watches a Dask run from a thread: its processes, sockets and dashboard."""

    def __init__(self) -> None:
        self.before = set(_children())
        self.workers: dict[int, str] = {}
        self.listening: set[tuple[str, int]] = set()
        self.dashboard: dict[str, int | str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ClusterWatch:
        self._thread.start()
        return self

    def __exit__(self, *args: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, cmdline in _children().items():
                if pid not in self.before and not _is_python_helper(cmdline):
                    self.workers[pid] = cmdline
            for proc in [psutil.Process(), *(_alive(pid) for pid in self.workers)]:
                self._sockets(proc)
            links = dashboard_links(local=True)
            if links and links[0] not in self.dashboard:
                try:
                    with urllib.request.urlopen(links[0], timeout=10) as answer:
                        self.dashboard[links[0]] = answer.status
                except OSError as exc:
                    self.dashboard[links[0]] = repr(exc)
            time.sleep(0.1)

    def _sockets(self, proc: psutil.Process | None) -> None:
        try:
            for conn in proc.net_connections(kind="inet") if proc else []:
                if conn.status == psutil.CONN_LISTEN:
                    self.listening.add((conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            pass

    def left_behind(self, timeout: float = 15.0) -> list[str]:
        """The cluster's processes still alive after ``timeout`` seconds."""
        procs = [p for p in (_alive(pid) for pid in self.workers) if p is not None]
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        return [f"{p.pid}: {self.workers[p.pid][:120]}" for p in alive]


def _alive(pid: int) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
        return proc if proc.status() != psutil.STATUS_ZOMBIE else None
    except psutil.Error:
        return None


def _still_listening(ports: set[int]) -> set[int]:
    mine = psutil.Process().net_connections(kind="inet")
    return {c.laddr.port for c in mine if c.status == psutil.CONN_LISTEN} & ports


@pytest.fixture
def on_dask(prefect_server: Any) -> Iterator[Callable[..., Any]]:
    """The batch flow on a two-worker Dask runner; nothing of Dask may be left after."""
    from energy_flows.flows import energy_usage_batch

    yield energy_usage_batch.with_options(task_runner=dask_runner(n_workers=2))
    assert dashboard_links() == []


# --------------------------------------------------------------------------
# Without a cluster


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"n_workers": 0}, "n_workers is the number of Dask worker processes"),
        ({"n_workers": -1}, "from 1 to 16; got -1"),
        ({"n_workers": 2.5}, "got 2.5"),
        ({"n_workers": True}, "got True"),
        ({"n_workers": 100}, "from 1 to 16; got 100"),
        ({"memory_limit": "lots"}, "memory_limit is the memory of one Dask worker"),
        ({"memory_limit": "10MiB"}, "too small"),
    ],
)
def test_bad_settings_are_refused_before_anything_starts(
    settings: dict[str, Any], says: str
) -> None:
    before = set(_children())
    with pytest.raises(DataError, match=says):
        dask_runner(**settings)
    assert set(_children()) <= before


def test_dashboard_link_here_and_behind_jupyterhub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    assert dashboard_link_for(8787) == (
        "http://127.0.0.1:8787/status",
        "http://127.0.0.1:8787/status",
        None,
    )
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    monkeypatch.setenv("JUPYTERHUB_PUBLIC_URL", "https://hub.example.org/")
    prefix = "/user/alice/proxy/absolute/8787"
    assert dashboard_link_for(8787) == (
        f"https://hub.example.org{prefix}/status",
        f"http://127.0.0.1:8787{prefix}/status",
        prefix,
    )


def test_each_run_gets_its_own_runner_with_the_same_settings() -> None:
    runner = dask_runner(n_workers=3, memory_limit="512MiB")
    copy = runner.duplicate()
    assert copy is not runner and copy == runner
    assert (copy.n_workers, copy.memory_limit) == (3, "512MiB")
    assert copy.cluster_kwargs["processes"] is True
    assert copy.cluster_kwargs["host"] == "127.0.0.1"
    assert copy.dashboard_link is None  # only while a run is on


# --------------------------------------------------------------------------
# A real cluster


def test_batch_on_dask_gives_the_same_rows_and_leaves_nothing(
    on_dask: Callable[..., Any],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from energy_flows.flows import energy_usage_batch

    with caplog.at_level(logging.INFO), ClusterWatch() as watch:
        summary = on_dask(**BATCH)
    # What a notebook shows of it: the flow's own lines, not the workers' (child
    # processes inherit the kernel's stderr: capfd reads that file descriptor)
    # nor the cluster's INFO chatter (the in-process scheduler and nannies).
    printed = capfd.readouterr().err
    assert "Task run 'pipeline-home-001'" not in printed, printed
    assert any("tasks run on a Dask cluster" in r.getMessage() for r in caplog.records)
    for name in ("distributed.scheduler", "distributed.nanny", "distributed.core"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
    assert len(watch.workers) >= 2, f"no Dask worker processes seen: {watch.workers}"
    assert watch.left_behind() == []
    ports = {port for _, port in watch.listening}
    assert _still_listening(ports) == set()

    link = summary.attrs["dashboard_link"]
    assert summary.attrs["task_runner"] == "ClassroomDaskRunner"
    assert link.startswith("http://127.0.0.1:") and link.endswith("/status")
    assert watch.dashboard == {link: 200}, "the dashboard did not answer while the run was on"
    assert {ip for ip, _ in watch.listening} == {"127.0.0.1"}

    threads = energy_usage_batch(**BATCH)
    assert threads.attrs["task_runner"] == "ThreadPoolTaskRunner"
    assert threads.attrs.get("dashboard_link") is None and threads.attrs.get("dask_workers") is None
    assert threads.attrs["task_processes"] == [
        threads.attrs["flow_process"]
    ]  # threads: one process
    assert threads.attrs["flow_process"] not in summary.attrs["task_processes"]
    assert summary.attrs["dask_workers"] == 2
    assert summary.attrs["flow_run_id"] != threads.attrs["flow_run_id"]
    pd.testing.assert_frame_equal(summary, threads, check_like=True)

    # Lesson 07's self-check judges these very tables, by what they are and where they ran.
    from energy_flows.exercises import check_dask_batch

    good = check_dask_batch(summary, meters=4, dask_workers=2)
    assert good.ok, good
    assert "Completed on the server" in repr(good)
    on_threads = check_dask_batch(threads, meters=4, dask_workers=2)
    assert not on_threads.ok and "ran on ThreadPoolTaskRunner" in repr(on_threads), on_threads
    other = check_dask_batch(summary, meters=6, dask_workers=3)
    assert "has 4 row(s)" in repr(other) and "on 2 worker process(es)" in repr(other), other
    assert "still None" in repr(check_dask_batch(None))
    assert "is a dict" in repr(check_dask_batch({"meters": 6}))


def test_lesson_07s_check_accepts_prefects_own_dask_task_runner(prefect_server: Any) -> None:
    """Lesson 07's exercise solved with prefect-dask's DaskTaskRunner, as its solution does."""
    from prefect_dask import DaskTaskRunner

    from energy_flows.exercises import check_dask_batch
    from energy_flows.flows import energy_usage_batch

    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1})
    with ClusterWatch() as watch:
        scaled = energy_usage_batch.with_options(task_runner=runner)(**BATCH)
    assert watch.left_behind() == []
    right = check_dask_batch(scaled, meters=4, dask_workers=2)
    assert right.ok, right
    assert "a Dask cluster of 2 worker processes" in repr(right)
    wrong = check_dask_batch(scaled, meters=4, dask_workers=3)
    assert not wrong.ok and "on 2 worker process(es)" in repr(wrong), wrong


def test_failed_run_closes_its_cluster(on_dask: Callable[..., Any]) -> None:
    with ClusterWatch() as watch:
        # The cluster starts with the run; then the flow's first line refuses 10 days.
        state = on_dask.with_options(task_runner=dask_runner(n_workers=1))(
            n_meters=2, days=10, return_state=True
        )
    assert state.is_failed()
    with pytest.raises(DataError, match="days=10 is too short"):
        state.result()
    assert len(watch.workers) >= 1
    assert watch.left_behind() == []
    assert _still_listening({port for _, port in watch.listening}) == set()


def test_keyboard_interrupt_behind_jupyterhub_closes_the_cluster(
    prefect_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow

    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    monkeypatch.delenv("JUPYTERHUB_PUBLIC_URL", raising=False)
    seen: dict[str, Any] = {}

    @flow(task_runner=dask_runner(n_workers=1))
    def interrupted() -> None:
        seen["workers"] = _children()
        [seen["link"]] = dashboard_links()
        [local] = dashboard_links(local=True)
        with urllib.request.urlopen(local, timeout=10) as answer:
            seen["status"] = answer.status
        raise KeyboardInterrupt  # the notebook's interrupt button, mid-run

    before = set(_children())
    with pytest.raises(KeyboardInterrupt):
        interrupted()
    started = {
        pid: cmd
        for pid, cmd in seen["workers"].items()
        if pid not in before and not _is_python_helper(cmd)
    }
    assert started, "the cluster's worker was not running during the flow"
    procs = [p for p in (_alive(pid) for pid in started) if p is not None]
    _, alive = psutil.wait_procs(procs, timeout=15)
    assert alive == []
    assert dashboard_links() == []
    # Through the hub's proxy: the non-stripping path, which the scheduler was told.
    assert seen["link"].startswith("/user/alice/proxy/absolute/")
    assert seen["link"].endswith("/status")
    assert seen["status"] == 200, "the dashboard did not answer under the hub's prefix"
