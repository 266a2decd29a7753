"""Fleets the forecast benchmark runs on besides a telemetry file.

``calibrated``: :func:`data.synthetic.generate_fleet`, the fleet calibrated on the
Azure trace. ``bursty``: a stand-in for AWS CloudWatch CPU series, 5-minute
utilisation with one to three lasting level shifts, a weak or no daily cycle,
persistent log-normal noise, plateau bursts from five minutes to a day, and idle
stretches where a job stopped. Both come in the shared telemetry schema
(``instance_id``, ``ts``, ``cpu_avg``) the task reads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import lfilter

#: The fleets :func:`synthetic_telemetry` makes.
FLEETS: tuple[str, ...] = ("calibrated", "bursty")
_PER_HOUR = 12


def synthetic_telemetry(kind: str, instances: int, days: float, seed: int) -> pd.DataFrame:
    """Return a seeded synthetic fleet of 5-minute CPU telemetry in the shared schema."""
    if kind == "calibrated":
        from data.synthetic import generate_fleet

        frame = generate_fleet(instances, days, seed=seed, attributes=False)
        return pd.DataFrame(
            {
                "instance_id": frame["unique_id"].astype(str),
                "ts": frame["ds"],
                "cpu_avg": frame["y"].astype("float32"),
            }
        )
    if kind != "bursty":
        raise ValueError(f"expected one of {FLEETS}, got {kind!r}")
    return _bursty(instances, days, seed)


def _bursty(instances: int, days: float, seed: int) -> pd.DataFrame:
    periods = int(days * 24 * _PER_HOUR)
    ts = pd.date_range("2024-03-04", periods=periods, freq="5min", tz="UTC")
    hours = np.arange(periods) / _PER_HOUR
    parts = []
    for i in range(instances):
        rng = np.random.default_rng((seed, i))
        level = np.full(periods, np.exp(rng.normal(np.log(12), 0.9)))
        for _ in range(rng.integers(1, 4)):
            level[rng.integers(periods // 10, periods) :] *= np.exp(rng.normal(0, 0.8))
        amplitude = rng.uniform(0, 0.5) * (rng.random() < 0.6)
        daily = 1 + amplitude * np.cos(2 * np.pi * (hours - rng.uniform(0, 24)) / 24)
        phi, sigma = rng.uniform(0.5, 0.95), rng.uniform(0.15, 0.6)
        noise = lfilter([1.0], [1.0, -phi], rng.normal(0, sigma * np.sqrt(1 - phi**2), periods))
        y = level * daily * np.exp(noise)
        for _ in range(rng.poisson(days * rng.uniform(0.2, 2.0))):
            start = rng.integers(0, periods)
            length = int(np.exp(rng.uniform(0, np.log(24 * _PER_HOUR))))
            y[start : start + length] += rng.uniform(15, 80)
        if rng.random() < 0.3:
            start = rng.integers(0, periods)
            y[start : start + rng.integers(_PER_HOUR, 48 * _PER_HOUR)] = rng.uniform(0, 1)
        parts.append(
            pd.DataFrame(
                {
                    "instance_id": f"cw-{i:04d}",
                    "ts": ts,
                    "cpu_avg": np.clip(y, 0, 100).astype("float32"),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)
