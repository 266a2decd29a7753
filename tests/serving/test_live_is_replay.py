"""The replay is the live system: a small fleet's trace fed through the live path (each
hour's forecasts published for the service, its market round run by
``POST /v1/admin/market/rounds``, its readings posted to ``POST /v1/telemetry`` interval
by interval, on a SQLite store, the clock advancing by the trace) ends with exactly the
balances, funds, throttling and clearing prices of the replay's ``market`` policy on the
same trace and forecasts."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from serving_support import Api

from data.synthetic import generate_fleet
from market.cem.live_tables import booked as t_booked
from market.cem.tiers import POOL_REVENUE_ACCOUNT
from market.ledger import (
    FEES_ACCOUNT,
    EntryRequest,
    Transfer,
    credits_asset,
    instance_credits,
    mint_account,
    pool_account,
)
from market.venue.tables import auctions as t_auctions
from pipelines.replay.engine import PolicyResult, run_policy
from pipelines.replay.fleet import STEPS_PER_HOUR, ReplayFleet, prepare_fleet
from pipelines.replay.forecasts import ForecastTable, oracle_forecasts
from pipelines.replay.scenario import Scenario, load_scenario
from serving.tokens import TokenKind

HOURS = 48
ROUNDS = "/v1/admin/market/rounds"
STEP = timedelta(minutes=5)


def _tiers_config(fleet: ReplayFleet, scenario: Scenario, path: Path) -> Path:
    """Write the replayed fleet's tiers, hosts and instances as the service's tier file."""
    lines = ["[exchange]", f"fee_bps = {scenario.fee_bps}", 'administrators = ["admin"]', ""]
    for tier in fleet.tiers:
        hardware = tier.hardware
        lines += [
            "[[tiers]]",
            f'name = "{tier.name}"',
            f'cpu_ghz = "{hardware.cpu_ghz}"',
            f'memory_gib_per_vcpu = "{hardware.memory_gib_per_vcpu}"',
            f'ssd = "{hardware.ssd}"',
            f'network_gbps = "{hardware.network_gbps}"',
            f'baseline_pct = "{tier.baseline_bps / 100}"',
            f'exchange_rate = "{tier.exchange_rate / 1_000_000}"',
            "",
        ]
    for name, vcpus in zip(fleet.tier_names, fleet.host_vcpus.tolist(), strict=True):
        lines += ["[[hosts]]", f'id = "{name}-hosts"', f'tier = "{name}"', f"vcpus = {vcpus}", ""]
    for iid, k, vcpus in zip(fleet.ids, fleet.tier_of.tolist(), fleet.vcpus.tolist(), strict=True):
        tier = fleet.tier_names[k]
        lines += ["[[instances]]", f'id = "{iid}"', f'tier = "{tier}"', f"vcpus = {vcpus}"]
        lines += [f'owner = "{iid}"', ""]
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="module")
def replayed() -> tuple[ReplayFleet, Scenario, ForecastTable, PolicyResult]:
    scenario = load_scenario("scarce-values")
    frame = generate_fleet(24, HOURS / 24, seed=11, start="2026-12-01")
    fleet = prepare_fleet(frame, scenario)
    forecasts = oracle_forecasts(fleet, 24)
    return fleet, scenario, forecasts, run_policy(fleet, scenario, "market", forecasts)


def _open_live(api: Api, fleet: ReplayFleet, scenario: Scenario) -> None:
    """Give the live fleet what the replay's opens with: balances, funds, owner values."""
    market = api.services.market
    opening = [
        Transfer(mint_account(credits_asset(fleet.tier_names[k])), instance_credits(str(i)), b)
        for i, k, b in zip(
            fleet.ids, fleet.tier_of.tolist(), fleet.start_balance.tolist(), strict=True
        )
        if b > 0
    ]
    market.ledger.post(EntryRequest(tuple(opening), "opening", "admin"))
    for iid, value in zip(fleet.ids, fleet.value.tolist(), strict=True):
        market.exchange.deposit_funds(str(iid), scenario.starting_funds, actor="admin")
        api.services.owner_values.set(str(iid), int(value), str(iid))


def _serve_forecasts(api: Api, fleet: ReplayFleet, forecasts: ForecastTable, hour: int) -> None:
    """Publish the hour's forecasts as the ``predict`` flow does, for the service to serve."""
    at = fleet.start + timedelta(hours=hour)
    rows = []
    for iid, forecast in forecasts.at(hour, fleet.ids, at).items():
        for name, horizon in forecast.horizons.items():
            for h, (point, q50, q90) in enumerate(
                zip(horizon.point, horizon.quantiles["q50"], horizon.quantiles["q90"], strict=True)
            ):
                rows.append(
                    {
                        "unique_id": iid,
                        "horizon": name,
                        "ds": pd.Timestamp(at + timedelta(hours=h + 1)),
                        "yhat": point,
                        "q50": q50,
                        "q90": q90,
                        "model": "oracle",
                        "source": "learned",
                        "model_name": "creditx-fleet-forecaster",
                        "model_version": str(hour + 1),
                        "generated_at": pd.Timestamp(at),
                    }
                )
    directory = api.services.settings.predictions_dir
    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(directory / "forecasts.parquet", index=False)
    manifest = {
        "model_name": "creditx-fleet-forecaster",
        "model_version": str(hour + 1),
        "generated_at": at.isoformat(),
        "snapshot": "replay",
        "rows": len(rows),
        "instances": len(fleet.ids),
        "horizons": {"hour": 1, "day": 24},
        "quantiles": [0.5, 0.9],
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    api.services.forecasts.refresh()


def _run_live(
    api: Api, fleet: ReplayFleet, forecasts: ForecastTable, post: Callable[[int], Any]
) -> None:
    for hour in range(fleet.hours):
        at = fleet.start + timedelta(hours=hour)
        api.clock.set(at)
        _serve_forecasts(api, fleet, forecasts, hour)
        done = api.client.post(ROUNDS, json={"hour": at.isoformat()}, headers=api.admin())
        assert done.status_code == 200, done.text
        assert done.json()["stage"] == "done"
        for step in range(STEPS_PER_HOUR):
            api.clock.set(at + (step + 1) * STEP)
            response = post(hour * STEPS_PER_HOUR + step)
            assert response.status_code == 200, response.text
            assert [b["instances"] for b in response.json()["booked"]] == [len(fleet.ids)]
    api.services.market.rounds.settle(fleet.start + timedelta(hours=fleet.hours))


def _live_figures(api: Api, fleet: ReplayFleet) -> dict[str, Any]:
    market = api.services.market
    with market.engine.connect() as conn:
        throttled = dict(
            conn.execute(
                sa.select(t_booked.c.instance_id, sa.func.sum(t_booked.c.throttled)).group_by(
                    t_booked.c.instance_id
                )
            ).all()
        )
        auctions = conn.execute(sa.select(t_auctions)).all()
    prices = np.full((fleet.hours, len(fleet.tier_names)), np.nan)
    for row in auctions:
        if row.clearing_price is not None:
            hour = int(
                (pd.Timestamp(row.auction_id.split("-", 1)[1]) - fleet.start).total_seconds()
            )
            prices[hour // 3600, fleet.tier_names.index(row.tier)] = row.clearing_price
    return {
        "balances": _instance_balances(market.ledger.balances(), fleet),
        "throttled": [int(throttled[str(i)]) for i in fleet.ids],
        "prices": prices,
    }


def _instance_balances(balances: dict[str, int], fleet: ReplayFleet) -> dict[str, int]:
    """Return the instances' credits and funds, the pools, fees and pool revenue."""
    keep = {f"instance:{i}:" for i in fleet.ids}
    exchange = (POOL_REVENUE_ACCOUNT, FEES_ACCOUNT, *(pool_account(t) for t in fleet.tier_names))
    return {
        a: b
        for a, b in balances.items()
        if b and (a in exchange or any(a.startswith(k) for k in keep))
    }


def test_the_live_path_books_exactly_what_the_replay_books(
    replayed: tuple[ReplayFleet, Scenario, ForecastTable, PolicyResult], make_api: Any, tmp_path
) -> None:
    fleet, scenario, forecasts, result = replayed
    assert result.ledger is not None
    config = _tiers_config(fleet, scenario, tmp_path / "tiers.toml")
    api = make_api(predictions=False, tiers_config=config)
    _open_live(api, fleet, scenario)
    token = api.services.tokens.issue(TokenKind.COLLECTOR, "collector").token
    headers = {"Authorization": f"Bearer {token}"}

    def post(step: int) -> Any:
        start = (fleet.start + step * STEP).isoformat().replace("+00:00", "Z")
        readings = [
            {"instance_id": str(i), "interval_start": start, "cpu_percent": float(u)}
            for i, u in zip(fleet.ids, fleet.utilisation[:, step].tolist(), strict=True)
        ]
        return api.client.post("/v1/telemetry", json={"readings": readings}, headers=headers)

    _run_live(api, fleet, forecasts, post)
    live = _live_figures(api, fleet)
    # the replay traded, throttled and priced its pool: the comparison is not vacuous
    assert result.trades.sum() > 0
    assert result.instance_throttled.sum() > 0
    assert live["throttled"] == result.instance_throttled.tolist()
    np.testing.assert_array_equal(live["prices"], result.clearing_price_series)
    replayed_balances = _instance_balances(result.ledger.balances(), fleet)
    assert replayed_balances[POOL_REVENUE_ACCOUNT] > 0  # the pool was priced
    assert live["balances"] == replayed_balances
