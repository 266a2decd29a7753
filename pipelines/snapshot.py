"""Content-addressed telemetry snapshots: the exact hourly frame a run trained on.

A snapshot is a Parquet file named by the SHA-256 of its canonical content (rows
sorted by ``unique_id, ds``; the contract columns only), so ingesting the same
telemetry twice yields the same file and a rerun on it is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from data.frame import ID_COL, TARGET_COL, TIME_COL
from pipelines.errors import EmptySnapshotError, SnapshotError

_COLUMNS = (ID_COL, TIME_COL, TARGET_COL)
# Hex digits of the digest kept in the file name: collisions are out of reach.
_NAME_DIGITS = 24


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One stored telemetry snapshot and what it holds."""

    digest: str
    path: Path
    rows: int
    instances: int
    start: pd.Timestamp
    end: pd.Timestamp


def canonical_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the contract columns of an hourly frame sorted by ``unique_id, ds``.

    Raises
    ------
    SnapshotError
        If a contract column is missing.
    """
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise SnapshotError("frame", f"missing column(s) {missing}")
    out = pd.DataFrame(
        {
            ID_COL: frame[ID_COL].astype("string"),
            TIME_COL: pd.to_datetime(frame[TIME_COL], utc=True).astype("datetime64[ns, UTC]"),
            TARGET_COL: frame[TARGET_COL].astype("float64"),
        }
    )
    return out.sort_values([ID_COL, TIME_COL], kind="stable", ignore_index=True)


def frame_digest(frame: pd.DataFrame) -> str:
    """Return the SHA-256 hex digest of a canonical frame's content."""
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(hashes.tobytes())
    digest.update(",".join(frame.columns).encode())
    return digest.hexdigest()


def write_snapshot(frame: pd.DataFrame, root: Path, source: str = "frame") -> Snapshot:
    """Store an hourly frame under ``root`` by its content; reuse an identical snapshot.

    Parameters
    ----------
    frame
        Hourly telemetry in the frame contract.
    root
        Directory of the snapshots.
    source
        Where the telemetry came from, for error messages.

    Returns
    -------
    Snapshot
        The stored snapshot; its ``path`` is the same for the same content.

    Raises
    ------
    EmptySnapshotError
        If the frame has no rows.
    SnapshotError
        If a contract column is missing or the file cannot be written.
    """
    canonical = canonical_frame(frame)
    if canonical.empty:
        raise EmptySnapshotError(source, rows=0, rejected=0)
    digest = frame_digest(canonical)
    path = root / f"{digest[:_NAME_DIGITS]}.parquet"
    if not path.exists():
        try:
            root.mkdir(parents=True, exist_ok=True)
            # Write aside and rename, so a reader never sees half a snapshot.
            fd, tmp = tempfile.mkstemp(dir=root, suffix=".parquet.tmp")
            os.close(fd)
            canonical.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        except OSError as exc:
            raise SnapshotError(source, f"cannot write {path}: {exc}") from exc
    return _describe(canonical, digest, path)


def read_snapshot(path: Path) -> tuple[Snapshot, pd.DataFrame]:
    """Read a stored snapshot and check its content still matches its name.

    Raises
    ------
    SnapshotError
        If the file is missing, unreadable or its content does not match its name.
    EmptySnapshotError
        If it holds no rows.
    """
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise SnapshotError(str(path), f"cannot read it: {exc}") from exc
    canonical = canonical_frame(frame)
    if canonical.empty:
        raise EmptySnapshotError(str(path), rows=0, rejected=0)
    digest = frame_digest(canonical)
    if not Path(path).name.startswith(digest[:_NAME_DIGITS]):
        raise SnapshotError(str(path), f"its content hashes to {digest[:_NAME_DIGITS]}")
    return _describe(canonical, digest, Path(path)), canonical


def _describe(frame: pd.DataFrame, digest: str, path: Path) -> Snapshot:
    return Snapshot(
        digest=digest,
        path=path,
        rows=len(frame),
        instances=int(frame[ID_COL].nunique()),
        start=frame[TIME_COL].min(),
        end=frame[TIME_COL].max(),
    )


def latest_snapshot(root: Path) -> Path | None:
    """Return the most recently written snapshot under ``root``, if any."""
    paths = sorted(Path(root).glob("*.parquet"), key=lambda p: p.stat().st_mtime_ns)
    return paths[-1] if paths else None
