"""Meter readings: simulate them, load them, check them, clean them.

This is the *energy core*: numpy, pandas and the standard library only, no
Prefect and no Jupyter, so every function here runs (and is tested) in
milliseconds and can be read on its own.

The shape of the data, everywhere in the package
-------------------------------------------------
A table of *readings* is a :class:`pandas.DataFrame` with

* a :class:`~pandas.DatetimeIndex` named ``timestamp``: the **start of each
  hour in local clock time, without a time zone** (the way a household meter
  and the real UCI file label their hours);
* a float column ``kwh``: the energy used during that hour, ``NaN`` where the
  reading is missing;
* optionally ``temperature_c``: the outdoor temperature in degrees Celsius.

Raw readings may be irregular (gaps, duplicated hours around the daylight
saving changes, zeros that are really missing, spikes). :func:`validate_readings`
reports those problems; :func:`clean_readings` turns raw readings into a
regular hourly grid that the forecasting step can trust.

The parts
---------
* :mod:`.simulation`: :func:`simulate_meter`, :func:`meter_traits`;
* :mod:`.loading`: :func:`load_meter_csv`, :func:`load_readings` (any source by name);
* :mod:`.dates`: a column of dates read as the file means them (ISO, day first or
  month first, decided by the data; refused when it could be either);
* :mod:`.uci`: :func:`load_uci_household`, the real household: shipped with the
  package as hours (offline, ``source="uci"``), or read from its original minute file;
* :mod:`.cleaning`: :func:`validate_readings`, :func:`clean_readings`;
* :mod:`.statistics`: :func:`meter_statistics`;
* :mod:`.meter_service`: :func:`read_meter`, a meter service that fails now and
  then (``flaky``), for the lessons' retries;
* :mod:`.parameters`: :func:`check_pipeline_parameters`, the one check of the
  energy flows' parameters (run time and deploy time);
* :mod:`.arguments`: the checks behind every "x must be ..." sentence.
"""

from energy_flows.data.cleaning import (
    MAX_FILL_HOURS,
    MAX_PLAUSIBLE_KWH,
    clean_readings,
    validate_readings,
)
from energy_flows.data.loading import load_meter_csv, load_readings
from energy_flows.data.meter_service import FlakySourceError, read_meter, source_fails
from energy_flows.data.parameters import PIPELINE_DEFAULTS, check_pipeline_parameters
from energy_flows.data.simulation import (
    MAX_SIMULATED_DAYS,
    MeterTraits,
    meter_traits,
    simulate_meter,
)
from energy_flows.data.statistics import meter_statistics
from energy_flows.data.uci import load_uci_household

__all__ = [
    "MAX_FILL_HOURS",
    "MAX_PLAUSIBLE_KWH",
    "MAX_SIMULATED_DAYS",
    "PIPELINE_DEFAULTS",
    "FlakySourceError",
    "MeterTraits",
    "check_pipeline_parameters",
    "clean_readings",
    "load_meter_csv",
    "load_readings",
    "load_uci_household",
    "meter_statistics",
    "meter_traits",
    "read_meter",
    "simulate_meter",
    "source_fails",
    "validate_readings",
]
