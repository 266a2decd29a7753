"""Escrow: what an order locks in the ledger while it can still trade.

A bid locks the funds it could spend: its whole quantity at its limit price plus the
largest fee (:func:`market.venue.orders.bid_escrow`); an ask locks its credits. The ledger
holds escrow per instance and asset: one account for the funds of an instance's open
bids (``escrow:instance:<id>:funds``) and one for the credits of its open asks
(``escrow:instance:<id>:credits``). The venue tracks how much of that balance each
open order holds, persists it on the order's row in the same transaction as every
change to it, and keeps each account's balance equal to the sum of its orders' shares,
so no balance backs two orders. Fills draw from their order's share; when the order is
filled, cancelled or expires, whatever is left of its share goes back to the owner.
"""

from __future__ import annotations

from collections.abc import Mapping

from market.ledger import (
    FUNDS,
    AccountKind,
    EntryRequest,
    MetadataValue,
    Transfer,
    credits_asset,
    escrow_credits,
    escrow_funds,
    instance_credits,
    instance_funds,
)
from market.venue.orders import Side, bid_escrow

LOCK_REASON = "market.escrow.lock"
RELEASE_REASON = "market.escrow.release"


def trading_accounts(instance_id: str, tier: str) -> list[tuple[str, str, AccountKind]]:
    """Return the accounts an instance of ``tier`` trades through, as ledger definitions.

    Its credits and funds, and the two escrow accounts its open asks and bids lock them in.
    """
    asset = credits_asset(tier)
    return [
        (instance_credits(instance_id), asset, AccountKind.INSTANCE),
        (instance_funds(instance_id), FUNDS, AccountKind.INSTANCE),
        (escrow_credits(instance_id), asset, AccountKind.ESCROW),
        (escrow_funds(instance_id), FUNDS, AccountKind.ESCROW),
    ]


def escrow_asset(side: Side, tier: str) -> str:
    """Return the asset an order of ``side`` locks: funds for a bid, credits for an ask."""
    return FUNDS if side is Side.BUY else credits_asset(tier)


def owner_account(side: Side, owner: str) -> str:
    """Return the account an order's escrow is drawn from and returned to."""
    return instance_funds(owner) if side is Side.BUY else instance_credits(owner)


def escrow_of(side: Side, owner: str) -> str:
    """Return the escrow account holding what the owner's orders of ``side`` lock."""
    return escrow_funds(owner) if side is Side.BUY else escrow_credits(owner)


def required_escrow(side: Side, price: int, quantity: int, fee_bps: int) -> int:
    """Return what an order of ``quantity`` at limit ``price`` must hold in escrow."""
    return bid_escrow(quantity, price, fee_bps) if side is Side.BUY else quantity


def lock_request(
    amounts: Mapping[tuple[str, Side], int],
    *,
    actor: str,
    key: str,
    metadata: Mapping[str, MetadataValue],
) -> EntryRequest:
    """Return the entry moving each ``(owner, side)``'s amount into its escrow account.

    ``amounts`` holds what the orders of one batch lock, summed per owner and side.
    """
    return EntryRequest(
        tuple(
            Transfer(owner_account(side, owner), escrow_of(side, owner), amount)
            for (owner, side), amount in amounts.items()
            if amount
        ),
        reason=LOCK_REASON,
        actor=actor,
        idempotency_key=key,
        metadata=metadata,
    )


def release_transfers(amounts: Mapping[tuple[str, Side], int]) -> list[Transfer]:
    """Return the legs handing each ``(owner, side)``'s amount of escrow back to it."""
    return [
        Transfer(escrow_of(side, owner), owner_account(side, owner), amount)
        for (owner, side), amount in amounts.items()
        if amount
    ]
