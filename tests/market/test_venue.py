"""The venue: escrow on placement, settlement per trade, bad input that changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from market.clock import ManualClock
from market.errors import (
    InsufficientEscrow,
    InvalidExpiry,
    InvalidOrder,
    InvalidPrice,
    InvalidQuantity,
    InvalidTransition,
    OffTickPrice,
    SelfTradeRejected,
    StandingLimitViolation,
    UnknownInstance,
    UnknownOrder,
    UnknownTier,
)
from market.ledger import (
    FEES_ACCOUNT,
    FUNDS,
    AccountKind,
    EntryRequest,
    Ledger,
    MemoryStore,
    Transfer,
    credits_asset,
    escrow_credits,
    escrow_funds,
    instance_credits,
    instance_funds,
    mint_account,
)
from market.venue.book import BookConfig, SelfTradePrevention
from market.venue.handling import OrderRequest, Venue
from market.venue.orders import OrderState, Side, TimeInForce

TIERS = (BookConfig(tier="gold", tick_size=5, fee_bps=30), BookConfig(tier="silver"))


def fund(ledger: Ledger, instance: str, tier: str, *, funds: int, credits: int) -> None:
    """Deposit funds and accrue credits for an instance from the mint accounts."""
    ledger.open_accounts(
        [
            (mint_account(FUNDS), FUNDS, AccountKind.MINT),
            (mint_account(credits_asset(tier)), credits_asset(tier), AccountKind.MINT),
        ]
    )
    transfers = []
    if funds:
        transfers.append(Transfer(mint_account(FUNDS), instance_funds(instance), funds))
    if credits:
        transfers.append(
            Transfer(mint_account(credits_asset(tier)), instance_credits(instance), credits)
        )
    ledger.post(EntryRequest(tuple(transfers), reason="deposit", actor="test"))


@pytest.fixture
def venue(clock: ManualClock) -> Venue:
    ledger = Ledger(MemoryStore(), clock)
    venue = Venue(ledger, clock, TIERS)
    for name in ("alice", "bob", "carol"):
        venue.register_instance(name, "gold")
        fund(ledger, name, "gold", funds=100_000, credits=50_000)
    venue.register_instance("sam", "silver")
    return venue


def _state(venue: Venue) -> tuple[dict[str, int], list, list]:
    book = venue.book("gold")
    return (
        venue.ledger.balances(),
        book.depth(Side.BUY),
        book.depth(Side.SELL),
    )


def test_a_bid_locks_quantity_times_limit_plus_the_largest_fee(venue: Venue) -> None:
    placed = venue.place("alice", Side.BUY, 200, 3_000)
    # value 3 credits x 200 = 600, fee 30 bps of 600 = 1 (rounded down)
    assert venue.ledger.balance(escrow_funds("alice")) == 601
    assert venue.escrow_left(placed.order.order_id) == 601
    assert venue.ledger.balance(instance_funds("alice")) == 100_000 - 601
    ask = venue.place("bob", Side.SELL, 250, 2_000)
    assert venue.ledger.balance(escrow_credits("bob")) == 2_000
    assert venue.escrow_left(ask.order.order_id) == 2_000
    assert venue.ledger.balance(instance_credits("bob")) == 48_000


def test_a_trade_settles_value_fee_and_credits_and_releases_the_price_improvement(
    venue: Venue,
) -> None:
    ask = venue.place("bob", Side.SELL, 150, 2_000)
    bid = venue.place("alice", Side.BUY, 200, 2_000)
    (trade,) = bid.trades
    assert (trade.price, trade.quantity, trade.value, trade.fee) == (150, 2_000, 300, 0)
    assert (trade.buyer, trade.seller) == ("alice", "bob")
    assert bid.order.state is OrderState.FILLED
    balances = venue.ledger.balances()
    assert balances[instance_funds("alice")] == 100_000 - 300
    assert balances[instance_funds("bob")] == 100_000 + 300
    assert balances[instance_credits("alice")] == 52_000
    assert balances[instance_credits("bob")] == 48_000
    assert balances[escrow_funds("alice")] == balances[escrow_credits("bob")] == 0
    assert venue.escrow_left(bid.order.order_id) == venue.escrow_left(ask.order.order_id) == 0
    (entry,) = venue.ledger.entries(reason="market.trade")
    assert entry.metadata["trade_id"] == trade.trade_id
    assert venue.trade_log() == [trade]


def test_the_buyer_pays_the_fee_to_the_exchange(venue: Venue) -> None:
    venue.place("bob", Side.SELL, 1_000, 10_000)
    bid = venue.place("alice", Side.BUY, 1_000, 10_000)
    (trade,) = bid.trades
    assert (trade.value, trade.fee) == (10_000, 30)
    assert venue.ledger.balance(FEES_ACCOUNT) == 30
    assert venue.ledger.balance(instance_funds("alice")) == 100_000 - 10_030
    assert venue.ledger.balance(instance_funds("bob")) == 110_000


def test_cancel_returns_exactly_what_is_left_in_escrow(venue: Venue) -> None:
    before = venue.ledger.balance(instance_funds("alice"))
    bid = venue.place("alice", Side.BUY, 200, 5_000)
    venue.place("bob", Side.SELL, 100, 2_000)  # fills 2 credits of the bid at 200
    assert venue.order(bid.order.order_id).remaining == 3_000
    events = venue.cancel(bid.order.order_id)
    assert events[-1].state is OrderState.CANCELLED
    paid = 2_000 * 200 // 1000
    paid += paid * 30 // 10_000
    assert venue.ledger.balance(instance_funds("alice")) == before - paid
    assert venue.ledger.balance(escrow_funds("alice")) == 0
    assert venue.escrow_left(bid.order.order_id) == 0


def test_expiry_from_the_clock_returns_the_escrow(venue: Venue, clock: ManualClock) -> None:
    ask = venue.place(
        "bob", Side.SELL, 300, 4_000, TimeInForce.GTT, clock.now + timedelta(minutes=5)
    )
    clock.advance(timedelta(minutes=5))
    (event,) = venue.expire()
    assert (event.order_id, event.state) == (ask.order.order_id, OrderState.EXPIRED)
    assert venue.ledger.balance(instance_credits("bob")) == 50_000


def test_modify_tops_up_and_trims_the_escrow(venue: Venue) -> None:
    bid = venue.place("alice", Side.BUY, 100, 1_000)
    order_id = bid.order.order_id
    venue.modify(order_id, price=300, quantity=2_000)
    assert venue.ledger.balance(escrow_funds("alice")) == venue.escrow_left(order_id) == 601
    venue.modify(order_id, quantity=1_000)
    assert venue.ledger.balance(escrow_funds("alice")) == venue.escrow_left(order_id) == 300
    assert venue.ledger.balance(instance_funds("alice")) == 100_000 - 300


@pytest.mark.parametrize(
    ("request_", "error", "match"),
    [
        (OrderRequest("alice", Side.BUY, 100, 0), InvalidQuantity, "positive integer"),
        (OrderRequest("alice", Side.BUY, 100, -5), InvalidQuantity, "positive integer"),
        (OrderRequest("alice", Side.BUY, 0, 1_000), InvalidPrice, "positive integer"),
        (OrderRequest("alice", Side.SELL, -10, 1_000), InvalidPrice, "positive integer"),
        (OrderRequest("alice", Side.BUY, 102, 1_000), OffTickPrice, "tick size 5"),
        (OrderRequest("nobody", Side.BUY, 100, 1_000), UnknownInstance, "nobody"),
        (OrderRequest("alice", Side.BUY, 400, 300_000), InsufficientEscrow, "holds 100000"),
        (OrderRequest("alice", Side.SELL, 100, 60_000), InsufficientEscrow, "needs 60000"),
        (OrderRequest("alice", Side.BUY, 500, 1_000), StandingLimitViolation, "at most 400"),
        (OrderRequest("alice", Side.SELL, 50, 1_000), StandingLimitViolation, "at least 80"),
        (
            OrderRequest("alice", Side.BUY, 100, 1_000, TimeInForce.GTT),
            InvalidExpiry,
            "timezone-aware",
        ),
    ],
)
def test_bad_orders_raise_and_change_nothing(venue: Venue, request_, error, match) -> None:
    venue.place("bob", Side.SELL, 300, 1_000)
    venue.set_limits("alice", max_bid=400, min_ask=80)
    before = _state(venue)
    with pytest.raises(error, match=match):
        venue.place(
            request_.instance_id,
            request_.side,
            request_.price,
            request_.quantity,
            request_.time_in_force,
            request_.expires_at,
        )
    assert _state(venue) == before


def test_unknown_tier_is_rejected(venue: Venue) -> None:
    with pytest.raises(UnknownTier, match="platinum"):
        venue.register_instance("dora", "platinum")
    with pytest.raises(UnknownTier, match="platinum"):
        venue.book("platinum")


def test_modifying_a_filled_or_cancelled_order_raises_and_changes_nothing(venue: Venue) -> None:
    venue.place("bob", Side.SELL, 100, 1_000)
    filled = venue.place("alice", Side.BUY, 100, 1_000)
    cancelled = venue.place("alice", Side.BUY, 50, 1_000)
    venue.cancel(cancelled.order.order_id)
    before = _state(venue)
    with pytest.raises(InvalidTransition, match="is filled and cannot take event modify"):
        venue.modify(filled.order.order_id, price=60)
    with pytest.raises(InvalidTransition, match="is cancelled and cannot take event modify"):
        venue.modify(cancelled.order.order_id, quantity=500)
    with pytest.raises(InvalidTransition, match="is cancelled and cannot take event cancel"):
        venue.cancel(cancelled.order.order_id)
    with pytest.raises(UnknownOrder, match="no order with id 'nope'"):
        venue.cancel("nope")
    assert _state(venue) == before


def test_a_modification_the_owner_cannot_fund_changes_nothing(venue: Venue) -> None:
    bid = venue.place("alice", Side.BUY, 100, 1_000)
    before = _state(venue)
    with pytest.raises(InsufficientEscrow, match="alice"):
        venue.modify(bid.order.order_id, price=5_000, quantity=100_000)
    venue.set_limits("alice", max_bid=150)
    with pytest.raises(StandingLimitViolation, match="at most 150"):
        venue.modify(bid.order.order_id, price=200)
    assert _state(venue) == before
    assert venue.order(bid.order.order_id).price == 100


def test_self_trade_prevention_cancels_the_newer_order_by_default(venue: Venue) -> None:
    ask = venue.place("alice", Side.SELL, 100, 1_000)
    bid = venue.place("alice", Side.BUY, 100, 1_000)
    assert bid.trades == ()
    assert bid.order.state is OrderState.CANCELLED
    assert venue.order(ask.order.order_id).state is OrderState.OPEN
    assert venue.ledger.balance(instance_funds("alice")) == 100_000


def test_self_trade_prevention_mode_is_configurable(clock: ManualClock) -> None:
    ledger = Ledger(MemoryStore(), clock)
    venue = Venue(
        ledger,
        clock,
        [BookConfig(tier="gold", self_trade=SelfTradePrevention.CANCEL_OLDEST)],
    )
    for name in ("alice", "bob"):
        venue.register_instance(name, "gold")
        fund(ledger, name, "gold", funds=10_000, credits=10_000)
    old = venue.place("alice", Side.SELL, 100, 1_000)
    venue.place("bob", Side.SELL, 110, 1_000)
    new = venue.place("alice", Side.BUY, 110, 1_000)
    assert venue.order(old.order.order_id).state is OrderState.CANCELLED
    (trade,) = new.trades
    assert (trade.seller, trade.price) == ("bob", 110)


def test_auction_orders_of_one_owner_on_both_sides_are_rejected(venue: Venue) -> None:
    (first,) = venue.submit_to_auction([OrderRequest("alice", Side.BUY, 100, 1_000)])
    (second,) = venue.submit_to_auction([OrderRequest("alice", Side.SELL, 90, 1_000)])
    assert isinstance(second, SelfTradeRejected)
    assert second.order_id == first.order_id


def test_an_auction_order_can_be_cancelled_until_the_auction_and_not_after(venue: Venue) -> None:
    (bid,) = venue.submit_to_auction([OrderRequest("alice", Side.BUY, 100, 2_000)])
    (ask,) = venue.submit_to_auction([OrderRequest("bob", Side.SELL, 100, 1_000)])
    (gone,) = venue.submit_to_auction([OrderRequest("carol", Side.BUY, 100, 1_000)])
    assert venue.ledger.balance(instance_funds("carol")) == 100_000 - 100 - 0
    with pytest.raises(InvalidOrder, match="waits for an auction"):
        venue.modify(gone.order_id, price=90)
    venue.cancel(gone.order_id)
    assert venue.ledger.balance(instance_funds("carol")) == 100_000
    assert venue.order(gone.order_id).state is OrderState.CANCELLED
    result = venue.run_auction("gold")
    assert (result.clearing_price, result.volume) == (100, 1_000)
    assert venue.order(bid.order_id).state is OrderState.CANCELLED
    assert venue.order(bid.order_id).filled == 1_000
    assert venue.order(ask.order_id).state is OrderState.FILLED
    with pytest.raises(InvalidTransition, match="is filled and cannot take event cancel"):
        venue.cancel(ask.order_id)
    # alice paid 1 credit at 100 plus 30 bps (0 after rounding down); the rest came back
    assert venue.ledger.balance(instance_funds("alice")) == 100_000 - 100
    assert venue.ledger.balance(instance_credits("alice")) == 51_000
    assert venue.ledger.verify().ok


def test_no_balance_backs_two_orders_at_once(venue: Venue) -> None:
    results = venue.place_many(
        [
            OrderRequest("alice", Side.BUY, 100, 600_000),  # locks 60,000 + 180 fee
            OrderRequest("alice", Side.BUY, 100, 400_000),  # would need 40,120 more
            OrderRequest("alice", Side.SELL, 500, 50_000),  # credits are a separate asset
        ]
    )
    first, second, third = results
    assert not isinstance(first, Exception)
    assert isinstance(second, InsufficientEscrow)
    assert (second.balance, second.required) == (100_000 - 60_180, 40_120)
    assert not isinstance(third, Exception)
    assert venue.ledger.balance(instance_funds("alice")) == 100_000 - 60_180
    assert venue.ledger.balance(instance_credits("alice")) == 0


def test_self_trade_in_one_auction_batch_is_rejected_and_cancel_lifts_it(venue: Venue) -> None:
    first, second, third = venue.submit_to_auction(
        [
            OrderRequest("bob", Side.SELL, 100, 1_000),
            OrderRequest("bob", Side.BUY, 120, 1_000),
            OrderRequest("bob", Side.SELL, 105, 1_000),
        ]
    )
    assert isinstance(second, SelfTradeRejected)
    assert second.order_id == first.order_id
    assert not isinstance(third, Exception)
    venue.cancel(first.order_id)
    venue.cancel(third.order_id)
    (bid,) = venue.submit_to_auction([OrderRequest("bob", Side.BUY, 120, 1_000)])
    assert bid.state is OrderState.OPEN


def test_a_fixed_id_prefix_replays_the_same_ids(clock: ManualClock) -> None:
    def run() -> list[str]:
        ledger = Ledger(MemoryStore(), clock)
        venue = Venue(ledger, clock, TIERS, id_prefix="replay")
        for name in ("alice", "bob"):
            venue.register_instance(name, "gold")
            fund(ledger, name, "gold", funds=10_000, credits=10_000)
        ask = venue.place("bob", Side.SELL, 100, 1_000)
        bid = venue.place("alice", Side.BUY, 100, 1_000)
        return [ask.order.order_id, bid.order.order_id, *(t.trade_id for t in bid.trades)]

    assert run() == run() == ["replay-1", "replay-2", "replay-gold-1"]
