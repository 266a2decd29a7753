"""The CEM: swaps converted exactly at both rates, trades with a fee, audited rates, the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.cem.exchange import CreditExchange
from market.cem.registry import Registry
from market.cem.tiers import TierManager, load_config
from market.clock import ManualClock
from market.errors import (
    CrossTierTrade,
    InstanceNotFound,
    InsufficientCredits,
    InsufficientFunds,
    InsufficientHeadroom,
    InsufficientPoolCredits,
    InvalidParameter,
    NotAuthorised,
    TierNotFound,
    UnitMismatch,
)
from market.ledger import (
    EntryRequest,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidAmount,
    Ledger,
    MemoryStore,
    Transfer,
)
from market.migrations import upgrade
from market.units import Credits, Money, Price

START = datetime(2026, 1, 5, tzinfo=UTC)


def grant(ledger: Ledger, account: str, asset: str, amount: int) -> None:
    ledger.post(EntryRequest((Transfer(f"mint:{asset}", account, amount),), "grant", "t"))


@pytest.fixture
def tiers() -> TierManager:
    return load_config()


@pytest.fixture
def cem(ledger: Ledger, tiers: TierManager, clock: ManualClock) -> CreditExchange:
    tiers.open_accounts(ledger)
    grant(ledger, "pool:silver", "credits:silver", 1_000_000)
    grant(ledger, "instance:vm-gold-1:credits", "credits:gold", 50_000)
    exchange = CreditExchange(ledger, tiers, clock)
    exchange.deposit_funds("vm-gold-2", 10_000, actor="admin")
    return exchange


def test_swap_converts_at_both_rates_and_books_the_remainder(cem: CreditExchange) -> None:
    swap = cem.perform_credit_swap("silver", "gold", 1_001, actor="admin")
    # 1001 silver milli-credits at 1.5 are worth 1501.5 gold... at 2.2: 682.5 -> 682.
    assert (swap.amount_in, swap.amount_out) == (1_001, 682)
    assert swap.remainder == 1_001 * 1_500_000 - 682 * 2_200_000
    balances = cem.ledger.balances()
    assert balances["pool:silver"] == 1_000_000 - 1_001
    assert balances["pool:gold"] == 682
    assert balances["rounding:value"] == swap.remainder
    assert cem.ledger.verify().ok


@settings(max_examples=200, deadline=None)
@given(
    amount=st.integers(1, 10**12),
    source_rate=st.integers(1, 10**9),
    destination_rate=st.integers(1, 10**9),
)
def test_swap_arithmetic_matches_exact_fractions(
    amount: int, source_rate: int, destination_rate: int
) -> None:
    clock = ManualClock(START)
    tiers = load_config()
    tiers.set_exchange_rate("bronze", source_rate)
    tiers.set_exchange_rate("platinum", destination_rate)
    ledger = Ledger(MemoryStore(), clock)
    tiers.open_accounts(ledger)
    grant(ledger, "pool:bronze", "credits:bronze", amount)
    cem = CreditExchange(ledger, tiers, clock)
    exact = Fraction(amount * source_rate, destination_rate)
    expected_out = exact.numerator // exact.denominator
    if expected_out == 0:
        with pytest.raises(InvalidParameter, match="less than one milli-credit"):
            cem.perform_credit_swap("bronze", "platinum", amount, actor="admin")
        return
    if expected_out > tiers.pool_capacity("platinum"):
        with pytest.raises(InsufficientHeadroom):
            cem.perform_credit_swap("bronze", "platinum", amount, actor="admin")
        return
    swap = cem.perform_credit_swap("bronze", "platinum", amount, actor="admin")
    assert swap.amount_out == expected_out
    assert Fraction(swap.remainder, destination_rate) == exact - expected_out
    assert ledger.verify().ok


def test_refused_swaps_change_nothing(cem: CreditExchange, tiers: TierManager) -> None:
    before = cem.ledger.balances()
    with pytest.raises(InsufficientPoolCredits, match="'pool:gold': holds 0") as info:
        cem.perform_credit_swap("gold", "silver", 10, actor="admin")
    assert isinstance(info.value, InsufficientBalance)
    headroom = tiers.pool_capacity("gold")
    with pytest.raises(InsufficientHeadroom, match="pool 'gold' has room") as room:
        cem.perform_credit_swap("silver", "gold", 200_000_000, actor="admin")
    assert room.value.headroom == headroom
    assert room.value.requested == 136_363_636
    with pytest.raises(NotAuthorised, match="'vm-gold-1' is not an administrator"):
        cem.perform_credit_swap("silver", "gold", 10, actor="vm-gold-1")
    with pytest.raises(TierNotFound, match="'diamond'"):
        cem.perform_credit_swap("silver", "diamond", 10, actor="admin")
    with pytest.raises(InvalidParameter, match="equals the source"):
        cem.perform_credit_swap("silver", "silver", 10, actor="admin")
    with pytest.raises(InvalidParameter, match="less than one milli-credit"):
        cem.perform_credit_swap("silver", "platinum", 1, actor="admin")
    for bad in (0, -3, 2.5, float("nan"), 10**16):
        with pytest.raises(InvalidAmount):
            cem.perform_credit_swap("silver", "gold", bad, actor="admin")  # type: ignore[arg-type]
    assert cem.ledger.balances() == before


def test_headroom_counts_what_the_pool_already_holds(
    cem: CreditExchange, tiers: TierManager
) -> None:
    capacity = tiers.pool_capacity("gold")
    grant(cem.ledger, "pool:gold", "credits:gold", capacity - 100)
    with pytest.raises(InsufficientHeadroom, match="room for 100"):
        cem.perform_credit_swap("silver", "gold", 1_000, actor="admin")
    swap = cem.perform_credit_swap("silver", "gold", 146, actor="admin")
    assert swap.amount_out == 99
    assert tiers.pool(cem.ledger, "gold").headroom == 1


def test_a_trade_follows_the_venues_fee_rule(cem: CreditExchange) -> None:
    # 20 credits at 249 a credit: worth 4,980, and the buyer pays the fee on top
    trade = cem.facilitate_trade("vm-gold-1", "vm-gold-2", 20_000, 249, idempotency_key="t-1")
    assert (trade.quantity, trade.price) == (20_000, 249)
    assert trade.value == 20_000 * 249 // 1_000 == 4_980
    assert trade.fee == 4_980 * 20 // 10_000 == 9
    assert (trade.buyer, trade.seller, trade.tier) == ("vm-gold-2", "vm-gold-1", "gold")
    balances = cem.ledger.balances()
    assert balances["instance:vm-gold-1:credits"] == 30_000
    assert balances["instance:vm-gold-2:credits"] == 20_000
    assert balances["instance:vm-gold-2:funds"] == 10_000 - 4_980 - 9
    assert balances["instance:vm-gold-1:funds"] == 4_980
    assert balances["fees:funds"] == 9
    (entry,) = cem.ledger.entries(reason="trade")
    assert entry.id == trade.trade_id
    assert len(entry.transfers) == 3
    # The same key replays the trade without moving anything again.
    again = cem.facilitate_trade("vm-gold-1", "vm-gold-2", 20_000, 249, idempotency_key="t-1")
    assert again == trade
    assert cem.ledger.balances() == balances
    with pytest.raises(IdempotencyConflict, match="'t-1'"):
        cem.facilitate_trade("vm-gold-1", "vm-gold-2", 20_000, 250, idempotency_key="t-1")
    assert cem.ledger.balances() == balances


@settings(max_examples=100, deadline=None)
@given(quantity=st.integers(1, 10**6), price=st.integers(1, 10**6), fee_bps=st.integers(0, 9_999))
def test_the_fee_is_the_venues_rounded_down_basis_points(
    quantity: int, price: int, fee_bps: int
) -> None:
    from market.cem.tiers import ExchangeConfig

    clock = ManualClock(START)
    base = load_config()
    tiers = TierManager(
        base.tiers(), base.hosts(), base.instances(), ExchangeConfig(fee_bps=fee_bps)
    )
    ledger = Ledger(MemoryStore(), clock)
    tiers.open_accounts(ledger)
    value = Fraction(quantity * price, 1_000)
    fee = Fraction(value.numerator // value.denominator * fee_bps, 10_000)
    paid = value.numerator // value.denominator + fee.numerator // fee.denominator
    grant(ledger, "instance:vm-gold-1:credits", "credits:gold", quantity)
    grant(ledger, "instance:vm-gold-2:funds", "funds", max(1, paid))
    trade = CreditExchange(ledger, tiers, clock).facilitate_trade(
        "vm-gold-1", "vm-gold-2", quantity, price
    )
    assert (trade.value, trade.fee) == (
        value.numerator // value.denominator,
        fee.numerator // fee.denominator,
    )
    assert ledger.balance("instance:vm-gold-1:funds") == trade.value
    assert ledger.balance("fees:funds") == trade.fee
    assert ledger.balance("instance:vm-gold-2:funds") == max(1, paid) - paid


def test_refused_trades_change_nothing(cem: CreditExchange) -> None:
    before = cem.ledger.balances()
    with pytest.raises(InsufficientCredits, match="'instance:vm-gold-1:credits': holds 50000"):
        cem.facilitate_trade("vm-gold-1", "vm-gold-2", 50_001, 10)
    with pytest.raises(InsufficientFunds, match="'instance:vm-gold-2:funds': holds 10000"):
        cem.facilitate_trade("vm-gold-1", "vm-gold-2", 1_000, 10_001)
    with pytest.raises(CrossTierTrade, match="'gold' but the buyer's are 'silver'"):
        cem.facilitate_trade("vm-gold-1", "vm-silver-1", 1, 1)
    with pytest.raises(InvalidParameter, match="itself"):
        cem.facilitate_trade("vm-gold-1", "vm-gold-1", 1, 1)
    with pytest.raises(InstanceNotFound, match="'ghost'"):
        cem.facilitate_trade("ghost", "vm-gold-2", 1, 1)
    for bad in (0, -1, 0.5, float("inf"), True, 10**16):
        with pytest.raises(InvalidAmount):
            cem.facilitate_trade("vm-gold-1", "vm-gold-2", bad, 10)  # type: ignore[arg-type]
        with pytest.raises(InvalidAmount):
            cem.facilitate_trade("vm-gold-1", "vm-gold-2", 10, bad)  # type: ignore[arg-type]
    with pytest.raises(NotAuthorised):
        cem.deposit_funds("vm-gold-1", 5, actor="vm-gold-1")
    assert cem.ledger.balances() == before


def test_manual_rate_changes_are_audited(cem: CreditExchange, clock: ManualClock) -> None:
    clock.advance(timedelta(hours=2))
    change = cem.set_exchange_rate("gold", "3", actor="admin", reason="gold saturated")
    assert (change.old_rate, change.new_rate, change.changed_at) == (
        2_200_000,
        3_000_000,
        clock.now,
    )
    assert cem.tiers.tier("gold").exchange_rate == 3_000_000
    assert cem.rate_changes("gold") == [change]
    swap = cem.perform_credit_swap("silver", "gold", 3_000, actor="admin")
    assert swap.amount_out == 1_500
    with pytest.raises(NotAuthorised, match="may not set exchange rates"):
        cem.set_exchange_rate("gold", "4", actor="vm-gold-1", reason="greed")
    with pytest.raises(InvalidParameter, match="needs a reason"):
        cem.set_exchange_rate("gold", "4", actor="admin", reason=" ")
    for bad in ("0", "-1", "nan", 1.5, "1e400"):
        with pytest.raises(InvalidParameter):
            cem.set_exchange_rate("gold", bad, actor="admin", reason="r")  # type: ignore[arg-type]
    with pytest.raises(TierNotFound):
        cem.set_exchange_rate("diamond", "1", actor="admin", reason="r")
    assert cem.tiers.tier("gold").exchange_rate == 3_000_000
    assert len(cem.rate_changes()) == 1


def test_rate_changes_persist_in_the_registry(sqlite_url: str, clock: ManualClock) -> None:
    from market.ledger import SqlStore

    upgrade(sqlite_url)
    registry = Registry(sqlite_url)
    registry.save(load_config())
    tiers = registry.load()
    ledger = Ledger(SqlStore(sqlite_url), clock)
    cem = CreditExchange(ledger, tiers, clock, registry)
    cem.set_exchange_rate("silver", "1.75", actor="admin", reason="demand")
    assert registry.load().tier("silver").exchange_rate == 1_750_000
    assert [(c.tier, c.actor, c.changed_at) for c in registry.rate_changes()] == [
        ("silver", "admin", clock.now)
    ]
    ledger.close()
    registry.close()


def test_log_is_queryable_by_tier_instance_and_time(
    cem: CreditExchange, clock: ManualClock
) -> None:
    first = cem.facilitate_trade("vm-gold-1", "vm-gold-2", 1_000, 100)
    clock.advance(timedelta(hours=1))
    swap = cem.perform_credit_swap("silver", "gold", 3_000, actor="admin")
    clock.advance(timedelta(hours=1))
    grant(cem.ledger, "instance:vm-silver-1:credits", "credits:silver", 5_000)
    cem.deposit_funds("vm-silver-2", 500, actor="admin")
    second = cem.facilitate_trade("vm-silver-1", "vm-silver-2", 2_000, 200)
    assert cem.log() == [first, swap, second]
    assert cem.log(tier="gold") == [first, swap]
    assert cem.log(tier="silver") == [swap, second]
    assert cem.log(instance="vm-gold-2") == [first]
    assert cem.log("swap") == [swap]
    assert cem.log("trade", since=START + timedelta(minutes=30)) == [second]
    assert cem.log(until=START + timedelta(hours=1, minutes=30)) == [first, swap]
    assert cem.trades(tier="platinum") == []
    with pytest.raises(InstanceNotFound):
        cem.log(instance="ghost")


def test_headroom_holds_even_when_the_pool_fills_after_the_check(
    cem: CreditExchange, tiers: TierManager
) -> None:
    # Another CEM fills the gold pool between this swap's headroom read and its post.
    capacity = tiers.pool_capacity("gold")
    stale = tiers.pool(cem.ledger, "gold")
    grant(cem.ledger, "pool:gold", "credits:gold", capacity - 10)
    tiers.pool = lambda ledger, tier: stale  # type: ignore[method-assign]
    before = cem.ledger.balances()
    with pytest.raises(InsufficientHeadroom, match="room for 10") as info:
        cem.perform_credit_swap("silver", "gold", 3_000, actor="admin")
    assert info.value.requested == 1_500 * 3_000 // 2_200
    assert cem.ledger.balances() == before


def test_the_exchange_takes_money_and_credits_in_their_units(cem: CreditExchange) -> None:
    before = cem.ledger.balances()
    with pytest.raises(UnitMismatch):
        cem.deposit_funds("vm-gold-1", Credits(5), actor="admin")  # type: ignore[arg-type]
    with pytest.raises(UnitMismatch):
        cem.facilitate_trade("vm-gold-1", "vm-gold-2", Money(5), Price(1))  # type: ignore[arg-type]
    assert cem.ledger.balances() == before
    cem.deposit_funds("vm-gold-2", Money(500), actor="admin")
    trade = cem.facilitate_trade("vm-gold-1", "vm-gold-2", Credits(2_000), Price(100))
    assert (trade.quantity, trade.value) == (2_000, 200)
