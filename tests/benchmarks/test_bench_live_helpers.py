"""The pure helpers of ``creditx bench live``'s market round and kill run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.live import fleet, fleet_of
from benchmarks.live_kill import STEP, KillRun, index_of, served_forecasts
from benchmarks.live_round import STAGES, Mark, forecast_of, stage_times
from market.clock import to_micros
from market.rounds import round_id_of

POST = "ledger.post.after_commit"
SUBMIT = "venue.auction_submit.after_commit"
AUCTION = "venue.auction_run.after_commit"
FINISH = "round.finish.after_commit"
# the commits a round passes, as it passes them: each after_commit below follows its
# before_commit and the ledger commits it makes
ROUND = [
    "ledger.post.before_commit",
    POST,  # the pools' offer
    "venue.auction_submit.before_commit",
    "ledger.post.before_commit",
    POST,
    SUBMIT,
    *(["venue.auction_run.before_commit", "ledger.post.before_commit", POST, AUCTION] * 4),
    "ledger.post.before_commit",
    POST,  # the offers' close
    "round.finish.before_commit",
    FINISH,
]


def _marks(points: list[str], walls: list[float]) -> list[Mark]:
    return [Mark(p, w, w / 2) for p, w in zip(points, walls, strict=True)]


def test_a_round_splits_into_its_stages_at_its_commits() -> None:
    marks = _marks(ROUND, [float(k + 1) for k in range(len(ROUND))])
    end = len(ROUND) + 1.0
    spent = stage_times(marks, Mark("start", 0.0, 0.0), Mark("end", end, end / 2))
    offer, submitted, closed = 2.0, 6.0, 24.0
    assert spent == {
        "offer": (offer, offer / 2),
        "decide+submit": (submitted - offer, (submitted - offer) / 2),
        "auctions+settle": (closed - submitted, (closed - submitted) / 2),
        "CEM+record": (end - closed, (end - closed) / 2),
    }


def test_a_round_that_offered_nothing_has_no_offer_stage() -> None:
    points = ROUND[2:]
    marks = _marks(points, [float(k + 1) for k in range(len(points))])
    spent = stage_times(marks, Mark("start", 0.0, 0.0), Mark("end", 30.0, 15.0))
    assert spent["offer"] is None
    assert spent["decide+submit"] is None
    assert spent["auctions+settle"] == (18.0, 9.0)


def test_a_round_resumed_past_its_auctions_times_no_stage_it_did_not_pass() -> None:
    marks = _marks([POST, "round.stage.after_commit"], [1.0, 2.0])
    spent = stage_times(marks, Mark("start", 0.0, 0.0), Mark("end", 3.0, 1.5))
    assert spent["offer"] == (1.0, 0.5)
    assert spent["decide+submit"] == (1.0, 0.5)
    assert spent["auctions+settle"] is None
    assert spent["CEM+record"] is None


@given(st.lists(st.floats(0.001, 10.0), min_size=len(ROUND) + 1, max_size=len(ROUND) + 1))
def test_the_stages_of_a_whole_round_add_up_to_its_time(gaps: list[float]) -> None:
    walls = np.cumsum(gaps).tolist()
    marks = _marks(ROUND, walls[:-1])
    end = Mark("end", walls[-1], walls[-1] / 2)
    spent = stage_times(marks, Mark("start", 0.0, 0.0), end)
    assert list(spent) == list(STAGES)
    times = [s for s in spent.values() if s is not None]
    assert len(times) == len(STAGES)
    assert sum(wall for wall, _ in times) == pytest.approx(end.wall)
    assert sum(cpu for _, cpu in times) == pytest.approx(end.cpu)


def test_a_forecast_holds_the_horizons_its_hours_cover() -> None:
    at = datetime(2026, 1, 5, 10, tzinfo=UTC)
    point = np.linspace(5, 40, 24)
    forecast = forecast_of(at, point, point + 10)
    assert sorted(forecast.horizons) == ["day", "hour"]
    day = forecast.horizons["day"]
    assert day.point == tuple(point.tolist()) == day.quantiles["q50"]
    assert all(u > p for u, p in zip(day.quantiles["q90"], day.point, strict=True))
    assert forecast.horizons["hour"].point == (point[0],)
    assert forecast.generated_at == at


def test_the_served_forecast_is_the_same_hours_of_the_day_before() -> None:
    hourly = np.arange(3 * 48, dtype=np.float64).reshape(3, 48)
    at = datetime(2024, 1, 2, 6, tzinfo=UTC)
    forecasts = served_forecasts(["a", "b", "c"], hourly, 30, at)
    day = forecasts["b"]
    assert day is not None
    assert day.horizons["day"].point == tuple(hourly[1, 6:30].tolist())
    assert day.horizons["day"].quantiles["q90"][0] == pytest.approx(min(100.0, 54 * 1.3 + 2))


def test_the_kill_run_resumes_at_the_interval_the_store_booked_last() -> None:
    run = KillRun(days=2)
    assert [index_of(to_micros(run.start + k * STEP), run) for k in (0, 1, 575)] == [0, 1, 575]
    hours = run.hours()
    assert len(hours) == 48 == run.intervals // 12
    assert hours[0] - run.start == timedelta(hours=1)
    assert len({round_id_of(h) for h in hours}) == len(hours)


def test_a_bench_fleet_holds_its_instances_alone_and_every_tier_a_pool() -> None:
    ids = [f"vm-{i}" for i in range(8)]
    manager = fleet_of(ids, ["bronze", "silver", "gold", "platinum"] * 2, [1, 2, 4, 8] * 2)
    assert sorted(i.id for i in manager.instances()) == ids
    assert all(manager.pool_capacity(t.name) > 0 for t in manager.tiers())
    assert [i.tier for i in fleet(5).instances()].count("bronze") == 2
