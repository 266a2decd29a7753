"""Check a stored venue's invariants: what must hold at every commit, crash or not.

:func:`audit_venue_store` reads a store the venue writes (``market_orders`` beside the
ledger) and reports every violation of:

- no continuous book is crossed: each tier's highest open bid is below its lowest
  open ask;
- no immediate-or-cancel order is open;
- each instance's escrow account holds exactly the sum of its open orders' shares;
- the ledger's journal replays to its balances and conserves every asset
  (:meth:`~market.ledger.Ledger.verify`).

Crash tests and ``creditx bench crash`` run it after every restart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from market.ledger import Ledger, SqlStore, read_connection
from market.venue import tables as schema
from market.venue.escrow import escrow_of
from market.venue.orders import OrderState, Side, TimeInForce

_OPEN_STATES = (OrderState.OPEN.value, OrderState.PARTIALLY_FILLED.value)


@dataclass(frozen=True, slots=True)
class VenueAudit:
    """What :func:`audit_venue_store` found; each field lists one kind of violation."""

    crossed_books: tuple[str, ...]
    resting_iocs: tuple[str, ...]
    escrow_mismatches: tuple[str, ...]
    ledger_errors: tuple[str, ...]
    open_orders: int

    @property
    def ok(self) -> bool:
        """Return whether every invariant holds."""
        return not self.problems()

    def problems(self) -> list[str]:
        """Return one readable line per violation."""
        return [
            *(f"book crossed: {t}" for t in self.crossed_books),
            *(f"immediate-or-cancel order open: {o}" for o in self.resting_iocs),
            *(f"escrow differs from open orders' shares: {a}" for a in self.escrow_mismatches),
            *(f"ledger: {e}" for e in self.ledger_errors),
        ]


def _open_orders(engine: Engine) -> Sequence[Any]:
    orders = schema.orders
    with read_connection(engine) as conn:
        return conn.execute(
            sa.select(
                orders.c.order_id,
                orders.c.tier,
                orders.c.owner,
                orders.c.side,
                orders.c.price,
                orders.c.time_in_force,
                orders.c.auction,
                orders.c.escrow,
            ).where(orders.c.state.in_(_OPEN_STATES))
        ).all()


def _book_findings(rows: Sequence[Any]) -> tuple[list[str], list[str], dict[str, int]]:
    # crossed books and open IOCs among the open orders, and the escrow they should hold
    best_bid: dict[str, int] = {}
    best_ask: dict[str, int] = {}
    expected: dict[str, int] = defaultdict(int)
    iocs = []
    for row in rows:
        expected[escrow_of(Side(row.side), row.owner)] += row.escrow or 0
        if row.auction:
            continue
        if row.time_in_force == TimeInForce.IOC.value:
            iocs.append(row.order_id)
        if row.side == Side.BUY.value:
            best_bid[row.tier] = max(best_bid.get(row.tier, row.price), row.price)
        else:
            best_ask[row.tier] = min(best_ask.get(row.tier, row.price), row.price)
    crossed = [
        f"{tier} bid {best_bid[tier]} >= ask {best_ask[tier]}"
        for tier in sorted(best_bid.keys() & best_ask.keys())
        if best_bid[tier] >= best_ask[tier]
    ]
    return crossed, iocs, expected


def audit_venue_store(engine: Engine) -> VenueAudit:
    """Check the invariants of the venue stored in ``engine``'s database.

    Run it on a store nothing writes to any more: it reads the orders and the ledger in
    several transactions, and a commit landing between them shows as a violation.
    """
    rows = _open_orders(engine)
    crossed, iocs, expected = _book_findings(rows)
    ledger = Ledger(SqlStore(engine), lambda: datetime.now(UTC))
    held = {a: b for a, b in ledger.balances("escrow:instance:").items() if b}
    mismatches = [
        f"{a} holds {held.get(a, 0)}, its orders {expected.get(a, 0)}"
        for a in sorted(held.keys() | expected.keys())
        if held.get(a, 0) != expected.get(a, 0)
    ]
    report = ledger.verify()
    errors = [
        *report.asset_errors,
        *(
            f"{a} stored {s}, replayed {r}"
            for a, (s, r) in sorted(report.balance_mismatches.items())
        ),
        *(f"{a} is negative: {b}" for a, b in sorted(report.negative_accounts.items())),
        *(f"{asset} sums to {t}, not 0" for asset, t in sorted(report.asset_totals.items()) if t),
    ]
    return VenueAudit(
        crossed_books=tuple(crossed),
        resting_iocs=tuple(sorted(iocs)),
        escrow_mismatches=tuple(mismatches),
        ledger_errors=tuple(errors),
        open_orders=len(rows),
    )
