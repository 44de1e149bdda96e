"""A meter service that fails now and then: what the lessons' retries are about.

Real meters are read over a network, and networks time out. :func:`read_meter`
reads a meter's hourly readings (through :func:`~energy_flows.data.load_readings`)
as such a service would: with ``flaky > 0`` an attempt may fail with
:class:`FlakySourceError`, on purpose, so that a flow's ``@task(retries=...)``
has something to rescue. The failures are random but reproducible
(:func:`source_fails`): the same meter, seed and attempt number always fail,
or always succeed, so a lesson shows the same retry every time.

Standard library, numpy and pandas only (the energy core): the task that
calls it passes the attempt number Prefect keeps (``prefect.runtime.task_run.run_count``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from energy_flows.data.loading import load_readings
from energy_flows.errors import DataError

__all__ = ["FlakySourceError", "read_meter", "source_fails"]


class FlakySourceError(ConnectionError):
    """The (simulated) meter service did not answer this time: worth a retry."""


def source_fails(flaky: float, seed: int, meter_id: str, attempt: int) -> bool:
    """Whether attempt number ``attempt`` (1, 2, ...) to read the source fails.

    The draw is random but reproducible: the same ``(flaky, seed, meter_id,
    attempt)`` always gives the same answer, so a lesson (or a test) can show a
    run whose first attempt fails and whose retry succeeds.
    """
    if not 0.0 <= flaky <= 1.0:
        raise DataError(f"flaky is a probability between 0 and 1, got {flaky}.")
    if flaky == 0.0:
        return False
    key = [int(seed), attempt, *meter_id.encode("utf-8")]
    return bool(np.random.default_rng(key).random() < flaky)


def read_meter(
    meter_id: str = "home-001",
    *,
    days: int = 365,
    start: str | None = "2024-01-01",
    source: str = "simulated",
    seed: int = 42,
    flaky: float = 0.0,
    attempt: int | None = 1,
) -> pd.DataFrame:
    """Read ``days`` days of ``meter_id``'s hourly readings from a service that may fail.

    ``flaky`` is the probability that an attempt fails (0: never, 1: always);
    ``attempt`` is which attempt this is (1 for the first, 2 for the first
    retry ...; in a Prefect task, ``prefect.runtime.task_run.run_count``).
    A failing attempt raises :class:`FlakySourceError`; otherwise the
    readings come from :func:`~energy_flows.data.load_readings` (``source``,
    ``start`` and ``seed`` as there).
    """
    attempt = int(attempt or 1)
    if source_fails(flaky, seed, meter_id, attempt):
        raise FlakySourceError(
            f"Attempt {attempt}: the meter service for {meter_id} timed out (flaky={flaky})."
        )
    return load_readings(source, meter_id=meter_id, start=start, days=days, seed=seed)
