"""Day-ahead forecasts of a household's hourly use, and how to judge them.

The *energy core*, second half: numpy and pandas only. The steps, each a pure
function you can run and inspect on its own:

1. :func:`make_features` - what the model may know about each hour: the
   calendar, the same hour 1, 2 and 7 days before, yesterday's mean use and
   yesterday's heating need;
2. :func:`split_train_test` - the last days are kept aside to judge the model;
3. :func:`fit` - a ridge regression (least squares with a small penalty),
   solved with numpy;
4. :func:`forecast` - predictions for any rows of features, including hours
   after the last reading;
5. :func:`evaluate` - MAE, RMSE and WAPE of the model next to two baselines
   that need no model at all: the same hour yesterday and the same hour last
   week. A model that does not beat them is not worth running.

:func:`run_core_pipeline` chains the steps; the Prefect flow in
:mod:`energy_flows.flows` runs exactly these functions as tasks.

Why "day-ahead" matters: every feature of an hour is at least 24 hours old, so
the whole of tomorrow can be forecast at midnight. A feature like "the hour
before" would make the model look better on paper and useless in practice.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from energy_flows.data import clean_readings, validate_readings
from energy_flows.errors import DataError

__all__ = [
    "LAGS_HOURS",
    "ForecastModel",
    "PipelineResult",
    "backtest",
    "evaluate",
    "fit",
    "forecast",
    "forecast_next",
    "mae",
    "make_features",
    "rmse",
    "run_core_pipeline",
    "same_hour_last_week",
    "same_hour_yesterday",
    "split_train_test",
    "wape",
]

#: The lags the model uses, in hours: all at least a day old (day-ahead).
LAGS_HOURS = (24, 48, 168)

#: Heating starts below this outdoor temperature (the usual base in Europe).
HEATING_BASE_C = 15.5

# --------------------------------------------------------------------------
# Metrics


def _aligned(actual: pd.Series, predicted: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    both = pd.concat([actual, predicted], axis=1).dropna()
    if both.empty:
        raise DataError("No hour has both an actual and a predicted value to compare.")
    return both.iloc[:, 0].to_numpy(float), both.iloc[:, 1].to_numpy(float)


def mae(actual: pd.Series, predicted: pd.Series) -> float:
    """Mean absolute error in kWh: on average, how far off an hour is."""
    y, p = _aligned(actual, predicted)
    return float(np.mean(np.abs(y - p)))


def rmse(actual: pd.Series, predicted: pd.Series) -> float:
    """Root mean squared error in kWh: like MAE, but big misses count more."""
    y, p = _aligned(actual, predicted)
    return float(np.sqrt(np.mean((y - p) ** 2)))


def wape(actual: pd.Series, predicted: pd.Series) -> float:
    """Weighted absolute percentage error: ``sum |error| / sum actual``, in %.

    The usual MAPE divides each hour's error by that hour's use, so a night
    hour of 0.2 kWh missed by 0.2 counts as a 100 % error and a handful of
    quiet hours dominate the score. WAPE divides the total error by the total
    use: it reads as "we missed this share of the energy" and stays sensible
    when some hours are near zero.
    """
    y, p = _aligned(actual, predicted)
    total = float(np.sum(np.abs(y)))
    if total == 0:
        raise DataError("WAPE is undefined when every actual value is zero.")
    return float(100.0 * np.sum(np.abs(y - p)) / total)


# --------------------------------------------------------------------------
# Features


def make_features(readings: pd.DataFrame, horizon_hours: int = 0) -> pd.DataFrame:
    """Describe each hour by what is known a day before it.

    ``readings`` are clean hourly readings (see
    :func:`~energy_flows.data.clean_readings`). With ``horizon_hours > 0`` the
    table is extended by that many future hours (``kwh`` is NaN there), ready
    for :func:`forecast`. At most 24 hours ahead: the model is day-ahead.

    Columns: ``kwh`` (the target), ``hour``, ``dayofweek``, ``weekend``,
    ``season_sin``/``season_cos`` (the time of year as a point on a circle, so
    31 December is next to 1 January), ``lag_24h_kwh``, ``lag_48h_kwh``,
    ``lag_168h_kwh`` (the same hour 1, 2 and 7 days before),
    ``mean_prev_day_kwh`` (mean use over the 24 hours a day before) and, when
    ``temperature_c`` is given, ``heating_degrees_prev_day`` (how far
    yesterday's mean temperature was below 15.5 °C).
    """
    if not 0 <= horizon_hours <= 24:
        raise DataError(
            f"horizon_hours must be between 0 and 24, got {horizon_hours}: the features are "
            "at least 24 hours old, so the model forecasts one day ahead at most."
        )
    if "kwh" not in readings.columns or not isinstance(readings.index, pd.DatetimeIndex):
        raise DataError(
            "make_features expects clean hourly readings: a DatetimeIndex and a 'kwh' column "
            "(run clean_readings first)."
        )
    if not readings.index.is_unique:
        raise DataError("The readings have duplicated hours: run clean_readings first.")
    frame = readings.asfreq("h")
    if horizon_hours:
        future = pd.date_range(
            frame.index[-1] + pd.Timedelta(hours=1), periods=horizon_hours, freq="h"
        )
        frame = frame.reindex(frame.index.append(future))
    frame.index.name = "timestamp"
    index = frame.index
    kwh = frame["kwh"].astype(float)
    out = pd.DataFrame(index=index)
    out["kwh"] = kwh
    out["hour"] = index.hour
    out["dayofweek"] = index.day_of_week
    out["weekend"] = index.day_of_week >= 5
    angle = 2 * np.pi * (index.day_of_year.to_numpy() - 1) / 365.25
    out["season_sin"] = np.sin(angle)
    out["season_cos"] = np.cos(angle)
    for lag in LAGS_HOURS:
        out[f"lag_{lag}h_kwh"] = kwh.shift(lag)
    out["mean_prev_day_kwh"] = kwh.rolling(24, min_periods=18).mean().shift(24)
    if "temperature_c" in frame.columns:
        mean_temp = frame["temperature_c"].rolling(24, min_periods=18).mean().shift(24)
        out["heating_degrees_prev_day"] = np.maximum(HEATING_BASE_C - mean_temp, 0.0)
    return out


def same_hour_yesterday(features: pd.DataFrame) -> pd.Series:
    """Baseline: tomorrow at 19:00 will look like today at 19:00."""
    return features["lag_24h_kwh"].rename("kwh_same_hour_yesterday")


def same_hour_last_week(features: pd.DataFrame) -> pd.Series:
    """Baseline: next Saturday at 10:00 will look like last Saturday at 10:00."""
    return features["lag_168h_kwh"].rename("kwh_same_hour_last_week")


def split_train_test(
    features: pd.DataFrame, test_days: int = 28
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the last ``test_days`` days (of hours with a reading) aside for testing.

    Time series are split by time, never at random: the model must be judged
    on a future it has not seen.
    """
    known = features[features["kwh"].notna()]
    if known.empty:
        raise DataError("No hour has a reading: nothing to train or test on.")
    cut = known.index[-1] - pd.Timedelta(days=test_days) + pd.Timedelta(hours=1)
    train, test = known[known.index < cut], known[known.index >= cut]
    if len(train) < 24 * 14:
        raise DataError(
            f"Only {len(train)} hours to train on before the last {test_days} test days. "
            "Give a longer period (at least test_days + 3 weeks) or fewer test days."
        )
    return train, test


# --------------------------------------------------------------------------
# Model


@dataclass
class ForecastModel:
    """A fitted ridge regression: ``kwh = design(features) @ coefficients``."""

    columns: list[str]
    coefficients: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    alpha: float
    trained_on: tuple[str, str]
    n_train_hours: int

    def coefficient_table(self) -> pd.Series:
        """The weight of each (standardised) input: what the model learnt."""
        return pd.Series(self.coefficients, index=self.columns, name="coefficient")


_NUMERIC = [
    *(f"lag_{lag}h_kwh" for lag in LAGS_HOURS),
    "mean_prev_day_kwh",
    "season_sin",
    "season_cos",
]


def _design(features: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """The matrix the regression sees: its column names and values (NaN where unknown)."""
    numeric = [c for c in [*_NUMERIC, "heating_degrees_prev_day"] if c in features.columns]
    n = len(features)
    hour = features["hour"].to_numpy()
    # Each hour of a weekday and of a weekend day gets its own level (48 columns):
    # the daily routine, learnt from the data.
    slot = hour + 24 * features["weekend"].to_numpy().astype(int)
    slots = np.zeros((n, 48))
    slots[np.arange(n), slot] = 1.0
    # Yesterday's use matters more in the evening than at 4 am: let it vary by hour.
    evening = ((hour >= 17) & (hour <= 23)) * features["lag_24h_kwh"].to_numpy(float)
    days = np.zeros((n, 7))
    days[np.arange(n), features["dayofweek"].to_numpy()] = 1.0
    names = [
        *numeric,
        *(f"slot_{'we' if i >= 24 else 'wd'}_{i % 24:02d}" for i in range(48)),
        "lag_24h_x_evening",
        *(f"dow_{d}" for d in range(7)),
    ]
    values = np.column_stack([features[numeric].to_numpy(float), slots, evening, days])
    return names, values


def fit(train: pd.DataFrame, alpha: float = 1.0) -> ForecastModel:
    """Fit a ridge regression on the training hours.

    Ridge is ordinary least squares plus ``alpha`` times the sum of squared
    (standardised) coefficients: with many correlated inputs (three lags and
    yesterday's mean) it keeps the weights small and stable. Solved in closed
    form: ``(X'X + alpha I) b = X'y``. Hours with a missing input are skipped.
    """
    names, design = _design(train)
    target = train["kwh"].to_numpy(float)
    usable = ~np.isnan(design).any(axis=1) & ~np.isnan(target)
    if usable.sum() < 24 * 7:
        raise DataError(
            f"Only {int(usable.sum())} training hours have every input (a reading and the same "
            "hour 1, 2 and 7 days before). Give a longer period with fewer gaps."
        )
    x, y = design[usable], target[usable]
    center = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.column_stack([np.ones(len(x)), (x - center) / scale])
    penalty = alpha * np.eye(z.shape[1])
    penalty[0, 0] = 0.0  # never shrink the intercept
    coefficients = np.linalg.solve(z.T @ z + penalty, z.T @ y)
    index = train.index[usable]
    return ForecastModel(
        columns=["intercept", *names],
        coefficients=coefficients,
        center=center,
        scale=scale,
        alpha=alpha,
        trained_on=(f"{index[0]:%Y-%m-%d %H:%M}", f"{index[-1]:%Y-%m-%d %H:%M}"),
        n_train_hours=int(usable.sum()),
    )


def forecast(model: ForecastModel, features: pd.DataFrame) -> pd.Series:
    """Predict ``kwh`` for each row of ``features`` (NaN where an input is missing).

    Use it on held-out hours to test the model, or on the future rows of
    ``make_features(readings, horizon_hours=24)`` to forecast tomorrow.
    Predictions below the smallest use seen make no sense and are clipped to 0.
    """
    names, x = _design(features)
    if names != model.columns[1:]:
        raise DataError(
            "These features do not match the ones the model was fitted on "
            f"({len(model.columns) - 1} inputs expected, got {len(names)}): "
            "build both with make_features from readings with the same columns."
        )
    z = np.column_stack([np.ones(len(x)), (x - model.center) / model.scale])
    predicted = np.clip(z @ model.coefficients, 0.0, None)
    return pd.Series(predicted, index=features.index, name="kwh_predicted")


def backtest(
    model: ForecastModel, test: pd.DataFrame, imputed: pd.Series | None = None
) -> pd.DataFrame:
    """Actual use next to the model's forecast and the two baselines, hour by hour.

    ``imputed`` (the column of the same name from
    :func:`~energy_flows.data.clean_readings`) marks hours that cleaning filled
    in: their ``kwh_actual`` is set to NaN, so only measured hours are judged.
    """
    actual = test["kwh"].astype(float)
    if imputed is not None:
        filled = imputed.reindex(test.index, fill_value=False).to_numpy(bool)
        actual = actual.mask(filled)
    return pd.DataFrame(
        {
            "kwh_actual": actual,
            "kwh_predicted": forecast(model, test),
            "kwh_same_hour_yesterday": same_hour_yesterday(test),
            "kwh_same_hour_last_week": same_hour_last_week(test),
        }
    )


def forecast_next(model: ForecastModel, features: pd.DataFrame, horizon_hours: int) -> pd.DataFrame:
    """The forecast for the ``horizon_hours`` after the last reading.

    ``features`` must come from ``make_features(clean, horizon_hours=...)``,
    whose last rows are those future hours.
    """
    future = features.iloc[len(features) - horizon_hours :] if horizon_hours else features.iloc[:0]
    return forecast(model, future).to_frame()


def evaluate(comparison: pd.DataFrame) -> pd.DataFrame:
    """Score the model and the baselines on the same hours.

    ``comparison`` has ``kwh_actual`` and one ``kwh_<method>`` column per
    method (the output of :func:`backtest`). Only hours where every method has
    a value are scored, so the numbers compare like with like. Returns one row
    per method: ``mae_kwh``, ``rmse_kwh``, ``wape_pct``, ``hours`` and
    ``mae_vs_yesterday_pct`` (how much lower the MAE is than the same hour
    yesterday's; positive is better).
    """
    if "kwh_actual" not in comparison.columns:
        raise DataError("evaluate expects a 'kwh_actual' column and kwh_<method> columns.")
    methods = [c for c in comparison.columns if c.startswith("kwh_") and c != "kwh_actual"]
    scored = comparison[["kwh_actual", *methods]].dropna()
    if scored.empty:
        raise DataError("No hour has an actual value and every forecast: nothing to score.")
    actual = scored["kwh_actual"].to_numpy(float)
    rows = {}
    for column in methods:
        error = scored[column].to_numpy(float) - actual
        rows[column.removeprefix("kwh_")] = {
            "mae_kwh": float(np.mean(np.abs(error))),  # = mae(), on arrays: faster
            "rmse_kwh": float(np.sqrt(np.mean(error**2))),
            "wape_pct": float(100.0 * np.abs(error).sum() / np.abs(actual).sum()),
            "hours": len(scored),
        }
    metrics = pd.DataFrame.from_dict(rows, orient="index")
    metrics.index.name = "method"
    if "same_hour_yesterday" in metrics.index:
        reference = metrics.loc["same_hour_yesterday", "mae_kwh"]
        metrics["mae_vs_yesterday_pct"] = 100.0 * (1.0 - metrics["mae_kwh"] / reference)
    return metrics.round(4)


# --------------------------------------------------------------------------
# The whole pipeline, without Prefect


@dataclass
class PipelineResult:
    """What one run of the pipeline produced, small enough to store and send.

    Prefect stores a flow's return value (with cloudpickle) so that a notebook
    can read back what a worker computed: keep it to plain data.
    """

    meter_id: str
    #: One row per method (predicted, same_hour_yesterday, same_hour_last_week).
    metrics: pd.DataFrame
    #: The test hours: actual kWh, the model's forecast and both baselines.
    forecast: pd.DataFrame
    #: The forecast for the hours after the last reading (``kwh_predicted``).
    next_hours: pd.DataFrame
    #: The validation report of the raw readings.
    validation: pd.DataFrame
    period: tuple[str, str]
    source: str = "simulated"
    details: dict[str, float | int | str] = field(default_factory=dict)
    #: The id of the Prefect flow run that produced this result ("" when the
    #: pipeline ran without Prefect, e.g. :func:`run_core_pipeline`).
    flow_run_id: str = ""

    @property
    def mae_kwh(self) -> float:
        """The model's mean absolute error on the test hours."""
        return float(self.metrics.loc["predicted", "mae_kwh"])

    @property
    def improvement_pct(self) -> float:
        """How much lower the model's MAE is than "same hour yesterday" (in %)."""
        return float(self.metrics.loc["predicted", "mae_vs_yesterday_pct"])

    @property
    def beats_baselines(self) -> bool:
        """True when the model's MAE is lower than every baseline's."""
        return bool(self.metrics["mae_kwh"].idxmin() == "predicted")

    def __repr__(self) -> str:
        return (
            f"PipelineResult(meter_id={self.meter_id!r}, period={self.period[0]}..{self.period[1]}, "
            f"mae={self.mae_kwh:.3f} kWh, {self.improvement_pct:+.1f}% vs same hour yesterday, "
            f"test_hours={len(self.forecast)})"
        )

    def _repr_html_(self) -> str:
        verdict = "beats" if self.beats_baselines else "does <b>not</b> beat"
        return (
            f"<div><b>Energy pipeline: {html.escape(self.meter_id)}</b> "
            f"({html.escape(self.source)}, {self.period[0]} to {self.period[1]})<br>"
            f"The model {verdict} the baselines: MAE {self.mae_kwh:.3f} kWh, "
            f"{self.improvement_pct:+.1f}% vs same hour yesterday.<br>"
            f"{self.metrics.to_html(float_format=lambda v: f'{v:.3f}')}</div>"
        )


def run_core_pipeline(
    readings: pd.DataFrame,
    meter_id: str = "home-001",
    test_days: int = 28,
    horizon_hours: int = 24,
    alpha: float = 1.0,
    source: str = "simulated",
) -> PipelineResult:
    """validate -> clean -> features -> split -> fit -> forecast -> evaluate, in one call.

    The same steps the Prefect flow runs as tasks, without Prefect: use it to
    see what the pipeline computes, to test it, and to time it.
    """
    validation = validate_readings(readings)
    clean = clean_readings(readings)
    features = make_features(clean, horizon_hours=horizon_hours)
    train, test = split_train_test(features, test_days=test_days)
    model = fit(train, alpha=alpha)
    comparison = backtest(model, test, imputed=clean["imputed"])
    metrics = evaluate(comparison)
    next_hours = forecast_next(model, features, horizon_hours)
    return PipelineResult(
        meter_id=meter_id,
        metrics=metrics,
        forecast=comparison,
        next_hours=next_hours,
        validation=validation,
        period=(f"{clean.index[0]:%Y-%m-%d}", f"{clean.index[-1]:%Y-%m-%d}"),
        source=source,
        details={
            "train_hours": model.n_train_hours,
            "test_hours": len(comparison),
            "missing_hours": int(clean["kwh"].isna().sum()),
            "imputed_hours": int(clean["imputed"].sum()),
        },
    )
