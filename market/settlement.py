"""Settlement: turn trades into ledger entries.

Every continuous trade settles in one entry; a call auction's whole batch settles in
one entry. The buyer pays the trade's value to the seller and the fee to the exchange,
both from the buy order's escrow; the sell order's escrow delivers the credits to the
buyer. In a McAfee auction the buyer pays more than the seller receives and the
difference goes to the exchange's fee account with the fee.

Escrow is held per instance and asset (:mod:`market.escrow`). An auction batch routes
through two clearing accounts of its own (one for funds, one for the tier's credits):
each instance's escrow account pays in what its auction orders hold (one leg per
instance and asset) and each instance gets one leg per asset back out (what it bought
or sold plus what its orders did not use), so the entry has a few legs per instance
however many orders and trades there are; both clearing accounts end every batch at
zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from market.ledger import (
    FEES_ACCOUNT,
    EntryRequest,
    Transfer,
    escrow_credits,
    escrow_funds,
    instance_credits,
    instance_funds,
)
from market.orders import Side, Trade

TRADE_REASON = "market.trade"
AUCTION_REASON = "market.auction"


def _legs(source: str, destination: str, amount: int) -> list[Transfer]:
    # a zero leg is no movement: tiny fills can round the value or the fee to zero
    return [Transfer(source, destination, amount)] if amount else []


def trade_transfers(trade: Trade) -> list[Transfer]:
    """Return the legs of one trade: value, fee (and McAfee surplus), credits."""
    buy_escrow = escrow_funds(trade.buyer)
    return [
        *_legs(buy_escrow, instance_funds(trade.seller), trade.seller_receives),
        *_legs(buy_escrow, FEES_ACCOUNT, trade.fee + trade.value - trade.seller_receives),
        *_legs(escrow_credits(trade.seller), instance_credits(trade.buyer), trade.quantity),
    ]


def trade_request(trade: Trade, releases: Sequence[Transfer], *, actor: str) -> EntryRequest:
    """Return the one entry that settles a continuous trade, with any escrow releases."""
    return EntryRequest(
        (*trade_transfers(trade), *releases),
        reason=TRADE_REASON,
        actor=actor,
        idempotency_key=f"trade:{trade.trade_id}",
        metadata={
            "trade_id": trade.trade_id,
            "tier": trade.tier,
            "price": trade.price,
            "quantity": trade.quantity,
            "buy_order_id": trade.buy_order_id,
            "sell_order_id": trade.sell_order_id,
        },
    )


def auction_request(
    auction_id: str,
    tier: str,
    trades: Iterable[Trade],
    escrows: Mapping[str, tuple[str, Side, int]],
    *,
    funds_clearing: str,
    credits_clearing: str,
    actor: str,
) -> EntryRequest | None:
    """Return the one entry that settles an auction batch, or ``None`` if nothing moves.

    ``escrows`` maps every order of the auction to ``(owner, side, escrow left)``. What
    an instance's orders hold goes from its escrow account to the clearing account of
    its asset (one leg per instance and asset); out of them each instance receives, in
    one leg per asset, what it bought or sold plus what its orders did not use, and the
    fee account the fees (and any McAfee surplus). ``funds_clearing`` and
    ``credits_clearing`` are escrow-kind accounts of funds and of the tier's credits;
    both end the entry at zero.

    Raises
    ------
    ValueError
        If the trades draw more from an order than its escrow holds.
    """
    funds_out: dict[str, int] = defaultdict(int)  # instance -> refund + proceeds
    credits_out: dict[str, int] = defaultdict(int)  # instance -> bought + unsold
    used: dict[str, int] = defaultdict(int)  # order -> escrow the trades drew
    fees = 0
    count = 0
    for t in trades:
        count += 1
        used[t.buy_order_id] += t.value + t.fee
        used[t.sell_order_id] += t.quantity
        funds_out[t.seller] += t.seller_receives
        credits_out[t.buyer] += t.quantity
        fees += t.fee + t.value - t.seller_receives
    funds_in: dict[str, int] = defaultdict(int)  # instance -> what its bids held
    credits_in: dict[str, int] = defaultdict(int)  # instance -> what its asks held
    for order_id, (owner, side, left) in escrows.items():
        unused = left - used.get(order_id, 0)
        if unused < 0:
            raise ValueError(f"order {order_id!r} was drawn beyond its escrow")
        if side is Side.BUY:
            funds_in[owner] += left
            funds_out[owner] += unused
        else:
            credits_in[owner] += left
            credits_out[owner] += unused
    transfers: list[Transfer] = []
    for owner, amount in funds_in.items():
        transfers += _legs(escrow_funds(owner), funds_clearing, amount)
    for owner, amount in credits_in.items():
        transfers += _legs(escrow_credits(owner), credits_clearing, amount)
    transfers += _legs(funds_clearing, FEES_ACCOUNT, fees)
    for owner, amount in funds_out.items():
        transfers += _legs(funds_clearing, instance_funds(owner), amount)
    for owner, amount in credits_out.items():
        transfers += _legs(credits_clearing, instance_credits(owner), amount)
    if not transfers:
        return None
    return EntryRequest(
        tuple(transfers),
        reason=AUCTION_REASON,
        actor=actor,
        idempotency_key=f"auction:{auction_id}",
        metadata={"auction_id": auction_id, "tier": tier, "trades": count, "fees": fees},
    )
