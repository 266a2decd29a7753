"""Back-test windows and the metrics a training run and the promotion gate compare.

The window is the last ``backtest_days`` of a snapshot. Each horizon is back-tested
from its own origins inside it, every forecast seeing only the data before its
origin: next *hour* from every hour, next *day* from every day, next *week* from
every week (for seven days: 168, 7 and 1 origins, as the forecast task defines).
Per instance and horizon the figures are those of :func:`models.metrics.score_backtest`:

* ``mase``: mean absolute error over the in-sample 24 h seasonal-naive MAE,
* ``pinball90``: pinball loss of the ``q90`` forecast over the same scale,
* ``coverage90``: share of actuals at or below ``q90`` (0.9 when calibrated).

Beside them every instance gets the MASE of naive and seasonal naive on the same
origins (``mase_naive``, ``mase_seasonal_naive``), the bar any model must clear:
the gate refuses a version worse than seasonal naive on the fleet, and a training
run warns about the instances worse than naive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from data.forecasts import HORIZONS
from data.frame import ID_COL, TARGET_COL, TIME_COL
from pipelines.errors import InvalidParametersError
from pipelines.snapshot import Snapshot

_HOUR = pd.Timedelta(hours=1)
#: Metrics kept per instance and horizon; lower is better for the first two.
METRICS: tuple[str, ...] = ("mase", "pinball90", "coverage90")
#: The simplest forecasters, scored beside every model on the same back-test.
BASELINES: tuple[str, ...] = ("naive", "seasonal_naive")
#: Per-instance MASE columns of the baselines.
BASELINE_METRICS: tuple[str, ...] = tuple(f"mase_{name}" for name in BASELINES)
# Hours of history a series needs before the window for the forecasters to learn.
_MIN_HISTORY_HOURS = 48


@dataclass(frozen=True, slots=True)
class BacktestWindow:
    """Forecast origins at the end of one snapshot, shared by every compared model."""

    digest: str
    start: pd.Timestamp
    days: int

    @property
    def key(self) -> str:
        """Return a string that names this window exactly, for run tags."""
        return f"{self.digest[:24]}/{self.start.isoformat()}/{self.days}d"

    def origins(self, horizon: str) -> list[pd.Timestamp]:
        """Return the forecast origins of ``horizon``: one every ``h`` hours of the window."""
        hours = HORIZONS[horizon]
        count = max(1, self.days * 24 // hours)
        return [self.start + i * hours * _HOUR for i in range(count)]


def backtest_window(snapshot: Snapshot, days: int) -> BacktestWindow:
    """Return the back-test window of the last ``days`` of ``snapshot``.

    Raises
    ------
    InvalidParametersError
        If the snapshot leaves fewer than two days of history before the window.
    """
    start = snapshot.end + _HOUR - pd.Timedelta(days=days)
    if start - snapshot.start < pd.Timedelta(hours=_MIN_HISTORY_HOURS):
        raise InvalidParametersError(
            "backtest_days",
            f"a {days}-day window leaves less than {_MIN_HISTORY_HOURS} h of history in a "
            f"snapshot from {snapshot.start} to {snapshot.end}",
        )
    return BacktestWindow(snapshot.digest, start, days)


def window_forecasts(
    forecast: Callable[[int, pd.DataFrame], pd.DataFrame],
    frame: pd.DataFrame,
    window: BacktestWindow,
) -> dict[str, pd.DataFrame]:
    """Forecast every horizon from each of its origins in the window, without refitting.

    Each origin's forecast reads the telemetry before it and nothing after.

    Parameters
    ----------
    forecast
        ``forecast(h, history)`` returns the ``h`` hours after ``history`` of every
        instance in it (``unique_id, ds, yhat, q.., model, source``).
    frame
        Hourly telemetry covering the history and the window's actuals.
    window
        The back-test window whose origins are forecast.

    Returns
    -------
    dict of pandas.DataFrame
        Per horizon, ``unique_id, ds, yhat, q.., model, source, origin, y``: the shape
        :func:`score_horizons` scores.
    """
    actual = frame[[ID_COL, TIME_COL, TARGET_COL]].assign(
        **{ID_COL: frame[ID_COL].astype("string")}
    )
    # Rows in time order make each origin's history one slice of the frame.
    ordered = frame.sort_values(TIME_COL, kind="stable", ignore_index=True)
    stamps = ordered[TIME_COL]
    backtests = {}
    for horizon, hours in HORIZONS.items():
        parts = []
        for origin in window.origins(horizon):
            history = ordered.iloc[: int(stamps.searchsorted(origin, side="left"))]
            parts.append(forecast(hours, history).assign(origin=origin))
        forecasts = pd.concat(parts, ignore_index=True)
        forecasts[ID_COL] = forecasts[ID_COL].astype("string")
        backtests[horizon] = forecasts.merge(actual, on=[ID_COL, TIME_COL], how="left")
    return backtests


def score_horizons(frame: pd.DataFrame, backtests: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Return ``mase``, ``pinball90`` and ``coverage90`` per instance and horizon.

    Parameters
    ----------
    frame
        The hourly telemetry the back-tests ran on (the MASE scales come from it).
    backtests
        Per horizon, the output of :meth:`models.FleetForecaster.backtest`.

    Returns
    -------
    pandas.DataFrame
        ``unique_id, horizon, mase, pinball90, coverage90``.
    """
    from models.metrics import score_backtest

    tables = []
    for horizon, backtest in backtests.items():
        score = score_backtest(frame, backtest, 0.9)
        table = score.per_instance.rename(
            columns={"pinball": "pinball90", "coverage": "coverage90"}
        ).reset_index()
        tables.append(table.assign(horizon=horizon))
    out = pd.concat(tables, ignore_index=True)
    out[ID_COL] = out[ID_COL].astype("string")
    return out[[ID_COL, "horizon", *METRICS]]


def baseline_scores(
    frame: pd.DataFrame, window: BacktestWindow, calibration_hours: int
) -> pd.DataFrame:
    """Return the MASE of each baseline per instance and horizon on the window's origins.

    Each baseline is fitted on the data before the window, as the models are.

    Returns
    -------
    pandas.DataFrame
        ``unique_id, horizon, mase_naive, mase_seasonal_naive``.
    """
    from models import FleetForecaster, ForecastConfig

    tables = []
    for name, column in zip(BASELINES, BASELINE_METRICS, strict=True):
        config = ForecastConfig(
            candidates=(name,), calibration_hours=calibration_hours, quantiles=(0.9,)
        )
        # One fit at the window's start serves every origin, as for the models.
        backtests = {
            horizon: FleetForecaster(config).backtest(frame, window.origins(horizon), hours)
            for horizon, hours in HORIZONS.items()
        }
        scored = score_horizons(frame, backtests)
        tables.append(scored.set_index([ID_COL, "horizon"])["mase"].rename(column))
    out = pd.concat(tables, axis=1).reset_index()
    return out[[ID_COL, "horizon", *BASELINE_METRICS]]


def worse_than_naive(metrics: pd.DataFrame) -> pd.DataFrame:
    """Return the ``(unique_id, horizon)`` rows whose MASE exceeds naive's on the same origins."""
    if "mase_naive" not in metrics:
        return metrics.iloc[:0][[ID_COL, "horizon", "mase"]]
    worse = metrics.loc[metrics["mase"] > metrics["mase_naive"]]
    columns = [ID_COL, "horizon", "mase", *BASELINE_METRICS]
    return worse[columns].sort_values([ID_COL, "horizon"], ignore_index=True)


def aggregate_metrics(metrics: pd.DataFrame) -> dict[str, float]:
    """Return the fleet means per horizon (``mase_day``...) and over horizons (``mase``).

    The baselines' MASE is averaged likewise (``mase_naive_day``, ``mase_naive``...)
    over the instances the model was scored on, and ``worse_than_naive_day``... count
    the instances worse than naive.
    """
    present = [m for m in (*METRICS, *BASELINE_METRICS) if m in metrics]
    means = metrics.groupby("horizon")[present].mean()
    out = {
        f"{metric}_{horizon}": float(means[metric].to_dict()[horizon])
        for horizon in HORIZONS
        if horizon in means.index
        for metric in present
    }
    for metric in present:
        out[metric] = float(means[metric].mean()) if len(means) else float("nan")
    if "mase_naive" in metrics:
        worse = worse_than_naive(metrics)
        for horizon in HORIZONS:
            if horizon in means.index:
                out[f"worse_than_naive_{horizon}"] = float((worse["horizon"] == horizon).sum())
        out["worse_than_naive"] = float(worse[ID_COL].nunique())
    return out
