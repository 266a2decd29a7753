"""Loaders: every format on small files written here, broken ones, and the real trace."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.errors import (
    EmptyTelemetryError,
    InstancesRejectedError,
    InvalidParameterError,
    MissingColumnError,
    TelemetryFormatError,
    TelemetryParseError,
)
from data.frame import validate_frame
from data.loaders import AZURE_ORIGIN, load_telemetry, read_telemetry

# Azure vm_cpu_readings rows: seconds, vm id, min, max, avg; interleaved by time.
AZURE_ROWS = [
    "0,vmA,1.0,9.0,5.0",
    "0,vmB,2.0,30.0,20.0",
    "300,vmA,1.5,8.0,6.0",
    "300,vmB,2.5,40.0,25.0",
    "600,vmA,1.0,7.0,4.0",
    "600,vmB,3.0,50.0,30.0",
]
# vmtable: vm id, subscription, deployment, created, deleted, max, avg, p95, category,
# core count bucket, memory bucket.
VMTABLE_ROWS = [
    "vmA,s1,d1,0,2591700,90.0,5.0,20.0,Interactive,2,4",
    "vmB,s2,d2,0,2591700,99.0,25.0,80.0,Delay-insensitive,>24,64",
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_shared_parquet_schema_on_the_real_trace(azure_trace: Path) -> None:
    frame = load_telemetry(azure_trace)
    validate_frame(frame)
    assert len(frame) == 800_400
    assert frame["unique_id"].nunique() == 100
    assert frame["ds"].min() == AZURE_ORIGIN
    raw = pd.read_parquet(azure_trace).sort_values(["instance_id", "ts"], kind="stable")
    np.testing.assert_allclose(frame["y"].to_numpy(), raw["cpu_avg"].to_numpy(), rtol=1e-7)
    np.testing.assert_allclose(frame["y_max"].to_numpy(), raw["cpu_max"].to_numpy(), rtol=1e-7)


def test_real_trace_validates_clean(azure_trace: Path) -> None:
    result = read_telemetry(azure_trace)
    assert set(result.report["status"]) == {"ok"}
    assert result.interval == pd.Timedelta("5min")
    assert (result.report["rows"] == 8004).all()


@pytest.mark.parametrize("gz", [False, True])
def test_azure_readings_csv_and_gz_with_vmtable(tmp_path: Path, gz: bool) -> None:
    text = "\n".join(AZURE_ROWS) + "\n"
    if gz:
        path = tmp_path / "vm_cpu_readings-file-1-of-1.csv.gz"
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path = tmp_path / "vm_cpu_readings-file-1-of-1.csv"
        path.write_text(text)
    vmtable = _write(tmp_path / "vmtable.csv", VMTABLE_ROWS)
    frame = load_telemetry(path, vmtable=vmtable)
    validate_frame(frame)
    assert frame["unique_id"].tolist() == ["vmA"] * 3 + ["vmB"] * 3
    assert frame["y"].tolist() == [5.0, 6.0, 4.0, 20.0, 25.0, 30.0]
    assert frame["y_max"].tolist() == [9.0, 8.0, 7.0, 30.0, 40.0, 50.0]
    assert frame["vcpus"].tolist() == [2] * 3 + [32] * 3  # ">24" reads as 32
    assert frame["ds"].iloc[1] == AZURE_ORIGIN + pd.Timedelta("5min")


def test_azure_origin_is_a_parameter(tmp_path: Path) -> None:
    path = _write(tmp_path / "readings.csv", AZURE_ROWS)
    frame = load_telemetry(path, format="azure", origin="2019-01-01T00:00:00Z")
    assert frame["ds"].min() == pd.Timestamp("2019-01-01", tz="UTC")


def test_azure_directory_of_files(tmp_path: Path) -> None:
    _write(tmp_path / "vm_cpu_readings-file-1-of-2.csv", AZURE_ROWS[:4])
    _write(tmp_path / "vm_cpu_readings-file-2-of-2.csv", AZURE_ROWS[4:])
    frame = load_telemetry(tmp_path)
    assert len(frame) == 6
    assert frame.groupby("unique_id")["ds"].is_monotonic_increasing.all()


def test_azure_bad_value_names_file_line_and_column(tmp_path: Path) -> None:
    rows = [*AZURE_ROWS]
    rows[3] = "300,vmB,2.5,40.0,high"
    path = _write(tmp_path / "readings.csv", rows)
    with pytest.raises(
        TelemetryParseError, match=r"readings\.csv: row 4, column 'cpu_avg'"
    ) as info:
        load_telemetry(path)
    assert (info.value.row, info.value.column, info.value.value) == (4, "cpu_avg", "high")


def test_vmtable_without_a_vm_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "readings.csv", AZURE_ROWS)
    vmtable = _write(tmp_path / "vmtable.csv", VMTABLE_ROWS[:1])
    with pytest.raises(TelemetryFormatError, match="no row for 'vmB'"):
        load_telemetry(path, vmtable=vmtable)


def test_cloudwatch_directory_one_file_per_instance(tmp_path: Path) -> None:
    _write(
        tmp_path / "i-0abc.csv",
        ["Timestamp,Value", "2024-03-01T00:05:00Z,12.5", "2024-03-01T00:00:00Z,10"],
    )
    _write(tmp_path / "i-0def.csv", ["timestamp,value", "2024-03-01 00:00:00+01:00,50"])
    frame = load_telemetry(tmp_path)
    assert frame["unique_id"].tolist() == ["i-0abc", "i-0abc", "i-0def"]
    assert frame["y"].tolist() == [10.0, 12.5, 50.0]  # sorted by time
    assert frame["ds"].iloc[2] == pd.Timestamp("2024-02-29T23:00:00Z")


def test_cloudwatch_glob(tmp_path: Path) -> None:
    _write(tmp_path / "i-1.csv", ["timestamp,value", "2024-03-01T00:00:00Z,1"])
    _write(tmp_path / "i-2.csv", ["timestamp,value", "2024-03-01T00:00:00Z,2"])
    _write(tmp_path / "other.txt", ["not telemetry"])
    frame = load_telemetry(str(tmp_path / "i-*.csv"))
    assert frame["unique_id"].tolist() == ["i-1", "i-2"]


def test_mapped_csv_and_parquet(tmp_path: Path) -> None:
    raw = pd.DataFrame(
        {
            "host": ["web-1", "web-1", "db-1"],
            "time": ["2024-01-01T00:00Z", "2024-01-01T00:05Z", "2024-01-01T00:00Z"],
            "cpu": [10.0, 20.0, 30.0],
            "cores": [2, 2, 8],
        }
    )
    mapping = {"unique_id": "host", "ds": "time", "y": "cpu", "vcpus": "cores"}
    raw.to_csv(tmp_path / "hosts.csv", index=False)
    raw.to_parquet(tmp_path / "hosts.parquet", index=False)
    from_csv = load_telemetry(tmp_path / "hosts.csv", columns=mapping)
    from_parquet = load_telemetry(tmp_path / "hosts.parquet", columns=mapping)
    for frame in (from_csv, from_parquet):
        assert frame["unique_id"].tolist() == ["db-1", "web-1", "web-1"]
        assert frame["y"].tolist() == [30.0, 10.0, 20.0]
        assert frame["vcpus"].tolist() == [8, 2, 2]


def test_contract_csv_needs_no_mapping(tmp_path: Path) -> None:
    _write(tmp_path / "f.csv", ["unique_id,ds,y", "a,2024-01-01T00:00Z,1", "a,2024-01-01T01:00Z,2"])
    assert load_telemetry(tmp_path / "f.csv")["y"].tolist() == [1.0, 2.0]


def test_chunked_reading_gives_the_same_frame_and_true_line_numbers(tmp_path: Path) -> None:
    lines = ["unique_id,ds,y"] + [f"vm{i % 3},2024-01-01T00:{i:02d}:00Z,{i}" for i in range(20)]
    path = _write(tmp_path / "f.csv", lines)
    pd.testing.assert_frame_equal(
        load_telemetry(path, chunk_rows=3), load_telemetry(path, chunk_rows=1000)
    )
    lines[15] = "vm2,2024-01-01T00:14:00Z,oops"
    _write(path, lines)
    with pytest.raises(TelemetryParseError, match="row 16, column 'y'"):
        load_telemetry(path, chunk_rows=4)


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    _write(tmp_path / "f.csv", ["host,time,cpu", "a,2024-01-01,1"])
    with pytest.raises(MissingColumnError, match=r"f\.csv: missing column 'load'"):
        load_telemetry(tmp_path / "f.csv", columns={"unique_id": "host", "ds": "time", "y": "load"})


def test_unparseable_timestamp_names_the_line(tmp_path: Path) -> None:
    _write(tmp_path / "f.csv", ["unique_id,ds,y", "a,2024-01-01T00:00Z,1", "a,tuesday,2"])
    with pytest.raises(TelemetryParseError, match="row 3, column 'ds': expected a timestamp"):
        load_telemetry(tmp_path / "f.csv")


def test_empty_file_and_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(EmptyTelemetryError, match="empty"):
        load_telemetry(tmp_path / "empty.csv")
    _write(tmp_path / "header.csv", ["unique_id,ds,y"])
    with pytest.raises(EmptyTelemetryError, match=r"header\.csv"):
        load_telemetry(tmp_path / "header.csv")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(EmptyTelemetryError, match="nothing"):
        load_telemetry(tmp_path / "nothing")


def test_wrong_formats(tmp_path: Path) -> None:
    _write(tmp_path / "f.json", ['{"y": 1}'])
    with pytest.raises(TelemetryFormatError, match=r"f\.json: expected a Parquet"):
        load_telemetry(tmp_path / "f.json")
    (tmp_path / "fake.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(TelemetryFormatError, match=r"fake\.parquet: expected a Parquet file"):
        load_telemetry(tmp_path / "fake.parquet")
    _write(tmp_path / "odd.csv", ["a,b,c", "1,2,3"])
    with pytest.raises(TelemetryFormatError, match="found columns"):
        load_telemetry(tmp_path / "odd.csv")
    with pytest.raises(TelemetryFormatError, match="not found"):
        load_telemetry(tmp_path / "absent.csv")
    with pytest.raises(InvalidParameterError, match="format"):
        load_telemetry(tmp_path / "odd.csv", format="xml")  # type: ignore[arg-type]


def test_partly_bad_file_keeps_the_good_instances(tmp_path: Path) -> None:
    lines = ["unique_id,ds,y"]
    for minute in range(0, 30, 5):
        lines += [f"good,2024-01-01T00:{minute:02d}Z,5", f"bad,2024-01-01T00:{minute:02d}Z,6"]
    lines[6] = "bad,2024-01-01T00:10Z,n/a"
    path = _write(tmp_path / "fleet.csv", lines)
    result = read_telemetry(path)
    assert set(result.frame["unique_id"]) == {"good"}
    assert len(result.frame) == 6
    bad = result.report.set_index("unique_id").loc["bad"]
    assert bad["status"] == "rejected"
    assert "row 7, column 'y': expected a number, got 'n/a'" in bad["problems"]
    with pytest.raises(TelemetryParseError, match="row 7"):
        load_telemetry(path)


def test_all_bad_file_raises_with_the_report(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.csv", ["unique_id,ds,y", "a,2024-01-01T00:00Z,x"])
    with pytest.raises(InstancesRejectedError, match="all 1 instances") as info:
        read_telemetry(path)
    assert info.value.report["status"].tolist() == ["rejected"]


def test_empty_cells_are_missing_values_for_validation(tmp_path: Path) -> None:
    lines = ["unique_id,ds,y"] + [f"a,2024-01-01T00:{m:02d}Z,{m}" for m in range(0, 30, 5)]
    lines[3] = "a,2024-01-01T00:10Z,"
    result = read_telemetry(_write(tmp_path / "f.csv", lines))
    row = result.report.iloc[0]
    assert (row["nan"], row["status"]) == (1, "repaired")
    assert result.frame["y"].tolist() == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
