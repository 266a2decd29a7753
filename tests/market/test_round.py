"""The market round's pool offers: what a pool offers, at what reserve, and its close."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from market.agents.decision import OwnerPolicy
from market.cem.tiers import POOL_REVENUE_ACCOUNT, TierManager, load_config
from market.clock import ManualClock
from market.ledger import (
    FUNDS,
    AccountKind,
    EntryRequest,
    Ledger,
    MemoryStore,
    Transfer,
    credits_asset,
    instance_credits,
    instance_funds,
    mint_account,
    pool_account,
)
from market.round import RATE_UNIT, MarketRound, reference_value
from market.units import MILLI_PER_CREDIT
from market.venue.book import BookConfig
from market.venue.handling import OrderRequest, Venue
from market.venue.orders import Side

NOW = datetime(2026, 12, 1, tzinfo=UTC)
REFERENCE = 80  # minor units per credit at exchange rate 1.0


def _market(level: int) -> tuple[Ledger, Venue, TierManager, MarketRound]:
    clock = ManualClock(NOW)
    tiers = load_config()
    ledger = Ledger(MemoryStore(), clock)
    tiers.open_accounts(ledger)
    ledger.open_accounts([(mint_account(FUNDS), FUNDS, AccountKind.MINT)])
    asset = credits_asset("gold")
    ledger.post(
        EntryRequest((Transfer(mint_account(asset), pool_account("gold"), level),), "s", "t")
    )
    venue = Venue(ledger, clock, [BookConfig(tier=t.name, tick_size=1) for t in tiers.tiers()])
    market = MarketRound(ledger, venue, tiers, OwnerPolicy(throttle_cost=100), REFERENCE)
    market.register_pool_sellers()
    return ledger, venue, tiers, market


def _pools(ledger: Ledger, market: MarketRound) -> np.ndarray:
    return np.array([ledger.balance(p) for p in market.pool_accounts], dtype=np.int64)


def test_the_reference_is_the_median_value_per_unit_of_value() -> None:
    values = np.array([100, 300, 50])
    rates = np.array([RATE_UNIT, 3 * RATE_UNIT, RATE_UNIT // 2])
    assert reference_value(values, rates) == 100  # 100, 100 and 100 per unit of value


def test_a_full_pool_offers_what_lies_above_half_its_capacity_in_two_slices() -> None:
    capacity = load_config().pool_capacity("gold")
    ledger, _, tiers, market = _market(capacity)
    offers = market.pool_offers(_pools(ledger, market))
    gold = [o for o in offers if o.instance_id == "pool-gold"]
    assert [o.quantity for o in gold] == [capacity - capacity * 3 // 4, capacity // 4]
    rate = tiers.tier("gold").exchange_rate
    reference = REFERENCE * rate // RATE_UNIT
    eighth = capacity - capacity * 7 // 8
    # the upper slice is priced as a pool 7/8 full, the lower as one 5/8 full: cheaper above
    assert gold[0].price == -(-reference * eighth // capacity)
    assert gold[1].price == -(-reference * (capacity - capacity * 5 // 8) // capacity)
    assert gold[0].price < gold[1].price
    assert all(o.side is Side.SELL for o in gold)
    assert ledger.balance(pool_account("gold")) == capacity // 2
    assert ledger.balance(instance_credits("pool-gold")) == sum(o.quantity for o in gold)
    assert [o for o in offers if o.instance_id != "pool-gold"] == []  # the other pools are empty


def test_a_pool_at_or_below_half_offers_nothing_and_books_nothing() -> None:
    capacity = load_config().pool_capacity("gold")
    ledger, _, _, market = _market(capacity // 2)
    entries = ledger.verify().entries
    assert market.pool_offers(_pools(ledger, market)) == []
    assert ledger.verify().entries == entries


@pytest.mark.parametrize("bought_credits", [0, 3, 40])
def test_closing_returns_the_unsold_credits_and_books_the_proceeds(bought_credits: int) -> None:
    capacity = load_config().pool_capacity("gold")
    ledger, venue, _, market = _market(capacity)
    asset = credits_asset("gold")
    total = sum(t for a, t in ledger.balances().items() if ledger.account(a).asset == asset)
    offers = market.pool_offers(_pools(ledger, market))
    venue.register_instance("buyer", "gold")
    ledger.post(
        EntryRequest(
            (Transfer(mint_account(FUNDS), instance_funds("buyer"), 10**9),), "deposit", "t"
        )
    )
    bids = []
    if bought_credits:
        bids = [OrderRequest("buyer", Side.BUY, 10**4, bought_credits * MILLI_PER_CREDIT)]
    venue.submit_to_auction([*bids, *offers])
    auction = venue.run_auction("gold", auction_id="gold-test")
    proceeds = market.close_pool_offers()
    assert proceeds == sum(t.value for t in auction.trades)
    assert ledger.balance(POOL_REVENUE_ACCOUNT) == proceeds
    assert ledger.balance(instance_credits("buyer")) == bought_credits * MILLI_PER_CREDIT
    assert ledger.balance(instance_credits("pool-gold")) == 0
    assert ledger.balance(instance_funds("pool-gold")) == 0
    assert ledger.balance(pool_account("gold")) == capacity - bought_credits * MILLI_PER_CREDIT
    after = sum(t for a, t in ledger.balances().items() if ledger.account(a).asset == asset)
    assert after == total  # no credit appears or vanishes
