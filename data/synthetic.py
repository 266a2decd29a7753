"""A seeded synthetic fleet in the frame contract, calibrated on the Azure V1 traces.

Each instance draws its own profile from a generator seeded by ``(seed, index)``, so
an instance's series depends only on the seed, its index, the time axis and the
dtype: a fleet of 10 instances is the first 10 instances of a fleet of 10,000, and
the chunked form :func:`iter_fleet` yields exactly the rows of :func:`generate_fleet`.

The series of one instance is, per interval ``t``::

    y(t) = level(t) * daily(t) * weekly(t) * exp(noise(t)) + burst(t), clipped to 0-100

with a per-instance level (idle, ordinary or always-busy machine), a linear trend, an
optional regime shift (the level jumps by a factor at a random time), a daily cycle
peaking at a per-instance hour, an optional weekend dip, log-normal AR(1) noise and
bursts that start at random and decay geometrically. ``y_max`` adds the
within-interval peak above the mean. Default parameters come from fitting the
summary statistics of :func:`data.calibration.fleet_statistics` to
``azure_v1_100vms.parquet``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from data.errors import InvalidParameterError
from data.frame import ID_COL, MAX_COL, TARGET_COL, TIER_COL, TIME_COL, VCPUS_COL

__all__ = ["DEFAULT_START", "TIERS", "generate_fleet", "instance_ids", "iter_fleet"]

#: Start of the synthetic time axis unless the caller gives one (Monday, 00:00 UTC).
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)

#: Resource tiers, cheapest first, and the share of the fleet in each.
TIERS: tuple[str, ...] = ("bronze", "silver", "gold", "platinum")
_TIER_SHARES = np.array([0.4, 0.3, 0.2, 0.1])
_VCPU_CHOICES = np.array([1, 2, 4, 8])
_VCPU_SHARES = np.array([0.2, 0.4, 0.3, 0.1])

_MAX_INSTANCES = 1_000_000
# Rows filled per block: large enough for vectorised numpy, small enough for the cache.
_BLOCK = 256


@dataclass(frozen=True, slots=True)
class _Profile:
    level: np.ndarray
    trend: np.ndarray
    shift_at: np.ndarray
    shift_factor: np.ndarray
    daily_amplitude: np.ndarray
    peak_hour: np.ndarray
    weekend_factor: np.ndarray
    noise_phi: np.ndarray
    noise_sigma: np.ndarray
    burst_rate: np.ndarray
    burst_amplitude: np.ndarray
    burst_decay: np.ndarray
    peak_ratio: np.ndarray


def instance_ids(n_instances: int) -> list[str]:
    """Return the ids of the first ``n_instances`` synthetic instances, ``vm-000000`` on."""
    return [f"vm-{i:06d}" for i in range(n_instances)]


def generate_fleet(
    n_instances: int,
    days: float,
    seed: int = 0,
    freq: str = "5min",
    start: datetime | pd.Timestamp | str | None = None,
    *,
    dtype: type[np.floating[Any]] = np.float64,
    attributes: bool = True,
) -> pd.DataFrame:
    """Generate a synthetic fleet's CPU telemetry in the frame contract.

    Parameters
    ----------
    n_instances
        Number of instances, 1 to 1,000,000.
    days
        Length of the series in days (fractions allowed); at least one interval.
    seed
        Seed of the whole fleet; the same seed gives the same frame.
    freq
        Interval length as a pandas offset string, from ``"1min"`` to ``"1D"``.
    start
        First interval start (UTC); defaults to :data:`DEFAULT_START`. Naive values are
        read as UTC.
    dtype
        ``numpy.float64`` or ``numpy.float32`` for ``y`` and ``y_max`` (float32 halves
        the memory of large fleets).
    attributes
        Add the ``tier`` and ``vcpus`` columns.

    Returns
    -------
    pandas.DataFrame
        ``unique_id`` (category of strings), ``ds`` (UTC), ``y``, ``y_max`` and, with
        ``attributes``, ``tier`` (category) and ``vcpus`` (int64), sorted by
        ``unique_id`` then ``ds``.

    Raises
    ------
    InvalidParameterError
        If a size, the frequency, the start or the dtype is out of range.
    """
    axis = _time_axis(n_instances, days, freq, start, dtype)
    periods = len(axis)
    y = np.empty((n_instances, periods), dtype=dtype)
    y_max = np.empty_like(y)
    for first in range(0, n_instances, _BLOCK):
        count = min(_BLOCK, n_instances - first)
        y[first : first + count], y_max[first : first + count] = _fill_block(
            seed, first, count, axis, dtype
        )
    return _assemble(0, n_instances, n_instances, seed, axis, y, y_max, attributes)


def iter_fleet(
    n_instances: int,
    days: float,
    seed: int = 0,
    freq: str = "5min",
    start: datetime | pd.Timestamp | str | None = None,
    *,
    chunk_instances: int = 1000,
    dtype: type[np.floating[Any]] = np.float64,
    attributes: bool = True,
) -> Iterator[pd.DataFrame]:
    """Yield the fleet of :func:`generate_fleet` in chunks of whole instances.

    Concatenating the chunks gives exactly the frame :func:`generate_fleet` returns
    for the same arguments, while at most ``chunk_instances`` instances are in memory
    at once.

    Parameters
    ----------
    n_instances, days, seed, freq, start, dtype, attributes
        As for :func:`generate_fleet`.
    chunk_instances
        Instances per yielded frame (the last one may hold fewer).

    Yields
    ------
    pandas.DataFrame
        Consecutive instances in the frame contract; every chunk's ``unique_id``
        categories are the ids of the whole fleet, so chunks concatenate cleanly.

    Raises
    ------
    InvalidParameterError
        As for :func:`generate_fleet`, or if ``chunk_instances < 1``.
    """
    axis = _time_axis(n_instances, days, freq, start, dtype)
    if isinstance(chunk_instances, bool) or not isinstance(chunk_instances, int):
        raise InvalidParameterError("chunk_instances", chunk_instances, "a positive int")
    if chunk_instances < 1:
        raise InvalidParameterError("chunk_instances", chunk_instances, "a positive int")
    return _iter_chunks(n_instances, seed, axis, chunk_instances, dtype, attributes)


def _iter_chunks(
    n_instances: int,
    seed: int,
    axis: pd.DatetimeIndex,
    chunk_instances: int,
    dtype: type[np.floating[Any]],
    attributes: bool,
) -> Iterator[pd.DataFrame]:
    for first in range(0, n_instances, chunk_instances):
        count = min(chunk_instances, n_instances - first)
        y = np.empty((count, len(axis)), dtype=dtype)
        y_max = np.empty_like(y)
        for offset in range(0, count, _BLOCK):
            size = min(_BLOCK, count - offset)
            y[offset : offset + size], y_max[offset : offset + size] = _fill_block(
                seed, first + offset, size, axis, dtype
            )
        yield _assemble(first, count, n_instances, seed, axis, y, y_max, attributes)


def _time_axis(
    n_instances: int,
    days: float,
    freq: str,
    start: datetime | pd.Timestamp | str | None,
    dtype: type[np.floating[Any]],
) -> pd.DatetimeIndex:
    if isinstance(n_instances, bool) or not isinstance(n_instances, int):
        raise InvalidParameterError("n_instances", n_instances, "an int")
    if not 1 <= n_instances <= _MAX_INSTANCES:
        raise InvalidParameterError("n_instances", n_instances, f"1 to {_MAX_INSTANCES:,}")
    if np.dtype(dtype) not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise InvalidParameterError("dtype", dtype, "numpy.float64 or numpy.float32")
    try:
        step = pd.Timedelta(freq)
    except ValueError as exc:
        raise InvalidParameterError("freq", freq, "a pandas offset such as '5min'") from exc
    if not pd.Timedelta("1min") <= step <= pd.Timedelta("1D"):
        raise InvalidParameterError("freq", freq, "an interval from 1min to 1D")
    if not isinstance(days, int | float) or isinstance(days, bool) or not np.isfinite(days):
        raise InvalidParameterError("days", days, "a finite number of days")
    periods = int(pd.Timedelta(days=days) // step)
    if periods < 1:
        raise InvalidParameterError("days", days, f"at least one {freq} interval")
    try:
        origin = pd.Timestamp(DEFAULT_START if start is None else start)
    except ValueError as exc:
        raise InvalidParameterError("start", start, "a timestamp") from exc
    origin = origin.tz_localize("UTC") if origin.tzinfo is None else origin.tz_convert("UTC")
    return pd.date_range(origin, periods=periods, freq=step, unit="ns")


def _profiles(rngs: list[np.random.Generator]) -> _Profile:
    # One small draw of 16 uniforms per instance keeps each profile independent of
    # the fleet size and of the block it falls in.
    u = np.stack([rng.random(16) for rng in rngs])
    kind = u[:, 0]
    z = _normal(u[:, 1])
    # Split normal in logs: real fleets have few near-idle and many heavy machines.
    ordinary = np.exp(np.log(7.0) + np.where(z < 0, 0.35, 0.6) * z)
    idle = 0.4 + 2.6 * u[:, 1]
    busy = 40.0 + 45.0 * u[:, 1]
    level = np.where(kind < 0.03, idle, np.where(kind > 0.95, busy, ordinary))
    seasonal = u[:, 2] > 0.4
    return _Profile(
        level=level,
        trend=0.06 * _normal(u[:, 3]),
        shift_at=np.where(u[:, 4] < 0.2, u[:, 5], np.inf),
        shift_factor=np.exp(0.5 * _normal(u[:, 6])),
        daily_amplitude=np.where(seasonal, 0.08 + 0.4 * u[:, 7], 0.05 * u[:, 7]),
        peak_hour=(14.0 + 3.0 * _normal(u[:, 8])) % 24.0,
        weekend_factor=np.where(u[:, 9] < 0.4, 0.55 + 0.45 * u[:, 10], 1.0),
        noise_phi=0.55 + 0.43 * u[:, 11],
        noise_sigma=np.exp(np.log(0.22) + 0.8 * _normal(u[:, 12])),
        burst_rate=np.minimum(np.exp(np.log(0.0005) + 1.8 * _normal(u[:, 13])), 0.08),
        burst_amplitude=50.0 + 50.0 * u[:, 14],
        burst_decay=0.3 + 0.55 * u[:, 15],
        peak_ratio=np.exp(np.log(1.5) + 0.4 * _normal(u[:, 2])),
    )


def _normal(u: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri

    return np.asarray(ndtri(np.clip(u, 1e-12, 1 - 1e-12)))


def _fill_block(
    seed: int,
    first: int,
    count: int,
    axis: pd.DatetimeIndex,
    dtype: type[np.floating[Any]],
) -> tuple[np.ndarray, np.ndarray]:
    periods = len(axis)
    rngs = [np.random.default_rng([seed, first + i]) for i in range(count)]
    prof = _profiles(rngs)
    col = (slice(None), None)

    hours = np.asarray(axis.hour + axis.minute / 60.0, dtype=np.float64)
    weekend = np.asarray(axis.day_of_week >= 5)
    span = np.linspace(0.0, 1.0, periods) if periods > 1 else np.zeros(1)
    weeks = (
        periods * (axis[1] - axis[0] if periods > 1 else pd.Timedelta(0)) / pd.Timedelta(weeks=1)
    )

    level = prof.level[col] * (1.0 + prof.trend[col] * weeks * span[None, :])
    level = np.where(span[None, :] >= prof.shift_at[col], level * prof.shift_factor[col], level)
    # cos(a - b) = cos a cos b + sin a sin b: two outer products instead of a cosine
    # per instance and interval.
    clock = 2.0 * np.pi * hours / 24.0
    peak_at = 2.0 * np.pi * prof.peak_hour / 24.0
    daily = np.outer(prof.daily_amplitude * np.cos(peak_at), np.cos(clock))
    daily += np.outer(prof.daily_amplitude * np.sin(peak_at), np.sin(clock))
    daily += 1.0
    y = level * daily
    y *= np.where(weekend[None, :], prof.weekend_factor[col], 1.0)

    noise = np.empty((count, periods), dtype=np.float64)
    burst = np.empty((count, periods), dtype=np.float64)
    peak = np.empty((count, periods), dtype=np.float64)
    for i, rng in enumerate(rngs):
        phi, sigma = prof.noise_phi[i], prof.noise_sigma[i]
        shocks = rng.standard_normal(periods, dtype=np.float32) * (sigma * np.sqrt(1 - phi**2))
        # Start the AR(1) in its stationary distribution so no warm-up shows.
        shocks[0] /= np.sqrt(1 - phi**2)
        noise[i] = lfilter([1.0], [1.0, -phi], shocks) - sigma**2 / 2
        starts = rng.random(periods, dtype=np.float32) < prof.burst_rate[i]
        burst[i] = lfilter([1.0], [1.0, -prof.burst_decay[i]], starts * prof.burst_amplitude[i])
        peak[i] = rng.standard_exponential(periods, dtype=np.float32)

    y *= np.exp(noise)
    y += burst
    np.clip(y, 0.0, 100.0, out=y)
    peak *= prof.peak_ratio[col]
    peak *= y
    peak += y
    np.clip(peak, y, 100.0, out=peak)
    return y.astype(dtype, copy=False), peak.astype(dtype, copy=False)


def _attributes(seed: int, n_instances: int) -> tuple[np.ndarray, np.ndarray]:
    # Tiers and vCPU counts come from streams of their own, so the series do not shift
    # when attributes are added or dropped; ``choice`` draws one uniform per instance,
    # so the first instances get the same attributes in fleets of any size.
    tier_rng = np.random.default_rng([seed, _MAX_INSTANCES, 0])
    vcpu_rng = np.random.default_rng([seed, _MAX_INSTANCES, 1])
    tiers = tier_rng.choice(len(TIERS), size=n_instances, p=_TIER_SHARES)
    vcpus = vcpu_rng.choice(_VCPU_CHOICES, size=n_instances, p=_VCPU_SHARES)
    return tiers, vcpus


def _assemble(
    first: int,
    count: int,
    n_instances: int,
    seed: int,
    axis: pd.DatetimeIndex,
    y: np.ndarray,
    y_max: np.ndarray,
    attributes: bool,
) -> pd.DataFrame:
    periods = len(axis)
    categories = pd.Index(instance_ids(n_instances), dtype="str")
    codes = np.repeat(np.arange(first, first + count, dtype=np.int32), periods)
    ds_ns = np.tile(axis.asi8, count)
    columns: dict[str, Any] = {
        ID_COL: pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories)),
        TIME_COL: pd.DatetimeIndex(ds_ns.view("M8[ns]")).tz_localize("UTC"),
        TARGET_COL: y.reshape(-1),
        MAX_COL: y_max.reshape(-1),
    }
    if attributes:
        tiers, vcpus = _attributes(seed, n_instances)
        tier_codes = np.repeat(tiers[first : first + count], periods).astype(np.int8)
        columns[TIER_COL] = pd.Categorical.from_codes(
            tier_codes, dtype=pd.CategoricalDtype(pd.Index(TIERS, dtype="str"))
        )
        columns[VCPUS_COL] = np.repeat(vcpus[first : first + count].astype(np.int64), periods)
    return pd.DataFrame(columns, copy=False)
