"""The pipeline's parameters: which values a run can succeed with, checked before any work.

:func:`check_pipeline_parameters` is the one check of the energy flows'
parameters. The flows call it first thing in a run, and deploying calls it
too (``orchestration/deployments/parameters.py``), so a deployment whose every
run would be refused is refused at once, with the same sentence.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from energy_flows.data.arguments import check_date, check_whole_number
from energy_flows.data.uci import HOUSEHOLD_SOURCE, check_household_period
from energy_flows.errors import DataError

__all__ = ["PIPELINE_DEFAULTS", "check_pipeline_parameters"]

#: The defaults of the energy flows' parameters (``energy_usage_pipeline`` and
#: ``energy_usage_batch`` declare the same; a test keeps them equal).
PIPELINE_DEFAULTS: dict[str, Any] = {
    "source": "simulated",
    "start": "2024-01-01",
    "days": 365,
    "test_days": 28,
    "horizon_hours": 24,
    "flaky": 0.0,
    "seed": 42,
}

#: Weeks of training the model needs before the test days.
MIN_TRAINING_DAYS = 21


def check_pipeline_parameters(
    days: int | None = None,
    test_days: int | None = None,
    horizon_hours: int | None = None,
    flaky: float | None = None,
    *,
    start: str | None = None,
    seed: int | None = None,
    source: str | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Refuse parameters with which no run of the energy flow can succeed, before any work.

    Each parameter left out (``None``) takes its default from ``defaults``
    (a flow's own defaults), else from :data:`PIPELINE_DEFAULTS`, so
    ``check_pipeline_parameters(days=10)`` judges 10 days with the default
    ``test_days=28``. The rules:

    * ``days`` and ``test_days`` are whole numbers ≥ 1, and ``days`` leaves at
      least 3 weeks of training before the ``test_days`` test days;
    * ``horizon_hours`` is between 0 and 24 (a day-ahead forecast);
    * ``flaky`` is a probability between 0 and 1;
    * ``seed`` is a whole number ≥ 0; ``start`` is a date (``YYYY-MM-DD``) or
      empty (the last ``days`` days of a file);
    * with ``source="uci"`` (the real household shipped with the package),
      the ``days`` days from ``start`` lie between 2006-12-16 and 2010-11-26
      (:func:`~energy_flows.data.uci.check_household_period`). Other sources
      are not judged here: a file is only read by the run.

    Returns the checked values, defaults filled in (``source`` is judged,
    not returned). Raises :class:`~energy_flows.errors.DataError` that names
    the parameter, the value given and what to change.
    """
    base = {**PIPELINE_DEFAULTS, **(defaults or {})}
    where = ""  # no function name in front: deploying puts the flow's name before these
    given = {
        "days": days,
        "test_days": test_days,
        "horizon_hours": horizon_hours,
        "flaky": flaky,
        "start": start,
        "seed": seed,
    }
    values = {k: base.get(k) if v is None else v for k, v in given.items()}
    days = check_whole_number(values["days"], "days", where=where, example="days=365", minimum=1)
    test_days = check_whole_number(
        values["test_days"], "test_days", where=where, example="test_days=28", minimum=1
    )
    if days < test_days + MIN_TRAINING_DAYS:
        fewer = f" to at most {days - MIN_TRAINING_DAYS}" if days > MIN_TRAINING_DAYS else ""
        raise DataError(
            f"days={days} is too short for test_days={test_days}: the model needs at least "
            f"3 weeks of training before the test days. Raise days to at least "
            f"{test_days + MIN_TRAINING_DAYS} or lower test_days{fewer}."
        )
    horizon_hours = check_whole_number(
        values["horizon_hours"], "horizon_hours", where=where, example="horizon_hours=24"
    )
    if not 0 <= horizon_hours <= 24:
        raise DataError(
            f"horizon_hours must be between 0 and 24 (day-ahead), got {horizon_hours}. "
            "Example: horizon_hours=24 forecasts the next day."
        )
    flaky_value = values["flaky"]
    if (
        not isinstance(flaky_value, numbers.Real)
        or isinstance(flaky_value, bool)
        or not 0.0 <= float(flaky_value) <= 1.0  # also refuses NaN
    ):
        raise DataError(
            f"flaky is a probability between 0 and 1, got {flaky_value!r}. Example: flaky=0.5 "
            "makes about one attempt in two fail (flaky=0 never fails)."
        )
    seed = check_whole_number(values["seed"], "seed", where=where, example="seed=42", minimum=0)
    start_value = values["start"]
    if start_value:
        start_value = (
            f"{check_date(start_value, 'start', where=where, example='2024-01-01'):%Y-%m-%d}"
        )
    if (base.get("source") if source is None else source) == HOUSEHOLD_SOURCE:
        check_household_period(values["start"], days, where=where)
    return {
        "days": days,
        "test_days": test_days,
        "horizon_hours": horizon_hours,
        "flaky": float(flaky_value),
        "start": start_value,
        "seed": seed,
    }
