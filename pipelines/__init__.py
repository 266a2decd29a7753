"""Prefect flows: ingest, train, promote and predict, tracked in MLflow.

``ingest_flow`` stores a content-addressed hourly telemetry snapshot; ``train_flow``
back-tests and fits every instance for every horizon, logs one MLflow run and
registers the fleet as one pyfunc model version; ``promote_flow`` moves the
``champion`` alias only when the :class:`PromotionGate` passes; ``predict_flow``
writes the champion's forecasts where the API reads them; ``evaluate_flow`` scores
the served champion on new telemetry; ``market_round_flow`` asks the API to run an
hour's market round and records it as a table artifact. Errors derive from
:class:`PipelineError` (tree in :mod:`pipelines.errors`). The flows import Prefect on
first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from pipelines.errors import PipelineError
from pipelines.gate import PromotionGate
from pipelines.params import (
    EvaluateParams,
    IngestParams,
    MarketRoundParams,
    PredictParams,
    PromoteParams,
    TrackingParams,
    TrainParams,
)

__all__ = [
    "EvaluateParams",
    "FleetModel",
    "IngestParams",
    "MarketRoundParams",
    "PipelineError",
    "PredictParams",
    "PromoteParams",
    "PromotionGate",
    "TrackingParams",
    "TrainParams",
    "evaluate_flow",
    "ingest_flow",
    "market_round_flow",
    "predict_flow",
    "promote_flow",
    "train_flow",
]

_LAZY = {
    "FleetModel": "pipelines.fleet_model",
    "evaluate_flow": "pipelines.flows",
    "ingest_flow": "pipelines.ingest",
    "market_round_flow": "pipelines.market_round",
    "predict_flow": "pipelines.flows",
    "promote_flow": "pipelines.flows",
    "train_flow": "pipelines.flows",
}


def __getattr__(name: str) -> Any:
    # Prefect and MLflow take seconds to import; `creditx --help` should not wait.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
