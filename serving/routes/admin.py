"""Administrator functions: exchange rates, pool swaps, deposits, auctions, ledger checks.

Every change is made in the administrator's name, which the CEM audits.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query

from market.errors import InvalidParameter
from serving.deps import AdminDep, Limit, Offset, SessionDep, TierPath
from serving.errors import Conflict
from serving.render import auction_row_public, from_fields, rate_change_public
from serving.routing import GuardedRoute
from serving.schemas import (
    AuctionPublic,
    DepositCreate,
    DepositPublic,
    ExchangeRateUpdate,
    RateChangePublic,
    SwapCreate,
    SwapPublic,
    VerifyPublic,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=GuardedRoute)

OptionalIdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="a retry with the same key and body books nothing twice",
    ),
]


@router.put(
    "/exchange-rates/{tier}", response_model=RateChangePublic, summary="Set a tier's exchange rate"
)
def set_exchange_rate(
    tier: TierPath, update: ExchangeRateUpdate, services: SessionDep, admin: AdminDep
) -> RateChangePublic:
    """Set the tier's exchange rate by hand; the change and its reason are audited."""
    with services.market.lock:
        change = services.market.exchange.set_exchange_rate(
            tier, update.exchange_rate_micro, actor=admin.subject, reason=update.reason
        )
    return rate_change_public(change)


@router.get(
    "/exchange-rate-changes",
    response_model=list[RateChangePublic],
    summary="Read the exchange-rate audit",
)
def list_rate_changes(
    services: SessionDep,
    _admin: AdminDep,
    tier: str | None = Query(default=None, max_length=100, description="only this tier"),
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[RateChangePublic]:
    """Return the audited exchange-rate changes, oldest first."""
    changes = services.market.exchange.rate_changes(tier)
    return [rate_change_public(c) for c in changes[offset : offset + limit]]


@router.post("/swaps", response_model=SwapPublic, status_code=201, summary="Swap pool credits")
def swap_pools(
    swap: SwapCreate,
    services: SessionDep,
    admin: AdminDep,
    idempotency_key: OptionalIdempotencyKey = None,
) -> SwapPublic:
    """Move credits from one tier's pool to another's, converted at their exchange rates."""
    try:
        with services.market.lock:
            booked = services.market.exchange.perform_credit_swap(
                swap.source_tier,
                swap.destination_tier,
                swap.amount,
                actor=admin.subject,
                idempotency_key=None if idempotency_key is None else f"api-swap:{idempotency_key}",
            )
    except InvalidParameter as exc:
        if exc.name != "amount":
            raise
        # too small at today's exchange rates: the conflict is with the rates, not the input
        raise Conflict(str(exc), amount=swap.amount) from exc
    return SwapPublic(
        entry_id=booked.entry.id,
        source_tier=booked.source_tier,
        destination_tier=booked.destination_tier,
        amount_in=booked.amount_in,
        amount_out=booked.amount_out,
        source_rate_micro=booked.source_rate,
        destination_rate_micro=booked.destination_rate,
        remainder=booked.remainder,
        created_at=booked.entry.created_at,
    )


@router.post("/deposits", response_model=DepositPublic, status_code=201, summary="Deposit funds")
def deposit_funds(
    deposit: DepositCreate,
    services: SessionDep,
    admin: AdminDep,
    idempotency_key: OptionalIdempotencyKey = None,
) -> DepositPublic:
    """Credit an instance's funds with money paid in from outside."""
    with services.market.lock:
        entry = services.market.exchange.deposit_funds(
            deposit.instance_id,
            deposit.amount,
            actor=admin.subject,
            idempotency_key=None if idempotency_key is None else f"api-deposit:{idempotency_key}",
        )
    return DepositPublic(
        entry_id=entry.id,
        instance_id=deposit.instance_id,
        amount=entry.transfers[0].amount,
        created_at=entry.created_at,
    )


@router.post(
    "/tiers/{tier}/auctions",
    response_model=AuctionPublic,
    status_code=201,
    summary="Run a tier's call auction",
)
def run_auction(tier: TierPath, services: SessionDep, _admin: AdminDep) -> AuctionPublic:
    """Clear the tier's waiting auction orders in one call auction and settle it."""
    market = services.market
    with market.lock:
        result = market.venue.run_auction(tier)
    rows = market.auction_rows(tier, limit=1, offset=0)
    if rows and rows[0].auction_id == result.auction_id:
        return auction_row_public(rows[0])
    return from_fields(AuctionPublic, result, mode=result.mode.value)


@router.get("/ledger/verify", response_model=VerifyPublic, summary="Verify the ledger")
def verify_ledger(services: SessionDep, _admin: AdminDep) -> VerifyPublic:
    """Replay the journal against the stored balances and the conservation of every asset."""
    report = services.market.ledger.verify()
    return VerifyPublic(
        ok=report.ok,
        entries=report.entries,
        accounts=report.accounts,
        asset_totals=dict(report.asset_totals),
        balance_mismatches={k: list(v) for k, v in report.balance_mismatches.items()},
        negative_accounts=dict(report.negative_accounts),
        asset_errors=list(report.asset_errors),
    )
