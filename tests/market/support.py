"""Set-up shared by the market tests."""

from __future__ import annotations

from market.ledger import (
    FUNDS,
    AccountKind,
    EntryRequest,
    Ledger,
    Transfer,
    credits_asset,
    instance_credits,
    instance_funds,
    mint_account,
)


def deposit(
    ledger: Ledger, names: list[str], *, funds: int, credits: int, tier: str = "gold"
) -> None:
    """Give each instance ``funds`` and ``credits`` of ``tier`` from the mints, in one entry.

    Opens the two mint accounts; the instances' own accounts must be open already
    (``Venue.register_instance``).
    """
    asset = credits_asset(tier)
    ledger.open_accounts(
        [
            (mint_account(FUNDS), FUNDS, AccountKind.MINT),
            (mint_account(asset), asset, AccountKind.MINT),
        ]
    )
    ledger.post(
        EntryRequest(
            tuple(
                leg
                for name in names
                for leg in (
                    Transfer(mint_account(FUNDS), instance_funds(name), funds),
                    Transfer(mint_account(asset), instance_credits(name), credits),
                )
            ),
            reason="deposit",
            actor="test",
        )
    )
