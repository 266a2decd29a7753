from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import EmptySnapshotError, SnapshotError
from pipelines.snapshot import canonical_frame, frame_digest, read_snapshot, write_snapshot


def _frame(values: list[float], ids: int = 2) -> pd.DataFrame:
    hours = pd.date_range("2024-01-01", periods=len(values), freq="h", tz="UTC")
    return pd.DataFrame(
        {
            "unique_id": np.repeat([f"vm-{i}" for i in range(ids)], len(values)),
            "ds": np.tile(hours, ids),
            "y": np.tile(values, ids),
        }
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=30),
    seed=st.integers(0, 2**16),
)
def test_digest_ignores_row_order_and_names_the_content(values: list[float], seed: int) -> None:
    frame = _frame(values)
    shuffled = frame.sample(frac=1.0, random_state=seed)
    assert frame_digest(canonical_frame(shuffled)) == frame_digest(canonical_frame(frame))
    changed = frame.assign(y=frame["y"] + 1.0)
    assert frame_digest(canonical_frame(changed)) != frame_digest(canonical_frame(frame))


def test_writing_the_same_telemetry_twice_reuses_one_file(tmp_path: Path) -> None:
    frame = _frame([1.0, 2.0, 3.0])
    first = write_snapshot(frame, tmp_path)
    stamp = first.path.stat().st_mtime_ns
    second = write_snapshot(frame.iloc[::-1], tmp_path)
    assert second.path == first.path
    assert second.path.stat().st_mtime_ns == stamp
    assert list(tmp_path.iterdir()) == [first.path]
    assert (first.rows, first.instances) == (6, 2)
    snapshot, stored = read_snapshot(first.path)
    assert snapshot.digest == first.digest
    pd.testing.assert_frame_equal(stored, canonical_frame(frame))


def test_a_tampered_snapshot_is_refused(tmp_path: Path) -> None:
    snapshot = write_snapshot(_frame([1.0, 2.0]), tmp_path)
    canonical_frame(_frame([9.0, 9.0])).to_parquet(snapshot.path, index=False)
    with pytest.raises(SnapshotError, match="hashes to"):
        read_snapshot(snapshot.path)


def test_an_empty_frame_makes_no_snapshot(tmp_path: Path) -> None:
    with pytest.raises(EmptySnapshotError, match="holds no rows"):
        write_snapshot(_frame([]), tmp_path / "snapshots")
    assert not (tmp_path / "snapshots").exists()


def test_a_frame_without_the_contract_columns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match=r"missing column\(s\) \['y'\]"):
        write_snapshot(_frame([1.0]).drop(columns="y"), tmp_path)
