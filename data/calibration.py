"""Summary statistics of a fleet, to compare a synthetic fleet with real traces.

:func:`fleet_statistics` reduces a 5-minute frame to one row per instance:

- ``mean``: mean of ``y``;
- ``cv``: coefficient of variation of ``y`` (standard deviation over mean);
- ``acf24``: autocorrelation at lag 24 h of the hourly means (the daily cycle);
- ``burst_rate``: share of intervals that are bursts, where ``y`` exceeds twice the
  instance's median by at least 10 percentage points.

:func:`compare_statistics` sets the quartiles of two such tables side by side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.errors import InvalidParameterError
from data.frame import ID_COL, TARGET_COL, TIME_COL

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
        Indexed by ``unique_id``, with the columns of :data:`STATISTICS`.

    Raises
    ------
    InvalidParameterError
        If an instance covers less than two days.
    """
    rows = []
    ordered = frame.sort_values([ID_COL, TIME_COL], kind="stable")
    for uid, group in ordered.groupby(ID_COL, sort=True, observed=True):
        y = group[TARGET_COL].to_numpy(dtype=np.float64)
        hourly = group.set_index(TIME_COL)[TARGET_COL].resample("1h").mean().interpolate()
        h = hourly.to_numpy(dtype=np.float64)
        if len(h) < 48:
            raise InvalidParameterError("frame", str(uid), "at least two days per instance")
        median = float(np.median(y))
        mean = float(y.mean())
        bursts = (y > BURST_MIN_RATIO * median) & (y - median > BURST_MIN_POINTS)
        rows.append(
            {
                ID_COL: uid,
                "mean": mean,
                "cv": float(y.std(ddof=1) / mean) if mean > 0 else 0.0,
                "acf24": _autocorrelation(h, 24),
                "burst_rate": float(bursts.mean()),
            }
        )
    return pd.DataFrame(rows).set_index(ID_COL)


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


def _autocorrelation(values: np.ndarray, lag: int) -> float:
    centred = values - values.mean()
    denominator = float((centred * centred).sum())
    if denominator == 0.0:
        return 0.0
    return float((centred[lag:] * centred[:-lag]).sum() / denominator)
