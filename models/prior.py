"""Forecasts for new instances: the fleet's weekly shape, scaled to what a newcomer has shown.

An instance with less than :data:`PRIOR_HOURS` of history gives no model anything to
learn from, yet its agent and the CEM need a forecast on its first day. The prior
learns from the established instances (those with at least :data:`ESTABLISHED_HOURS`)
of the newcomer's group (its tier when the frame says, else the fleet): their demand
divided by their own mean, averaged per hour of the week (median across instances),
is the group's *profile*. A newcomer's forecast is that profile times its level, the
mean of the hours it has shown divided by the profile's mean over those same hours.

The spread is calibrated the same way on the established instances: from origins in
their last week, each is forecast as if it had shown only :data:`PROBE_HOURS`, and the
errors, in units of that level (at least 1 % CPU), give per horizon bucket the
quantiles of one predictive distribution; the point forecast is its median.
"""

from __future__ import annotations

import warnings
from typing import Self

import numpy as np

from models.base import (
    HORIZON_EDGES,
    LEVEL_GRID,
    SEASON,
    WEEK,
    feasible_range,
    horizon_bucket,
)
from models.errors import NotFittedError

#: Fewer observed hours than this before an origin and the prior forecasts the instance.
PRIOR_HOURS = SEASON
#: Observed hours that make an instance a reference for the profile and the spread.
ESTABLISHED_HOURS = 3 * SEASON
#: Hours a calibration stand-in newcomer has shown.
PROBE_HOURS = 6
#: Fewest established instances a group needs for a profile of its own.
MIN_GROUP = 5
_FLEET = "__fleet__"
_MIN_UNIT = 1.0


def hour_of_week(hours: np.ndarray) -> np.ndarray:
    """Return the hour of the week (Monday 00:00 UTC is 0) of hours counted from the epoch."""
    return ((hours // SEASON + 3) % 7) * SEASON + hours % SEASON  # the epoch was a Thursday


def observed_before(y: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """Return the ``(n, n_origins)`` number of observed hours before each origin column."""
    seen = ~np.isnan(y)
    counts = np.zeros((y.shape[0], y.shape[1] + 1), dtype=np.int64)
    counts[:, 1:] = np.cumsum(seen, axis=1)
    return counts[:, origins]


class FleetPrior:
    """The forecast of instances too new for a model: a group profile scaled to their level.

    Attributes
    ----------
    profiles_ : dict
        Group -> ``(168,)`` demand multipliers by hour of the week, mean 1.
    tables_ : dict
        Group -> ``(n_horizon_buckets, n_grid)`` error quantiles in units of the level.
    """

    def fit(self, y: np.ndarray, first_hour: int, groups: np.ndarray | None = None) -> Self:
        """Learn each group's profile and spread from its established instances.

        Parameters
        ----------
        y
            Checked hourly panel ``(n, t)``.
        first_hour
            Hours from the epoch to the first column.
        groups
            Group (tier) of each row; one group for the fleet if ``None``.
        """
        n = y.shape[0]
        groups = np.full(n, _FLEET, dtype=object) if groups is None else np.asarray(groups, object)
        self.floor_, self.ceiling_ = feasible_range(y)
        lengths = (~np.isnan(y)).sum(axis=1)
        established = lengths >= ESTABLISHED_HOURS
        if not established.any():
            # No reference yet: the newcomers are their own, thin, evidence.
            established = lengths >= min(int(lengths.max()), PROBE_HOURS + 1)
        self.profiles_: dict[object, np.ndarray] = {}
        self.tables_: dict[object, np.ndarray] = {}
        members = {_FLEET: established}
        for group in np.unique(groups):
            chosen = established & (groups == group)
            if chosen.sum() >= MIN_GROUP and group != _FLEET:
                members[group] = chosen
        for group, chosen in members.items():
            profile = self._profile(y[chosen], first_hour)
            self.profiles_[group] = profile
            self.tables_[group] = self._calibrate(y[chosen], first_hour, profile)
        return self

    def _profile(self, y: np.ndarray, first_hour: int) -> np.ndarray:
        t = y.shape[1]
        recent = y[:, max(t - 2 * WEEK, 0) :]
        slot = hour_of_week(first_hour + max(t - 2 * WEEK, 0) + np.arange(recent.shape[1]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # idle or late-starting rows
            mean = np.nanmean(recent, axis=1)
            ratio = recent / np.where(mean > 1e-9, mean, np.nan)[:, None]
            shape = np.nanmedian(ratio, axis=0) if len(ratio) else np.full(len(slot), np.nan)
        sums = np.bincount(slot, np.where(np.isfinite(shape), shape, 0.0), minlength=WEEK)
        counts = np.bincount(slot, np.isfinite(shape), minlength=WEEK)
        profile = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        # Hours of the week not seen yet borrow the same hour of other days.
        by_day = profile.reshape(7, SEASON)
        seen = np.isfinite(by_day)
        daily = np.where(
            seen.any(axis=0),
            np.where(seen, by_day, 0.0).sum(axis=0) / np.maximum(seen.sum(axis=0), 1),
            np.nan,
        )
        profile = np.where(np.isfinite(profile), profile, np.tile(daily, 7))
        profile = np.where(np.isfinite(profile) & (profile > 0), profile, 1.0)
        return profile / profile.mean()

    def _calibrate(self, y: np.ndarray, first_hour: int, profile: np.ndarray) -> np.ndarray:
        t = y.shape[1]
        table = np.zeros((len(HORIZON_EDGES), len(LEVEL_GRID)))
        origins = np.arange(max(t - WEEK, PROBE_HOURS), t, 6)
        origins = origins[(observed_before(y, origins) >= PROBE_HOURS).any(axis=0)]
        if len(y) == 0 or len(origins) == 0:
            return table
        point, unit = self._point(y, first_hour, origins, WEEK, profile, PROBE_HOURS)
        cols = origins[:, None] + np.arange(WEEK)[None, :]
        actual = np.where(cols[None] < t, y[:, np.minimum(cols, t - 1)], np.nan)
        err = (actual - point) / unit[:, :, None]
        buckets = horizon_bucket(np.arange(1, WEEK + 1))
        for b in range(len(HORIZON_EDGES)):
            e = err[:, :, buckets == b]
            e = e[np.isfinite(e)]
            if len(e):
                table[b] = np.quantile(e, LEVEL_GRID)
            elif b:
                table[b] = table[b - 1]
        return table

    @staticmethod
    def _point(
        y: np.ndarray,
        first_hour: int,
        origins: np.ndarray,
        h: int,
        profile: np.ndarray,
        window: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        # Profile-shaped forecasts (n, n_origins, h) from the mean of the last `window`
        # observed hours before each origin, and their unit (n, n_origins).
        n, t = y.shape
        values = np.where(np.isnan(y), 0.0, y)
        sums = np.zeros((n, t + 1))
        sums[:, 1:] = np.cumsum(values, axis=1)
        shown = np.minimum(observed_before(y, origins), window)
        lo = origins[None, :] - shown
        total = sums[:, origins] - np.take_along_axis(sums, np.maximum(lo, 0), axis=1)
        level = total / np.maximum(shown, 1)
        # The profile's mean over the hours the level was taken from.
        slot_sums = np.concatenate(
            [[0.0], np.cumsum(profile[hour_of_week(first_hour + np.arange(t))])]
        )
        shown_profile = (slot_sums[origins][None, :] - slot_sums[np.maximum(lo, 0)]) / np.maximum(
            shown, 1
        )
        base = level / np.where(shown_profile > 1e-9, shown_profile, 1.0)
        ahead = profile[hour_of_week(first_hour + origins[:, None] + np.arange(h)[None, :])]
        return base[:, :, None] * ahead[None], np.maximum(level, _MIN_UNIT)

    def predict_at(
        self,
        y: np.ndarray,
        first_hour: int,
        origins: np.ndarray,
        h: int,
        levels: tuple[float, ...],
        groups: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Forecast every row from each origin column as a newcomer.

        Returns
        -------
        tuple of numpy.ndarray
            The median ``(n, n_origins, h)`` and quantiles ``(n, n_origins, h, n_levels)``,
            within the feasible range and non-decreasing in the level.
        """
        if not hasattr(self, "profiles_"):
            raise NotFittedError(type(self).__name__)
        n = y.shape[0]
        groups = np.full(n, _FLEET, dtype=object) if groups is None else np.asarray(groups, object)
        origins = np.asarray(origins, dtype=np.int64)
        median = np.empty((n, len(origins), h))
        quantiles = np.empty((n, len(origins), h, len(levels)))
        buckets = horizon_bucket(np.arange(1, h + 1))
        for group in np.unique(groups):
            rows = np.flatnonzero(groups == group)
            key = group if group in self.profiles_ else _FLEET
            point, unit = self._point(
                y[rows], first_hour, origins, h, self.profiles_[key], PRIOR_HOURS
            )
            table = self.tables_[key][buckets]  # (h, grid)
            grid = np.stack([np.interp((0.5, *levels), LEVEL_GRID, row) for row in table])
            values = point[..., None] + unit[:, :, None, None] * grid[None, None]
            values = np.clip(values, self.floor_, self.ceiling_)
            median[rows] = values[..., 0]
            quantiles[rows] = np.sort(values[..., 1:], axis=-1)
        return median, quantiles
