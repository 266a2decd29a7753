"""Escrow: what an order locks in the ledger while it can still trade.

A bid locks the funds it could spend: its whole quantity at its limit price plus the
largest fee (:func:`market.orders.bid_escrow`); an ask locks its credits. Each order has
an escrow account of its own (``escrow:order:<order_id>``), so no balance can back two
orders at once. Fills draw from it; when the order is filled, cancelled or expires,
whatever is left goes back to the owner.
"""

from __future__ import annotations

from market.ledger import (
    FUNDS,
    EntryRequest,
    Transfer,
    credits_asset,
    escrow_account,
    instance_credits,
    instance_funds,
)
from market.orders import Side, bid_escrow

LOCK_REASON = "market.escrow.lock"
RELEASE_REASON = "market.escrow.release"


def escrow_asset(side: Side, tier: str) -> str:
    """Return the asset an order of ``side`` locks: funds for a bid, credits for an ask."""
    return FUNDS if side is Side.BUY else credits_asset(tier)


def owner_account(side: Side, owner: str) -> str:
    """Return the account an order's escrow is drawn from and returned to."""
    return instance_funds(owner) if side is Side.BUY else instance_credits(owner)


def required_escrow(side: Side, price: int, quantity: int, fee_bps: int) -> int:
    """Return what an order of ``quantity`` at limit ``price`` must hold in escrow."""
    return bid_escrow(quantity, price, fee_bps) if side is Side.BUY else quantity


def lock_request(
    order_id: str, owner: str, side: Side, amount: int, *, actor: str, key: str
) -> EntryRequest:
    """Return the entry moving ``amount`` from the owner into the order's escrow."""
    return EntryRequest(
        (Transfer(owner_account(side, owner), escrow_account(order_id), amount),),
        reason=LOCK_REASON,
        actor=actor,
        idempotency_key=key,
        metadata={"order_id": order_id, "side": side.value},
    )


def release_transfer(order_id: str, owner: str, side: Side, amount: int) -> Transfer:
    """Return the leg handing ``amount`` of an order's escrow back to its owner."""
    return Transfer(escrow_account(order_id), owner_account(side, owner), amount)
