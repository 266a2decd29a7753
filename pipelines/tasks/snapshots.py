"""The task that reads a snapshot for the training, prediction and evaluation flows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.decorators import pipeline_task
from pipelines.snapshot import Snapshot, read_snapshot


@pipeline_task(io=True)
def load_snapshot(path: Path) -> tuple[Snapshot, pd.DataFrame]:
    """Read a snapshot and check its content against its name."""
    return read_snapshot(path)
