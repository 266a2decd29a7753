"""``creditx data`` commands, run through the real CLI app on files written here."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from data.synthetic import generate_fleet
from serving.cli import app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_generate_writes_the_seeded_fleet(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "fleet.parquet"
    args = ["data", "generate", "--out", str(out), "--instances", "7", "--days", "1"]
    result = runner.invoke(app, [*args, "--seed", "3", "--chunk-instances", "3"])
    assert result.exit_code == 0, result.output
    assert "wrote 7 instances, 2,016 rows" in result.output
    written = pd.read_parquet(out)
    expected = generate_fleet(7, 1, seed=3)
    assert written["y"].tolist() == expected["y"].tolist()
    assert written["unique_id"].astype(str).tolist() == expected["unique_id"].astype(str).tolist()


def test_describe_and_load(runner: CliRunner, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.parquet"
    generate_fleet(4, 3, seed=1).to_parquet(fleet, index=False)
    described = runner.invoke(app, ["data", "describe", str(fleet)])
    assert described.exit_code == 0, described.output
    assert "4 instances, 3,456 rows" in described.output
    assert "acf24" in described.output
    out = tmp_path / "copy.parquet"
    loaded = runner.invoke(app, ["data", "load", str(fleet), "--out", str(out)])
    assert loaded.exit_code == 0, loaded.output
    assert len(pd.read_parquet(out)) == 3456


def test_validate_prints_and_writes_the_report(runner: CliRunner, tmp_path: Path) -> None:
    lines = ["host,time,cpu"]
    for minute in range(0, 60, 5):
        lines += [f"ok-1,2024-01-01T00:{minute:02d}Z,5", f"gappy,2024-01-01T00:{minute:02d}Z,6"]
    del lines[4:12:2]  # four consecutive readings of "gappy"
    lines.append("broken,2024-01-01T00:00Z,seven")
    source = tmp_path / "hosts.csv"
    source.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.csv"
    mapping = ["--column", "unique_id=host", "--column", "ds=time", "--column", "y=cpu"]
    args = ["data", "validate", str(source), *mapping, "--report", str(report)]
    result = runner.invoke(app, [*args, "--max-gap", "2", "--long-gaps", "reject"])
    assert result.exit_code == 0, result.output
    assert "1 ok, 0 repaired, 2 rejected" in result.output
    table = pd.read_csv(report).set_index("unique_id")
    assert table.loc["gappy", "status"] == "rejected"
    assert table.loc["gappy", "longest_gap"] == 4
    assert "expected a number, got 'seven'" in table.loc["broken", "problems"]


def test_errors_exit_2_with_the_message(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "load", str(tmp_path / "absent.csv")])
    assert result.exit_code == 2
    assert "absent.csv: expected an existing file" in result.output
    bad = runner.invoke(app, ["data", "load", str(tmp_path), "--column", "unique_id"])
    assert bad.exit_code == 2
    assert "CONTRACT=SOURCE" in bad.output
    policy = runner.invoke(app, ["data", "validate", str(tmp_path), "--duplicates", "keep"])
    assert policy.exit_code == 2
    assert "duplicates" in policy.output


def test_validate_exits_2_when_everything_is_rejected(runner: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "f.csv"
    source.write_text("unique_id,ds,y\na,2024-01-01T00:00Z,x\n")
    result = runner.invoke(app, ["data", "validate", str(source)])
    assert result.exit_code == 2
    assert "all 1 instances were rejected" in result.output
