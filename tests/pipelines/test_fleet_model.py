from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode

from models import FleetForecaster, ForecastConfig
from pipelines.fleet_model import FleetModel, input_example, signature

CONFIG = ForecastConfig(candidates=("naive", "seasonal_naive"))


@pytest.fixture(scope="module")
def fleet_model(hourly_fleet: pd.DataFrame) -> FleetModel:
    ids = sorted(hourly_fleet["unique_id"].astype(str).unique())
    halves = [ids[:8], ids[8:]]
    shards = [
        FleetForecaster(CONFIG).fit(hourly_fleet.loc[hourly_fleet["unique_id"].isin(half)])
        for half in halves
    ]
    return FleetModel(shards, {"snapshot": "test"})


def _config(ids: list[str], h: object = 24, quantiles: object = (0.5, 0.9)) -> pd.DataFrame:
    return pd.DataFrame(
        {"unique_id": ids, "h": [h] * len(ids), "quantiles": [quantiles] * len(ids)}
    )


def test_forecasts_each_requested_instance_from_its_own_shard(
    fleet_model: FleetModel, hourly_fleet: pd.DataFrame
) -> None:
    ids = ["vm-000001", "vm-000015"]  # one per shard
    out = fleet_model.predict(None, _config(ids, h=6))
    assert sorted(out["unique_id"].unique()) == ids
    assert out.groupby("unique_id").size().tolist() == [6, 6]
    last = hourly_fleet["ds"].max()
    assert out["ds"].min() == last + pd.Timedelta(hours=1)
    assert (out["q50"] <= out["q90"]).all()
    # The same instance forecast by its shard alone gives the same numbers.
    alone = fleet_model.shards[1].predict(6, (0.5, 0.9))
    mine = alone.loc[alone["unique_id"] == "vm-000015", "yhat"].to_numpy()
    np.testing.assert_allclose(out.loc[out["unique_id"] == "vm-000015", "yhat"], mine)


def test_rows_with_different_horizons_and_levels_are_each_answered(fleet_model: FleetModel) -> None:
    config = pd.concat(
        [
            _config(["vm-000002"], h=1, quantiles=[0.9]),
            _config(["vm-000003"], h=3, quantiles=[0.5, 0.75]),
        ]
    )
    out = fleet_model.predict(None, config)
    assert out.groupby("unique_id").size().to_dict() == {"vm-000002": 1, "vm-000003": 3}
    assert out.loc[out["unique_id"] == "vm-000003", "q75"].notna().all()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_config(["vm-000001"], h=0), r"h must lie in \[1, 672\]"),
        (_config(["vm-000001"], h=2.5), "h must be a whole number"),
        (_config(["vm-000001"], quantiles=[0.5, 1.5]), "strictly between 0 and 1"),
        (_config(["vm-000001"], quantiles=[]), "strictly between 0 and 1"),
        (_config(["vm-999999"]), "unknown instance"),
        (_config(["vm-000001"]).drop(columns="quantiles"), "lacks column"),
        (_config([]), "has no rows"),
    ],
)
def test_bad_config_frames_raise_invalid_parameter_value(
    fleet_model: FleetModel, config: pd.DataFrame, message: str
) -> None:
    with pytest.raises(MlflowException, match=message) as caught:
        fleet_model.predict(None, config)
    assert caught.value.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE)


def test_an_instance_fitted_twice_is_refused(fleet_model: FleetModel) -> None:
    with pytest.raises(ValueError, match="fitted in two shards"):
        FleetModel([fleet_model.shards[0], fleet_model.shards[0]], {})


def test_signature_matches_the_example_and_the_answer(fleet_model: FleetModel) -> None:
    example = input_example(fleet_model.unique_ids)
    sig = signature()
    assert sig.inputs.input_names() == list(example.columns)
    answer = fleet_model.predict(None, example)
    assert sig.outputs.input_names() == list(answer.columns)
