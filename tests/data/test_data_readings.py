"""Live reading batches (data.readings): every problem found and named, row by row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.errors import InvalidReadingsError, MissingColumnError
from data.readings import ReadingBatch, check_readings, reading_problems

NOW = datetime(2026, 1, 5, 12, 0, 7, tzinfo=UTC)
FLEET = {"vm-a", "vm-b"}
T = datetime(2026, 1, 5, 11, 50, tzinfo=UTC)


def test_a_clean_batch_passes_and_round_trips_through_the_frame_contract() -> None:
    batch = ReadingBatch.from_records(
        [("vm-a", T, 12.5), ("vm-b", T, 0.0), ("vm-a", T + timedelta(minutes=5), 100.0)]
    )
    check_readings(batch, instances=FLEET, now=NOW)
    again = ReadingBatch.from_frame(batch.to_frame())
    assert again.instance_id.tolist() == ["vm-a", "vm-b", "vm-a"]
    assert np.array_equal(again.interval_start_us, batch.interval_start_us)
    assert again.cpu_percent.tolist() == [12.5, 0.0, 100.0]


@pytest.mark.parametrize(
    ("record", "field", "problem"),
    [
        (("vm-a", T, float("nan")), "cpu_percent", "nan"),
        (("vm-a", T, None), "cpu_percent", "nan"),
        (("vm-a", T, -0.5), "cpu_percent", "negative"),
        (("vm-a", T, float("-inf")), "cpu_percent", "negative"),
        (("vm-a", T, 100.01), "cpu_percent", "above_100"),
        (("vm-ghost", T, 5.0), "instance_id", "unknown_instance"),
        (("vm-a", T + timedelta(minutes=2), 5.0), "interval_start", "off_grid"),
        (("vm-a", T + timedelta(minutes=10), 5.0), "interval_start", "not_ended"),
        (("vm-a", datetime(1970, 1, 20, tzinfo=UTC), 5.0), "interval_start", "out_of_range"),
    ],
)
def test_each_problem_refuses_the_batch_and_names_the_row(
    record: tuple[str, datetime, float | None], field: str, problem: str
) -> None:
    batch = ReadingBatch.from_records([("vm-b", T, 3.0), record], source="post")
    with pytest.raises(InvalidReadingsError, match=r"^post: row 1: ") as caught:
        check_readings(batch, instances=FLEET, now=NOW)
    assert caught.value.total == 1
    found = caught.value.problems[0]
    assert (found.row, found.field, found.problem) == (1, field, problem)
    assert found.as_dict()["problem"] == problem


def test_every_problem_of_a_row_is_listed_and_the_list_is_capped() -> None:
    bad = [("vm-ghost", T + timedelta(minutes=1), -1.0)] * 150
    problems, total = reading_problems(
        ReadingBatch.from_records(bad), instances=FLEET, now=NOW, limit=100
    )
    assert total == 450  # three problems in each of 150 rows
    assert len(problems) == 100
    assert {p.problem for p in problems if p.row == 0} == {
        "unknown_instance",
        "off_grid",
        "negative",
    }


def test_a_frame_without_a_column_is_refused_by_name() -> None:
    with pytest.raises(MissingColumnError, match="'y'"):
        ReadingBatch.from_frame(pd.DataFrame({"unique_id": ["a"], "ds": [T]}), "drop.parquet")


def test_files_in_the_api_columns_or_the_contract_read_as_batches(tmp_path: Path) -> None:
    api_csv = tmp_path / "drop.csv"
    api_csv.write_text(
        "instance_id,interval_start,cpu_percent\n"
        "vm-b,2026-01-05T11:50:00Z,4.5\n"
        "vm-a,2026-01-05T11:50:00Z,\n"
    )
    read = ReadingBatch.read(api_csv)
    assert read.instance_id.tolist() == ["vm-a", "vm-b"]  # sorted by instance
    assert np.isnan(read.cpu_percent[0])
    assert read.cpu_percent[1] == 4.5
    with pytest.raises(InvalidReadingsError) as caught:
        check_readings(read, instances=FLEET, now=NOW)
    problem = caught.value.problems[0]
    assert (problem.instance_id, problem.interval_start, problem.problem) == (
        "vm-a",
        "2026-01-05T11:50:00Z",
        "nan",
    )
    contract = tmp_path / "drop.parquet"
    ReadingBatch.from_records([("vm-a", T, 1.0)]).to_frame().to_parquet(contract)
    assert ReadingBatch.read(contract).cpu_percent.tolist() == [1.0]
