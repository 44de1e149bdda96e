"""The settings that keep a burst of runs on SQLite from crashing runs at submission.

The burst itself (100 runs at once, 2 workers) is measured by
``benchmarks/bench_burst.py``, not timed here: these tests only check that
the classroom environment carries the settings and that Prefect reads them,
that ``trigger()`` from many threads creates every run, one creation at a
time, and that the benchmark counts real HTTP 503 answers.
"""

from __future__ import annotations

import importlib.util
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from energy_flows import settings

BURST = {
    "PREFECT_CLIENT_MAX_RETRIES": "8",
    "PREFECT_CLIENT_RETRY_JITTER_FACTOR": "0.5",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
}


def test_the_classroom_environment_has_the_burst_settings(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.PREFECT_DEFAULTS_VARIABLE, raising=False)
    env = settings.classroom_env(tmp_path, api_url="http://127.0.0.1:1/api")
    for key, value in BURST.items():
        assert env[key] == value, key


def test_prefect_reads_them(tmp_path, monkeypatch):
    from prefect.settings import Settings

    monkeypatch.delenv(settings.PREFECT_DEFAULTS_VARIABLE, raising=False)
    for key, value in settings.prefect_settings(tmp_path).items():
        monkeypatch.setenv(key, value)
    read = Settings()
    assert read.client.max_retries == 8
    assert read.client.retry_jitter_factor == 0.5
    assert read.server.services.event_persister.batch_size == 200
    # The late threshold, in seconds, reads as a duration.
    assert (
        read.server.services.late_runs.after_seconds.total_seconds() == settings.LATE_AFTER_SECONDS
    )


def _bench() -> Any:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_burst.py"
    spec = importlib.util.spec_from_file_location("bench_burst", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_benchmark_turns_off_exactly_these_settings():
    assert set(_bench().BURST_SETTINGS) == set(BURST)


def test_the_benchmark_counts_http_503_answers_not_timestamps(tmp_path):
    server_log = tmp_path / "server.log"
    server_log.write_text(
        "21:00:01.503 | INFO    | prefect.server - a timestamp that ends in .503\n"
        "21:00:47.443 | ERROR   | uvicorn.error - Exception in ASGI application\n"
        " [SQLite was busy ((sqlite3.OperationalError) database is locked); the client "
        "retries the request, nothing is lost]\n"
        "21:00:48.000 | ERROR   | uvicorn.error - Exception in ASGI application\n"
        "Traceback (most recent call last):\n"
        "ValueError: not a database that was busy: a 500, not a 503\n"
    )
    counts = _bench().count_lines(server_log)
    assert (counts["answered_503"], counts["http_503"], counts["locked"]) == (1, 0, 1)
    worker_log = tmp_path / "worker.log"
    worker_log.write_text(
        "21:00:02.503 | INFO    | prefect.flow_runs.worker - Worker submitting flow run\n"
        "21:00:03.000 | ERROR   | prefect.flow_runs.worker - Server error '503 Service "
        "Unavailable' for url 'http://127.0.0.1:4200/api/flow_runs/<id>/labels'\n"
    )
    assert _bench().count_lines(worker_log)["http_503"] == 1


@pytest.mark.server
def test_trigger_from_many_threads_creates_every_run_one_at_a_time(prefect_server):
    """Ten threads at once, as a burst cell would: every run is created, the creations never overlap."""
    import httpx

    from energy_flows.orchestration import (
        deploy_energy_flow,
        ensure_work_pool,
        ensure_work_queue,
        trigger,
    )

    pool = f"burst-{uuid.uuid4().hex[:6]}"
    ensure_work_pool(pool)
    ensure_work_queue("energy_usage", pool=pool)
    deployment = deploy_energy_flow(f"burst-{uuid.uuid4().hex[:6]}", work_pool=pool)

    in_flight, most = 0, 0
    lock = threading.Lock()
    original = httpx.Client.send

    def send(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, most
        creating = request.url.path.endswith("/create_flow_run")
        if creating:
            with lock:
                in_flight += 1
                most = max(most, in_flight)
            time.sleep(0.02)  # room for another thread to come in, if it could
        try:
            return original(client, request, *args, **kwargs)
        finally:
            if creating:
                with lock:
                    in_flight -= 1

    httpx.Client.send = send  # type: ignore[method-assign]
    try:
        with ThreadPoolExecutor(10) as threads:
            runs = list(
                threads.map(lambda i: trigger(deployment, flow_run_name=f"b{i:02d}"), range(30))
            )
    finally:
        httpx.Client.send = original  # type: ignore[method-assign]
    assert sorted(r.name for r in runs) == [f"b{i:02d}" for i in range(30)]
    assert len({r.id for r in runs}) == 30 and {r.state for r in runs} == {"Scheduled"}
    assert most == 1, f"{most} creations were in flight at once"
