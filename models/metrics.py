"""Back-test metrics of the demand-forecast task (``FORECAST_TASK.md``).

For each instance and forecast origin, over the horizon:

- **MASE**: mean absolute error divided by the scale, the mean absolute error of the
  in-sample 24 h seasonal-naive forecast on the data before the origin (the mean
  absolute one-step change when there are at most 24 hours);
- **scaled pinball loss** at level ``q``: mean of ``max(q d, (q - 1) d)`` with
  ``d = y - forecast_q``, divided by the same scale;
- **coverage**: share of actuals at or below the ``q`` forecast.

A zero scale makes that origin's scaled figures undefined (NaN). Each figure is
averaged over the origins of an instance, then over instances, skipping NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.forecasts import quantile_column
from models.base import SEASON
from models.errors import InvalidInputError
from models.fleet import to_panel

_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


@dataclass(frozen=True, slots=True)
class BacktestScore:
    """Per-instance and aggregate back-test figures."""

    per_instance: pd.DataFrame
    mase: float
    pinball: float
    coverage: float
    origins: int


def origin_scales(frame: pd.DataFrame, backtest: pd.DataFrame) -> pd.Series:
    """Return the scale of each ``(unique_id, origin)`` of a back-test from the history frame."""
    ids, panel, first_hour = to_panel(frame)
    t = panel.shape[1]
    seen_pairs = backtest[["unique_id", "origin"]].drop_duplicates()
    rows = pd.Index(ids).get_indexer(pd.Index(seen_pairs["unique_id"].astype("string")))
    if (rows < 0).any():
        raise InvalidInputError("backtest", "names instances missing from the history frame")
    cols = ((pd.DatetimeIndex(seen_pairs["origin"]) - _EPOCH) // pd.Timedelta(hours=1)).to_numpy()
    cols = cols.astype(np.int64) - first_hour
    cols = np.clip(cols, 0, t)
    seasonal = _running_mean_abs(panel, SEASON)
    step = _running_mean_abs(panel, 1)
    # Running sums: the mean over differences that end before the origin column.
    scale = np.where(cols > SEASON, seasonal[rows, cols], step[rows, cols])
    scale = np.where(scale > 0, scale, np.nan)
    index = pd.MultiIndex.from_frame(seen_pairs)
    return pd.Series(scale, index=index, name="scale")


def _running_mean_abs(panel: np.ndarray, lag: int) -> np.ndarray:
    # out[:, c] = mean |y[j] - y[j - lag]| over observed j < c (NaN if none).
    n, t = panel.shape
    diff = np.full((n, t), np.nan)
    if t > lag:
        diff[:, lag:] = np.abs(panel[:, lag:] - panel[:, :-lag])
    ok = ~np.isnan(diff)
    sums = np.zeros((n, t + 1))
    counts = np.zeros((n, t + 1))
    sums[:, 1:] = np.cumsum(np.where(ok, diff, 0.0), axis=1)
    counts[:, 1:] = np.cumsum(ok, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def score_backtest(
    frame: pd.DataFrame, backtest: pd.DataFrame, level: float = 0.9
) -> BacktestScore:
    """Score a back-test exactly as the forecast task defines it.

    Parameters
    ----------
    frame
        The hourly history the back-test ran on (scales come from it).
    backtest
        Output of :meth:`models.FleetForecaster.backtest`: ``unique_id, origin, ds, y,
        yhat`` and the quantile column of ``level``.
    level
        Quantile level of the pinball loss and coverage.

    Returns
    -------
    BacktestScore
        Figures per instance and averaged over instances.
    """
    qcol = quantile_column(level)
    missing = [c for c in ("unique_id", "origin", "ds", "y", "yhat", qcol) if c not in backtest]
    if missing:
        raise InvalidInputError("backtest", f"missing column(s) {missing}")
    rows = backtest.dropna(subset=["y"])
    scales = origin_scales(frame, rows)
    d = rows["y"].to_numpy() - rows[qcol].to_numpy()
    parts = pd.DataFrame(
        {
            "unique_id": rows["unique_id"].to_numpy(),
            "origin": rows["origin"].to_numpy(),
            "abs_error": np.abs(rows["y"].to_numpy() - rows["yhat"].to_numpy()),
            "pinball": np.maximum(level * d, (level - 1) * d),
            "covered": (d <= 0).astype(np.float64),
        }
    )
    per_origin = parts.groupby(["unique_id", "origin"], sort=True).mean()
    scale = scales.reindex(per_origin.index).to_numpy()
    per_origin = pd.DataFrame(
        {
            "mase": per_origin["abs_error"].to_numpy() / scale,
            "pinball": per_origin["pinball"].to_numpy() / scale,
            "coverage": per_origin["covered"].to_numpy(),
        },
        index=per_origin.index,
    )
    per_instance = per_origin.groupby(level="unique_id").mean()
    return BacktestScore(
        per_instance=per_instance,
        mase=float(per_instance["mase"].mean()),
        pinball=float(per_instance["pinball"].mean()),
        coverage=float(per_instance["coverage"].mean()),
        origins=int(rows["origin"].nunique()),
    )
