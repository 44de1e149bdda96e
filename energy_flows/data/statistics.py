"""Statistics that describe a household's hourly use, to compare a meter with the real household."""

from __future__ import annotations

import pandas as pd

from energy_flows.data.cleaning import check_readings

__all__ = ["meter_statistics"]


def meter_statistics(readings: pd.DataFrame) -> dict[str, float | list[float]]:
    """The statistics that describe a household's hourly use.

    The same function describes the real UCI household and a simulated meter,
    so the two can be compared number by number (the calibration test does).
    ``readings`` must be on a regular hourly grid (missing hours as NaN), e.g.
    raw readings without daylight saving defects or the output of
    :func:`clean_readings` with ``max_fill_hours=0``.
    """
    check_readings(readings)
    kwh = readings["kwh"].astype(float)
    kwh = kwh[~kwh.index.duplicated()].asfreq("h")
    present = kwh.dropna()
    index = present.index
    weekend = index.day_of_week >= 5
    weekday_mean = present[~weekend].groupby(index[~weekend].hour).mean()
    weekend_mean = present[weekend].groupby(index[weekend].hour).mean()
    month_mean = present.groupby(index.month).mean()
    winter = month_mean.reindex([12, 1, 2]).mean()
    summer = month_mean.reindex([6, 7, 8]).mean()
    p50 = float(present.quantile(0.5))
    return {
        "mean_kwh": float(present.mean()),
        "missing_fraction": float(kwh.isna().mean()),
        "weekday_profile": (weekday_mean / weekday_mean.mean()).round(3).tolist(),
        "weekend_profile": (weekend_mean / weekend_mean.mean()).round(3).tolist(),
        "weekend_over_weekday": float(present[weekend].mean() / present[~weekend].mean()),
        "winter_over_summer": float(winter / summer),
        "acf_1": float(kwh.autocorr(1)),
        "acf_24": float(kwh.autocorr(24)),
        "acf_168": float(kwh.autocorr(168)),
        "p99_over_p50": float(present.quantile(0.99) / p50),
        "cv": float(present.std() / present.mean()),
        "p1_kwh": float(present.quantile(0.01)),
    }
