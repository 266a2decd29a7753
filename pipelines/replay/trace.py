"""A telemetry file on the replay's grid: validated as ``data validate`` does, then
averaged onto 5-minute steps from a whole hour, with a note for each change."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_trace(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Return the trace in ``path`` on the replay's 5-minute grid, and what was done to it.

    Raises
    ------
    TelemetryError
        If the file cannot be read or no instance survives validation.
    """
    from data.loaders import read_telemetry
    from data.resample import to_steps

    validated = read_telemetry(path)
    frame, notes = to_steps(validated.frame, "5min")
    rejected = int((validated.report["status"] == "rejected").sum())
    if rejected:
        notes.insert(0, f"left out {rejected} instance(s) that validation rejected")
    return frame, notes
