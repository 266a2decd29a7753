"""``creditx replay`` and ``creditx report`` on a real trace file, and the report's checks."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data.synthetic import generate_fleet
from pipelines.replay import POLICIES, ReportError
from pipelines.report import render_report, summary_rows
from serving.cli import app


def test_replay_writes_every_policy_with_its_figures(replay_document: dict) -> None:
    policies = replay_document["policies"]
    assert list(policies) == list(POLICIES)
    assert replay_document["instances"] == 8
    assert replay_document["hours"] == 72
    for name, figures in policies.items():
        for key in (
            "throttled_share",
            "throttled_vcpu_minutes",
            "credits_thrown_away",
            "trades",
            "volume_credits",
            "fees",
        ):
            assert key in figures, (name, key)
        assert figures["conservation_violations"] == 0
        assert 0.0 <= figures["throttled_share"] <= 1.0
        assert len(figures["series"]["pool_credits"]) == 72
    bound = policies["physical-limit"]["throttled_vcpu_minutes"]
    assert all(p["throttled_vcpu_minutes"] >= bound for p in policies.values())
    # Only the market policies trade; the fee is never more than the value traded allows.
    assert policies["static"]["trades"] == 0
    assert policies["pool+swap"]["trades"] == 0


def test_report_writes_one_page_with_plots_and_prints_the_table(
    replay_document: dict, tmp_path: Path
) -> None:
    source = tmp_path / "replay.json"
    source.write_text(json.dumps(replay_document))
    page = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["report", "--json", str(source), "--out", str(page)])
    assert result.exit_code == 0, result.output
    assert "market-oracle" in result.output
    html = page.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 5
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    for title in ("Throttling by policy and tier", "Pool levels", "Forecast against actual"):
        assert title in html
    rows = summary_rows(replay_document)
    assert [r[0] for r in rows] == list(POLICIES)
    assert all(f"<td>{r[1]}</td>" in html for r in rows)


def test_the_samples_hold_forecasts_an_hour_a_day_and_a_week_ahead_with_bands(
    replay_document: dict,
) -> None:
    samples = replay_document["forecast_samples"]
    assert [s["tier"] for s in samples] == replay_document["tiers"][: len(samples)]
    for sample in samples:
        for horizon, ahead in (("hour", 1), ("day", 24), ("week", 168)):
            path = sample[horizon]
            assert path["ahead_hours"] == ahead
            shown = [
                (lo, mid, hi)
                for lo, mid, hi in zip(path["q10"], path["forecast"], path["q90"], strict=True)
                if mid is not None
            ]
            # After the first day's fit, every hour of the three-day replay is forecast.
            assert len(shown) >= 48, (horizon, len(shown))
            assert all(lo <= mid <= hi for lo, mid, hi in shown), horizon
            assert any(lo < hi for lo, _, hi in shown), f"{horizon}: no band"
        assert sample["day"]["origins"] == [24, 48]
        assert sample["week"]["origins"] == [24]


def test_a_report_of_an_older_replay_still_draws_its_forecasts(replay_document: dict) -> None:
    # Written before the day and week paths: the hour-ahead forecast and its q90 only.
    older = dict(replay_document)
    older["forecast_samples"] = [
        {
            "instance": s["instance"],
            "tier": s["tier"],
            "actual": s["actual"],
            "forecast": s["hour"]["forecast"],
            "q90": s["hour"]["q90"],
        }
        for s in replay_document["forecast_samples"]
    ]
    page = render_report(older)
    assert page.count("data:image/png;base64,") == 5


def test_report_refuses_what_is_not_a_replay(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="'policies' is missing"):
        render_report({"tiers": [], "hours": 1, "start": "x"})
    with pytest.raises(ReportError, match="no policy"):
        render_report({"tiers": [], "hours": 1, "start": "x", "policies": {}})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--json", str(bad), "--out", str(page)])
    assert result.exit_code == 2
    assert "cannot read" in result.output
    assert not page.exists()


def test_replay_refuses_an_unknown_policy_and_writes_nothing(tmp_path: Path) -> None:
    trace = tmp_path / "trace.parquet"
    generate_fleet(4, 1, seed=1, attributes=False).to_parquet(trace)
    out = tmp_path / "replay.json"
    result = CliRunner().invoke(
        app, ["replay", "--data", str(trace), "--json", str(out), "--policies", "static,lottery"]
    )
    assert result.exit_code == 2
    assert "lottery" in result.output
    assert not out.exists()
