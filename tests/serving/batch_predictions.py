"""Batch predictions in the ``predict`` flow's format: the outside world of the service.

Kept apart from the app's test support so a process that only publishes predictions
imports pandas and nothing of the service.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

START = datetime(2026, 11, 24, 15, tzinfo=UTC)
INSTANCES = (
    "vm-bronze-1",
    "vm-bronze-2",
    "vm-silver-1",
    "vm-silver-2",
    "vm-gold-1",
    "vm-gold-2",
    "vm-platinum-1",
)
HORIZON_HOURS = {"hour": 1, "day": 24, "week": 168}


def write_predictions(
    directory: Path,
    version: str,
    instances: tuple[str, ...] = INSTANCES,
    *,
    level: float = 10.0,
    generated_at: datetime = START,
) -> None:
    """Write batch predictions as the ``predict`` flow does: parquet, then manifest,
    each replacing the previous file atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, unique_id in enumerate(instances):
        for horizon, hours in HORIZON_HOURS.items():
            for h in range(1, hours + 1):
                yhat = level + n + h / 100
                rows.append(
                    {
                        "unique_id": unique_id,
                        "horizon": horizon,
                        "ds": pd.Timestamp(generated_at + timedelta(hours=h)),
                        "yhat": yhat,
                        "q50": yhat - 0.5,
                        "q90": yhat + 5.0,
                        "model": "seasonal_naive",
                        "source": "learned",
                        "model_name": "creditx-fleet-forecaster",
                        "model_version": version,
                        "generated_at": pd.Timestamp(generated_at),
                    }
                )
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".parquet.tmp")
    os.close(fd)
    pd.DataFrame(rows).to_parquet(tmp, index=False)
    os.replace(tmp, directory / "forecasts.parquet")
    manifest = {
        "model_name": "creditx-fleet-forecaster",
        "model_version": version,
        "generated_at": generated_at.isoformat(),
        "snapshot": "test",
        "rows": len(rows),
        "instances": len(instances),
        "horizons": HORIZON_HOURS,
        "quantiles": [0.5, 0.9],
    }
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".json.tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle)
    os.replace(tmp, directory / "manifest.json")


def publish_predictions(directory: Path, published: Event, stop: Event) -> None:
    """Publish a new model version's predictions every 50 ms until ``stop`` is set.

    Runs in a process of its own, as the ``predict`` flow does; ``published`` is set
    once the first version is in place.
    """
    version = 1
    while not stop.is_set():
        version += 1
        write_predictions(directory, str(version), level=float(version))
        published.set()
        stop.wait(0.05)
