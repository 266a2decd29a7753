"""Settlement: turn trades into ledger entries.

Every continuous trade settles in one entry; a call auction's whole batch settles in
one entry. The buyer pays the trade's value to the seller and the fee to the exchange,
both from the buy order's escrow; the sell order's escrow delivers the credits to the
buyer. In a McAfee auction the buyer pays more than the seller receives and the
difference goes to the exchange's fee account with the fee.

Escrow is held per instance and asset (:mod:`market.venue.escrow`). An auction batch routes
through two clearing accounts of its own (one for funds, one for the tier's credits):
each instance's escrow account pays in what its auction orders hold (one leg per
instance and asset) and each instance gets one leg per asset back out (what it bought
or sold plus what its orders did not use), so the entry has a few legs per instance
however many orders and trades there are; both clearing accounts end every batch at
zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter

import numpy as np

from market.ledger import (
    FEES_ACCOUNT,
    EntryRequest,
    Transfer,
    escrow_credits,
    escrow_funds,
    instance_credits,
    instance_funds,
)
from market.venue.auction import AuctionResult
from market.venue.orders import Trade

TRADE_REASON = "market.trade"
AUCTION_REASON = "market.auction"
_OWNER = attrgetter("owner")


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
    result: AuctionResult,
    escrow_left: Sequence[int],
    *,
    funds_clearing: str,
    credits_clearing: str,
    actor: str,
) -> EntryRequest | None:
    """Return the one entry that settles an auction batch, or ``None`` if nothing moves.

    ``escrow_left`` holds, per order of the auction (in the order the auction took
    them), that order's share of its owner's escrow. What an instance's orders hold goes
    from its escrow account to the clearing account of its asset (one leg per instance
    and asset); out of them each instance receives, in one leg per asset, what it bought
    or sold plus what its orders did not use, and the fee account the fees (and any
    McAfee surplus). ``funds_clearing`` and ``credits_clearing`` are escrow-kind
    accounts of funds and of the tier's credits; both end the entry at zero.

    Raises
    ------
    ValueError
        If ``escrow_left`` does not hold one share per order, or if the trades draw
        more from an order than its share.
    """
    allocation = result.allocation
    n = len(allocation.orders)
    if len(escrow_left) != n:
        raise ValueError(f"{len(escrow_left)} escrow shares for an auction of {n} orders")
    quantity, value, fee, seller_value = result.trade_amounts()
    dtype = quantity.dtype
    left = np.array(escrow_left, dtype=dtype) if n else np.zeros(0, dtype=dtype)
    unused = _unused_escrow(result, left, quantity, value + fee)
    names, (funds_in, credits_in, funds_out, credits_out) = _owner_flows(
        result, left, unused, quantity, seller_value
    )
    fees = int((value + fee - seller_value).sum())
    transfers = [
        *_per_owner(names, funds_in, escrow_funds, funds_clearing, inward=True),
        *_per_owner(names, credits_in, escrow_credits, credits_clearing, inward=True),
        *_legs(funds_clearing, FEES_ACCOUNT, fees),
        *_per_owner(names, funds_out, instance_funds, funds_clearing, inward=False),
        *_per_owner(names, credits_out, instance_credits, credits_clearing, inward=False),
    ]
    if not transfers:
        return None
    return EntryRequest(
        tuple(transfers),
        reason=AUCTION_REASON,
        actor=actor,
        idempotency_key=f"auction:{result.auction_id}",
        metadata={
            "auction_id": result.auction_id,
            "tier": result.tier,
            "trades": len(quantity),
            "fees": fees,
        },
    )


def _unused_escrow(
    result: AuctionResult, left: np.ndarray, quantity: np.ndarray, paid: np.ndarray
) -> np.ndarray:
    # each order's escrow share less what its trades draw: funds for buys, credits for sells
    allocation = result.allocation
    used = np.zeros(len(allocation.orders), dtype=left.dtype)
    np.add.at(used, allocation.buyer, paid)
    np.add.at(used, allocation.seller, quantity)
    unused = left - used
    overdrawn = np.flatnonzero(unused < 0)
    if len(overdrawn):
        order = allocation.orders[overdrawn[0]]
        raise ValueError(f"order {order.order_id!r} was drawn beyond its escrow")
    return unused


def _owner_flows(
    result: AuctionResult,
    left: np.ndarray,
    unused: np.ndarray,
    quantity: np.ndarray,
    seller_value: np.ndarray,
) -> tuple[list[str], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    # per owner (in order of first appearance): funds and credits in from escrow, out to
    # the instance
    allocation = result.allocation
    orders = allocation.orders
    owner_of = list(map(_OWNER, orders))
    names = list(dict.fromkeys(owner_of))
    owner_codes = {name: k for k, name in enumerate(names)}
    code = np.fromiter(map(owner_codes.__getitem__, owner_of), np.int64, len(orders))
    is_buy = allocation.is_buy
    funds_in, credits_in, funds_out, credits_out = (
        np.zeros(len(names), dtype=left.dtype) for _ in "1234"
    )
    np.add.at(funds_in, code[is_buy], left[is_buy])
    np.add.at(credits_in, code[~is_buy], left[~is_buy])
    np.add.at(funds_out, code[is_buy], unused[is_buy])
    np.add.at(funds_out, code[allocation.seller], seller_value)
    np.add.at(credits_out, code[~is_buy], unused[~is_buy])
    np.add.at(credits_out, code[allocation.buyer], quantity)
    return names, (funds_in, credits_in, funds_out, credits_out)


def _per_owner(
    names: list[str],
    amounts: np.ndarray,
    account: Callable[[str], str],
    clearing: str,
    *,
    inward: bool,
) -> list[Transfer]:
    # one leg per owner with something to move, between its account and the clearing
    nonzero = np.flatnonzero(amounts)
    return [
        Transfer(account(names[k]), clearing, a)
        if inward
        else Transfer(clearing, account(names[k]), a)
        for k, a in zip(nonzero.tolist(), amounts[nonzero].tolist(), strict=True)
    ]
