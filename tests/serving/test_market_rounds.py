"""The hourly market round over the API, on a real store: the pools' credits sold to the
highest values, money and credits conserved, each round exactly once."""

from __future__ import annotations

import shutil
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from serving_support import START, Api, write_predictions

from market.cem.tiers import POOL_REVENUE_ACCOUNT
from market.clock import ManualClock
from market.crashpoints import kill_at, set_crash_hook
from market.ledger import (
    FEES_ACCOUNT,
    EntryRequest,
    Transfer,
    credits_asset,
    instance_credits,
    instance_funds,
    mint_account,
    pool_account,
)
from market.venue.tables import auctions as t_auctions
from serving.forecasts import agent_forecasts
from serving.services import Services, build_services
from serving.settings import Settings
from tests.market.crash_workload import killed_child

ROUND = "/v1/admin/market/rounds"
FUNDS = 10_000_000


def seed_scarce_gold(api: Api) -> int:
    """Fill gold's pool to capacity and give every instance money and no credits; the
    gold owners value a credit very differently. Return gold's pool capacity."""
    market = api.services.market
    capacity = market.tiers.pool_capacity("gold")
    asset = credits_asset("gold")
    market.ledger.post(
        EntryRequest((Transfer(mint_account(asset), pool_account("gold"), capacity),), "seed", "t")
    )
    for instance in market.tiers.instances():
        api.deposit(instance.id, FUNDS)
    for instance_id, value in (("vm-gold-1", 900), ("vm-gold-2", 20)):
        response = api.client.put(
            f"/v1/instances/{instance_id}/owner-value",
            json={"value": value},
            headers=api.agent(instance_id),
        )
        assert response.status_code == 200, response.text
    return capacity


def totals(api: Api) -> Counter[str]:
    """Return every asset's total over the accounts that are not mints."""
    ledger = api.services.market.ledger
    out: Counter[str] = Counter()
    for account_id, amount in ledger.balances().items():
        if not account_id.startswith("mint:"):
            out[ledger.account(account_id).asset] += amount
    return out


def test_a_round_sells_the_pool_to_the_owners_who_value_it_and_runs_once(api: Api) -> None:
    capacity = seed_scarce_gold(api)
    before = totals(api)
    response = api.client.post(ROUND, json={}, headers=api.admin())
    assert response.status_code == 200, response.text
    done = response.json()
    assert done["round_id"] == "2026-11-24T15:00Z"
    assert done["stage"] == "done"
    record = done["record"]
    assert record["pools_before"]["gold"] == capacity
    assert {o["seller"] for o in record["offers"]} == {"pool-gold"}
    gold = next(a for a in record["auctions"] if a["tier"] == "gold")
    assert gold["trades"] > 0
    assert gold["volume_credits"] > 0
    assert sorted(a["tier"] for a in record["auctions"]) == sorted(record["pools_before"])
    ledger = api.services.market.ledger
    high, low = (ledger.balance(instance_credits(i)) for i in ("vm-gold-1", "vm-gold-2"))
    assert high > low  # the owner who values a credit at 900 got more than the one at 20
    # the pools' sellers are closed: unsold credits went back, proceeds to the provider
    for tier in record["pools_before"]:
        assert ledger.balance(instance_credits(f"pool-{tier}")) == 0
        assert ledger.balance(instance_funds(f"pool-{tier}")) == 0
    # money: what buyers paid is what the pools and sellers received plus the fees
    paid = sum(
        FUNDS - ledger.balance(instance_funds(i.id)) for i in api.services.market.tiers.instances()
    )
    assert paid == ledger.balance(POOL_REVENUE_ACCOUNT) + ledger.balance(FEES_ACCOUNT) > 0
    assert totals(api) == before  # no credit or unit of money appeared or vanished
    entries = ledger.verify().entries

    again = api.client.post(ROUND, json={"hour": START.isoformat()}, headers=api.admin())
    assert again.status_code == 200
    assert again.json() == done
    assert ledger.verify().entries == entries  # the second call booked nothing
    listed = api.client.get(ROUND, headers=api.admin()).json()
    assert [r["round_id"] for r in listed] == [done["round_id"]]
    one = api.client.get(f"{ROUND}/{done['round_id']}", headers=api.admin())
    assert one.json() == done


def test_rounds_refuse_other_callers_future_hours_and_unknown_ids(api: Api) -> None:
    agent = api.client.post(ROUND, json={}, headers=api.agent("vm-gold-1"))
    assert agent.status_code == 403
    assert api.client.post(ROUND, json={}).status_code == 401
    later = api.client.post(ROUND, json={"hour": "2026-11-24T16:00:00Z"}, headers=api.admin())
    assert later.status_code == 409
    assert "before its hour" in later.json()["detail"]
    naive = api.client.post(ROUND, json={"hour": "2026-11-24T15:00:00"}, headers=api.admin())
    assert naive.status_code == 422
    number = api.client.post(ROUND, json={"hour": 0}, headers=api.admin())
    assert number.status_code == 422
    assert api.client.get(f"{ROUND}/2026-11-24T14:00Z", headers=api.admin()).status_code == 404
    assert api.client.get(f"{ROUND}/yesterday", headers=api.admin()).status_code == 422
    assert api.client.get(ROUND, headers=api.admin()).json() == []


# a round killed at any commit and run again ends exactly where an unkilled one does


def _open(home: Path) -> Services:
    settings = Settings(home=home, forecast_reload_seconds=3600.0)
    services = build_services(settings, ManualClock(START), champion=None)
    services.forecasts.refresh()
    return services


def _run(services: Services) -> None:
    forecasts = agent_forecasts(services.forecasts.current, services.user_forecasts.forecast)
    services.market.rounds.run(START, forecasts, services.owner_values.values())


def _state(services: Services) -> dict[str, Any]:
    market = services.market
    found = market.rounds.get("2026-11-24T15:00Z")
    assert found is not None
    assert found.record is not None
    record = {k: v for k, v in found.record.items() if k != "agents"}
    with market.engine.connect() as conn:
        auctions = sorted(
            (r.auction_id, r.clearing_price, r.volume) for r in conn.execute(sa.select(t_auctions))
        )
    balances = {a: b for a, b in market.ledger.balances().items() if b}
    return {"stage": found.stage, "record": record, "auctions": auctions, "balances": balances}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[str]]:
    """A store seeded as in the test above, the outcome of its round run without a kill,
    and the crash points that run passes, in order."""
    template = tmp_path_factory.mktemp("rounds") / "template"
    services = _open(template)
    write_predictions(services.settings.predictions_dir, "1")
    services.forecasts.refresh()
    market = services.market
    capacity = market.tiers.pool_capacity("gold")
    asset = credits_asset("gold")
    market.ledger.post(
        EntryRequest((Transfer(mint_account(asset), pool_account("gold"), capacity),), "seed", "t")
    )
    for instance in market.tiers.instances():
        market.exchange.deposit_funds(instance.id, FUNDS, actor="admin")
    services.owner_values.set("vm-gold-1", 900, "vm-gold-1")
    services.owner_values.set("vm-gold-2", 20, "vm-gold-2")
    services.close()
    reference = template.parent / "reference"
    shutil.copytree(template, reference)
    services = _open(reference)
    trace: list[str] = []
    previous = set_crash_hook(trace.append)
    try:
        _run(services)
    finally:
        set_crash_hook(previous)
    state = _state(services)
    services.close()
    return template, state, trace


def test_a_round_killed_at_any_commit_finishes_once_when_run_again(
    seeded: tuple[Path, dict[str, Any], list[str]], tmp_path: Path
) -> None:
    template, reference, trace = seeded
    # the round passes every kind of its commits: offer, submission, auctions, close,
    # the CEM's decision, its swaps and the round's record
    assert {"round.finish.after_commit", "venue.auction_submit.after_commit"} <= set(trace)
    assert trace.count("venue.auction_run.after_commit") == 4
    assert reference["record"]["swaps"], "the seeded round's CEM swaps nothing"
    decided = trace.index("round.stage.after_commit", trace.index("venue.auction_run.after_commit"))
    assert "ledger.post.after_commit" in trace[decided:]  # a swap, after the decision
    cases = [(point, trace[: n + 1].count(point)) for n, point in enumerate(trace)]
    assert len(cases) >= 16
    for point, hit in cases:
        home = tmp_path / f"{point}-{hit}"
        shutil.copytree(template, home)

        def work(
            _: Callable[[str], None], home: Path = home, at: tuple[str, int] = (point, hit)
        ) -> None:
            set_crash_hook(None)  # opening the store passes crash points of its own
            services = _open(home)
            set_crash_hook(kill_at(*at))
            _run(services)

        code, _ = killed_child(work, point, hit)
        assert code == -signal.SIGKILL, f"{point} #{hit}: the child exited with {code}"
        services = _open(home)
        _run(services)
        assert _state(services) == reference, f"killed at {point} #{hit}"
        services.close()
