"""The whole fleet's forecasters as one MLflow pyfunc model.

Training fits one :class:`~models.FleetForecaster` per shard of instances; this
wrapper holds every shard, so a fleet of 10,000 instances is one versioned model.
Its pyfunc input is a small config frame, one row per instance::

    unique_id  h    quantiles
    vm-000001  24   [0.5, 0.9]

and its output the forecast frame ``unique_id, ds, yhat, q50, q90, model, source``
(one quantile column per requested level). Bad input raises
:class:`mlflow.exceptions.MlflowException` with ``INVALID_PARAMETER_VALUE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import Array, ColSpec, Schema

from data.forecasts import HORIZONS, QUANTILES, quantile_column
from data.frame import ID_COL, TIME_COL
from models import FleetForecaster

#: Longest horizon the model serves, in hours (four weeks).
MAX_HORIZON_HOURS = 4 * 168
_INPUT_COLUMNS = (ID_COL, "h", "quantiles")


def _invalid(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class FleetModel(PythonModel):
    """Forecasts of every instance of a fleet, from the shard forecasters that fit it.

    Parameters
    ----------
    shards
        Fitted fleet forecasters, each over its own instances.
    metadata
        Facts about the training (snapshot digest, config), kept with the model.
    """

    def __init__(self, shards: Sequence[FleetForecaster], metadata: dict[str, str]) -> None:
        self.shards = list(shards)
        self.metadata = dict(metadata)
        self.shard_of: dict[str, int] = {}
        for index, shard in enumerate(self.shards):
            for unique_id in shard.unique_ids_:
                if str(unique_id) in self.shard_of:
                    raise ValueError(f"instance {unique_id!r} is fitted in two shards")
                self.shard_of[str(unique_id)] = index

    @property
    def unique_ids(self) -> list[str]:
        """Return every instance the model forecasts, sorted."""
        return sorted(self.shard_of)

    def forecast(
        self,
        h: int,
        quantiles: Sequence[float] = QUANTILES,
        unique_ids: Sequence[str] | None = None,
        frame: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Forecast the next ``h`` hours of some or all instances.

        Parameters
        ----------
        h
            Hours ahead.
        quantiles
            Quantile levels of the forecast columns.
        unique_ids
            Instances to forecast; all by default.
        frame
            Newer hourly telemetry to forecast from without refitting; the fitted
            history by default. Instances missing from it keep their fitted history.

        Returns
        -------
        pandas.DataFrame
            ``unique_id, ds, yhat, q.., model, source`` sorted by ``unique_id, ds``.
        """
        wanted = self.unique_ids if unique_ids is None else [str(u) for u in unique_ids]
        unknown = [u for u in wanted if u not in self.shard_of]
        if unknown:
            raise _invalid(f"unknown instance(s), not in the fitted fleet: {unknown[:5]}")
        by_shard: dict[int, list[str]] = {}
        for unique_id in wanted:
            by_shard.setdefault(self.shard_of[unique_id], []).append(unique_id)
        parts = []
        for index, ids in sorted(by_shard.items()):
            shard = self.shards[index]
            newer = None
            if frame is not None:
                newer = frame.loc[frame[ID_COL].isin(ids)]
                newer = newer if not newer.empty else None
            part = shard.predict(h, quantiles, frame=newer)
            if newer is not None and newer[ID_COL].nunique() < len(ids):
                # Instances without new telemetry forecast from their fitted history.
                missing = set(ids) - set(newer[ID_COL].astype("string"))
                rest = shard.predict(h, quantiles)
                part = pd.concat([part, rest.loc[rest[ID_COL].isin(missing)]])
            parts.append(part.loc[part[ID_COL].isin(ids)])
        out = pd.concat(parts, ignore_index=True)
        # Plain strings whatever the fitted frame held, so the signature stays one schema.
        out = out.astype({ID_COL: str, "model": str, "source": str})
        return out.sort_values([ID_COL, TIME_COL], ignore_index=True)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Forecast from a config frame of ``unique_id, h, quantiles`` rows.

        Raises
        ------
        mlflow.exceptions.MlflowException
            ``INVALID_PARAMETER_VALUE`` for a malformed config frame, a horizon out of
            range, a quantile level outside (0, 1) or an unknown instance.
        """
        requests = _check_config(model_input)
        groups: dict[tuple[int, tuple[float, ...]], list[str]] = {}
        for unique_id, h, levels in requests.itertuples(index=False):
            groups.setdefault((h, levels), []).append(unique_id)
        parts = [self.forecast(h, levels, ids) for (h, levels), ids in sorted(groups.items())]
        return pd.concat(parts, ignore_index=True)


def _check_config(model_input: object) -> pd.DataFrame:
    # One row per request: unique_id, h and the sorted quantile levels as a tuple.
    if not isinstance(model_input, pd.DataFrame):
        raise _invalid(f"expected a config DataFrame, got {type(model_input).__name__}")
    missing = [c for c in _INPUT_COLUMNS if c not in model_input.columns]
    if missing:
        raise _invalid(f"the config frame lacks column(s) {missing}")
    if model_input.empty:
        raise _invalid("the config frame has no rows: name at least one instance")
    ids = model_input[ID_COL]
    if ids.isna().any():
        raise _invalid("unique_id holds missing values")
    horizons = []
    for h in model_input["h"]:
        if isinstance(h, bool) or not isinstance(h, int | np.integer):
            raise _invalid(f"h must be a whole number of hours, got {h!r}")
        if not 1 <= int(h) <= MAX_HORIZON_HOURS:
            raise _invalid(f"h must lie in [1, {MAX_HORIZON_HOURS}] hours, got {h}")
        horizons.append(int(h))
    levels = []
    for value in model_input["quantiles"]:
        try:
            row = tuple(sorted({float(q) for q in value}))
        except (TypeError, ValueError) as exc:
            raise _invalid(f"quantiles must be a list of levels, got {value!r}") from exc
        if not row or not all(0.0 < q < 1.0 for q in row):
            raise _invalid(f"quantile levels must lie strictly between 0 and 1, got {value!r}")
        levels.append(row)
    return pd.DataFrame({ID_COL: ids.astype(str).tolist(), "h": horizons, "levels": levels})


def input_example(unique_ids: Sequence[str]) -> pd.DataFrame:
    """Return a config frame asking for the next day of the first instances."""
    ids = list(unique_ids)[:2]
    return pd.DataFrame(
        {ID_COL: ids, "h": [HORIZONS["day"]] * len(ids), "quantiles": [list(QUANTILES)] * len(ids)}
    )


def signature(quantiles: Sequence[float] = QUANTILES) -> ModelSignature:
    """Return the pyfunc signature: the config frame in, the forecast frame out."""
    inputs = Schema(
        [ColSpec("string", ID_COL), ColSpec("long", "h"), ColSpec(Array("double"), "quantiles")]
    )
    outputs = Schema(
        [
            ColSpec("string", ID_COL),
            ColSpec("datetime", TIME_COL),
            ColSpec("double", "yhat"),
            *(ColSpec("double", quantile_column(q)) for q in quantiles),
            ColSpec("string", "model"),
            ColSpec("string", "source"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)
