"""Summary statistics of a fleet, to compare a synthetic fleet with real traces.

:func:`fleet_statistics` reduces a 5-minute frame to one row per instance:

- ``mean``: mean of ``y``;
- ``cv``: coefficient of variation of ``y`` (standard deviation over mean);
- ``acf24``: autocorrelation at lag 24 h of the hourly means, gaps filled as the
  forecast task fills them (the daily cycle);
- ``burst_rate``: share of intervals that are bursts, where ``y`` exceeds twice the
  instance's median by at least 10 percentage points.

:func:`compare_statistics` sets the quartiles of two such tables side by side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.errors import InvalidParameterError
from data.frame import ID_COL, TARGET_COL, TIME_COL, is_sorted_by_id_time
from data.resample import to_hourly

__all__ = ["STATISTICS", "compare_statistics", "fleet_statistics"]

STATISTICS: tuple[str, ...] = ("mean", "cv", "acf24", "burst_rate")

#: A burst is at least this many percentage points above the instance's median ...
BURST_MIN_POINTS = 10.0
#: ... and at least this multiple of it.
BURST_MIN_RATIO = 2.0


def fleet_statistics(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the per-instance summary statistics of a regularly spaced frame.

    Parameters
    ----------
    frame
        A frame in the contract, one row per instance and interval, with an interval
        that divides an hour and at least two days per instance.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``unique_id``, with the columns of :data:`STATISTICS`; ``acf24`` is
        computed on :func:`data.resample.to_hourly` of the frame.

    Raises
    ------
    InvalidParameterError
        If an instance covers less than two days.
    """
    ordered = (
        frame
        if is_sorted_by_id_time(frame)
        else frame.sort_values([ID_COL, TIME_COL], kind="stable", ignore_index=True)
    )
    codes, uniques = pd.factorize(ordered[ID_COL], sort=True)
    ids = pd.Index(np.asarray(uniques).astype(str))
    y = ordered[TARGET_COL].to_numpy(dtype=np.float64)
    n = len(ids)
    rows = np.bincount(codes, minlength=n).astype(np.float64)
    mean = np.bincount(codes, weights=y, minlength=n) / rows
    centred = y - mean[codes]
    std = np.sqrt(np.bincount(codes, weights=centred * centred, minlength=n) / (rows - 1))
    median = pd.Series(y).groupby(codes).median().to_numpy()
    bursts = (y > BURST_MIN_RATIO * median[codes]) & (y - median[codes] > BURST_MIN_POINTS)
    burst_rate = np.bincount(codes, weights=bursts.astype(np.float64), minlength=n) / rows

    acf24 = _acf24(ordered, ids)
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = np.where(mean > 0, std / mean, 0.0)
    return pd.DataFrame(
        {"mean": mean, "cv": cv, "acf24": acf24, "burst_rate": burst_rate},
        index=pd.Index(ids, name=ID_COL),
    )


def _acf24(ordered: pd.DataFrame, ids: pd.Index) -> np.ndarray:
    # each instance's autocorrelation at a lag of 24 hours, on its hourly means
    n = len(ids)
    hourly = to_hourly(ordered[[ID_COL, TIME_COL, TARGET_COL]])
    # to_hourly keeps every instance and the same id order, so codes line up.
    h_codes = pd.factorize(hourly[ID_COL], sort=True)[0]
    hours = np.bincount(h_codes, minlength=n)
    if (hours < 48).any():
        short = str(ids[int(np.argmax(hours < 48))])
        raise InvalidParameterError("frame", short, "at least two days per instance")
    h = hourly[TARGET_COL].to_numpy(dtype=np.float64)
    h_centred = h - (np.bincount(h_codes, weights=h, minlength=n) / hours)[h_codes]
    denominator = np.bincount(h_codes, weights=h_centred * h_centred, minlength=n)
    lag = 24
    pairs = h_codes[lag:] == h_codes[:-lag]
    numerator = np.bincount(
        h_codes[lag:][pairs],
        weights=(h_centred[lag:] * h_centred[:-lag])[pairs],
        minlength=n,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, 0.0)


def compare_statistics(
    observed: pd.DataFrame,
    reference: pd.DataFrame,
    quantiles: tuple[float, ...] = (0.25, 0.5, 0.75),
) -> pd.DataFrame:
    """Set the quantiles of two :func:`fleet_statistics` tables side by side.

    Returns
    -------
    pandas.DataFrame
        One row per statistic and quantile with the columns ``statistic``,
        ``quantile``, ``observed`` and ``reference``.
    """
    rows = [
        {
            "statistic": stat,
            "quantile": q,
            "observed": float(observed[stat].quantile(q)),
            "reference": float(reference[stat].quantile(q)),
        }
        for stat in STATISTICS
        for q in quantiles
    ]
    return pd.DataFrame(rows)
