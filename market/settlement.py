"""Settlement: turn trades into ledger entries.

Every continuous trade settles in one entry; a call auction's whole batch settles in
one entry. The buyer pays the trade's value to the seller and the fee to the exchange,
both from the buy order's escrow; the sell order's escrow delivers the credits to the
buyer. In a McAfee auction the buyer pays more than the seller receives and the
difference goes to the exchange's fee account with the fee.

An auction batch routes through two clearing accounts of its own (one for funds, one
for the tier's credits) so that each order contributes one leg however many trades it
takes part in; both clearing accounts end every batch at zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from market.ledger import (
    FEES_ACCOUNT,
    EntryRequest,
    Transfer,
    escrow_account,
    instance_credits,
    instance_funds,
)
from market.orders import Trade

TRADE_REASON = "market.trade"
AUCTION_REASON = "market.auction"


def _legs(source: str, destination: str, amount: int) -> list[Transfer]:
    # a zero leg is no movement: tiny fills can round the value or the fee to zero
    return [Transfer(source, destination, amount)] if amount else []


def trade_transfers(trade: Trade) -> list[Transfer]:
    """Return the legs of one trade: value, fee (and McAfee surplus), credits."""
    buy_escrow = escrow_account(trade.buy_order_id)
    return [
        *_legs(buy_escrow, instance_funds(trade.seller), trade.seller_receives),
        *_legs(buy_escrow, FEES_ACCOUNT, trade.fee + trade.value - trade.seller_receives),
        *_legs(escrow_account(trade.sell_order_id), instance_credits(trade.buyer), trade.quantity),
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
    releases: Sequence[Transfer],
    *,
    funds_clearing: str,
    credits_clearing: str,
    actor: str,
) -> EntryRequest | None:
    """Return the one entry that settles an auction's trades and releases, or ``None``.

    ``funds_clearing`` and ``credits_clearing`` are escrow-kind accounts holding funds
    and the tier's credits; every leg in is matched by legs out, so both end at zero.
    """
    paid: dict[str, int] = defaultdict(int)  # buy order -> value + fee
    received: dict[str, int] = defaultdict(int)  # seller -> value
    delivered: dict[str, int] = defaultdict(int)  # sell order -> credits
    bought: dict[str, int] = defaultdict(int)  # buyer -> credits
    fees = 0
    count = 0
    for t in trades:
        count += 1
        paid[t.buy_order_id] += t.value + t.fee
        received[t.seller] += t.seller_receives
        fees += t.fee + t.value - t.seller_receives
        delivered[t.sell_order_id] += t.quantity
        bought[t.buyer] += t.quantity
    transfers: list[Transfer] = []
    for order_id, amount in paid.items():
        transfers += _legs(escrow_account(order_id), funds_clearing, amount)
    for seller, amount in received.items():
        transfers += _legs(funds_clearing, instance_funds(seller), amount)
    transfers += _legs(funds_clearing, FEES_ACCOUNT, fees)
    for order_id, amount in delivered.items():
        transfers += _legs(escrow_account(order_id), credits_clearing, amount)
    for buyer, amount in bought.items():
        transfers += _legs(credits_clearing, instance_credits(buyer), amount)
    transfers += releases
    if not transfers:
        return None
    return EntryRequest(
        tuple(transfers),
        reason=AUCTION_REASON,
        actor=actor,
        idempotency_key=f"auction:{auction_id}",
        metadata={"auction_id": auction_id, "tier": tier, "trades": count, "fees": fees},
    )
