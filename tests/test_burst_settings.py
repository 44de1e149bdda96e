"""The settings that keep a burst of runs on SQLite from crashing runs at submission.

The burst itself (100 runs at once, 2 workers) is measured by
``benchmarks/bench_burst.py``, not timed here: these tests only check that
the classroom environment carries the settings and that Prefect reads them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

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


def test_the_benchmark_turns_off_exactly_these_settings():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_burst.py"
    spec = importlib.util.spec_from_file_location("bench_burst", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert set(bench.BURST_SETTINGS) == set(BURST)
