"""The frame contract shared by ``data/``, ``models/`` and ``pipelines/``.

Telemetry travels as one long-format :class:`pandas.DataFrame`:

========== ======================= ==================================================
column     dtype                   meaning
========== ======================= ==================================================
unique_id  string                  instance id
ds         datetime64[ns, UTC]     start of the interval
y          float64                 mean CPU utilisation, percent of the instance's vCPUs
y_max      float64 (optional)      maximum CPU utilisation in the interval, percent
tier       string (optional)       the instance's resource tier
vcpus      int64 (optional)        the instance's vCPU count
========== ======================= ==================================================

Forecasts come back with ``unique_id`` and ``ds`` plus one column per model alias
and quantile columns named ``q50``, ``q90`` and so on.
"""

from __future__ import annotations

ID_COL = "unique_id"
TIME_COL = "ds"
TARGET_COL = "y"
MAX_COL = "y_max"
TIER_COL = "tier"
VCPUS_COL = "vcpus"

REQUIRED_COLUMNS: tuple[str, ...] = (ID_COL, TIME_COL, TARGET_COL)
OPTIONAL_COLUMNS: tuple[str, ...] = (MAX_COL, TIER_COL, VCPUS_COL)


def quantile_column(level: float) -> str:
    """Return the forecast column name of a quantile level, e.g. ``0.9 -> "q90"``.

    Levels that are not whole percentages keep their digits: ``0.975 -> "q97.5"``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"quantile level must lie strictly between 0 and 1, got {level!r}")
    pct = round(level * 100, 6)
    return f"q{int(pct)}" if pct == int(pct) else f"q{pct:g}"
