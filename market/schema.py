"""The one ``MetaData`` of the market's tables in the creditx store.

Each room defines its own tables on it: the ledger's accounts and entries
(``market.ledger._schema``), the tier manager's registry (``market.cem.registry``),
the decision log (``market.decisions``), the venue's orders, trades, limits and
auction results (``market.venue.tables``), the live accrual's readings, booked
intervals and allowances (``market.cem.live_tables``) and the live market rounds
(``market.round_tables``). The migrations create them;
the service's own tables (tokens, idempotent responses, owner values) are
``serving.tables``.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def market_tables() -> dict[str, sa.Table]:
    """Return every market table by name, loading the rooms that define them."""
    import market.cem.live_tables
    import market.cem.registry
    import market.decisions
    import market.ledger._schema
    import market.round_tables
    import market.venue.tables  # noqa: F401  (each import defines its tables on ``metadata``)

    return dict(metadata.tables)
