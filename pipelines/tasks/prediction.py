"""The prediction tasks: load the aliased fleet model, forecast every horizon, write them."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

import pandas as pd

from data.forecasts import HORIZONS, QUANTILES
from data.frame import ID_COL
from pipelines import progress
from pipelines.decorators import pipeline_task
from pipelines.errors import ModelNotFoundError
from pipelines.fleet_model import FleetModel
from pipelines.params import TrackingParams


@pipeline_task(io=True)
def load_version(tracking: TrackingParams, alias: str) -> tuple[str, FleetModel]:
    """Return the version under ``alias`` and its fleet model.

    Raises
    ------
    ModelNotFoundError
        If no version carries the alias yet (e.g. before the first promotion).
    """
    from pipelines.tracking import aliased_version, load_fleet_model

    client = tracking.client()
    version = aliased_version(client, tracking.model_name, alias)
    if version is None:
        raise ModelNotFoundError(tracking.model_name, alias)
    return str(version.version), load_fleet_model(
        f"models:/{tracking.model_name}/{version.version}"
    )


@pipeline_task()
def forecast_horizons(
    model: FleetModel, frame: pd.DataFrame | None, progress_key: str | None = None
) -> pd.DataFrame:
    """Forecast every instance for every horizon, from ``frame`` if given.

    With ``progress_key``, each horizon done is one unit of that stage.
    """
    parts = []
    for horizon, hours in HORIZONS.items():
        part = model.forecast(hours, QUANTILES, frame=frame)
        part.insert(1, "horizon", horizon)
        parts.append(part)
        if progress_key is not None:
            progress.advance(progress_key)
    return pd.concat(parts, ignore_index=True)


@pipeline_task(io=True)
def write_predictions(
    forecasts: pd.DataFrame,
    output_dir: Path,
    model_name: str,
    version: str,
    generated_at: datetime,
    snapshot: str,
) -> Path:
    """Write the forecasts where the API reads them, replacing the previous ones atomically.

    ``output_dir/forecasts.parquet`` holds ``unique_id, horizon, ds, yhat, q50, q90,
    model, source, model_name, model_version, generated_at``; ``manifest.json``
    beside it says which model version made them and when.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    out = forecasts.assign(
        model_name=model_name, model_version=version, generated_at=pd.Timestamp(generated_at)
    )
    target = output_dir / "forecasts.parquet"
    fd, tmp = tempfile.mkstemp(dir=output_dir, suffix=".parquet.tmp")
    os.close(fd)
    out.to_parquet(tmp, index=False)
    os.replace(tmp, target)
    manifest = {
        "model_name": model_name,
        "model_version": version,
        "generated_at": pd.Timestamp(generated_at).isoformat(),
        "snapshot": snapshot,
        "rows": len(out),
        "instances": int(out[ID_COL].nunique()),
        "horizons": HORIZONS,
        "quantiles": list(QUANTILES),
    }
    fd, tmp = tempfile.mkstemp(dir=output_dir, suffix=".json.tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, indent=1)
    os.replace(tmp, output_dir / "manifest.json")
    return target
