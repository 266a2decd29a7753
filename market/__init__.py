"""The credit exchange: tier pools, the double-entry ledger, the CEM, order books, auctions.

The ledger lives in ``market.ledger``; the Resource Tier Manager in ``market.tiers``;
burstable accounting in ``market.accounting``; the CEM's swaps, trades and rates in
``market.exchange`` and their automation in ``market.cem_auto``; order books, call
auctions and the durable venue in ``market.book``, ``market.auction`` and
``market.venue``; the Virtual Instance Agent in ``market.agent``. Every error this
package raises derives from :class:`MarketError` (the ledger's from ``LedgerError``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from market.accounting import BurstableAccountant, IntervalOutcome
    from market.agent import Agent, OwnerPolicy, VenueAgents
    from market.auction import AuctionMode, CallAuction
    from market.book import BookConfig, OrderBook, SelfTradePrevention
    from market.cem_auto import CemAutomation, CemPolicy
    from market.cem_errors import ExchangeError
    from market.clock import ManualClock, system_clock
    from market.errors import MarketError
    from market.exchange import CreditExchange, RateChange, Swap
    from market.marketdata import MarketData
    from market.orders import OrderState, Side, TimeInForce
    from market.tiers import Host, Instance, Pool, Tier, TierManager, load_config
    from market.venue import OrderRequest, Placement, Venue

__all__ = [
    "Agent",
    "AuctionMode",
    "BookConfig",
    "BurstableAccountant",
    "CallAuction",
    "CemAutomation",
    "CemPolicy",
    "CreditExchange",
    "ExchangeError",
    "Host",
    "Instance",
    "IntervalOutcome",
    "ManualClock",
    "MarketData",
    "MarketError",
    "OrderBook",
    "OrderRequest",
    "OrderState",
    "OwnerPolicy",
    "Placement",
    "Pool",
    "RateChange",
    "SelfTradePrevention",
    "Side",
    "Swap",
    "Tier",
    "TierManager",
    "TimeInForce",
    "Venue",
    "VenueAgents",
    "load_config",
    "system_clock",
]

# Names load on first use, so importing a command module (and ``creditx --help``)
# does not load pandas, SQLAlchemy and the forecasters.
_HOMES = {
    "BurstableAccountant": "market.accounting",
    "IntervalOutcome": "market.accounting",
    "Agent": "market.agent",
    "OwnerPolicy": "market.agent",
    "VenueAgents": "market.agent",
    "AuctionMode": "market.auction",
    "CallAuction": "market.auction",
    "BookConfig": "market.book",
    "OrderBook": "market.book",
    "SelfTradePrevention": "market.book",
    "CemAutomation": "market.cem_auto",
    "CemPolicy": "market.cem_auto",
    "ExchangeError": "market.cem_errors",
    "ManualClock": "market.clock",
    "system_clock": "market.clock",
    "MarketError": "market.errors",
    "CreditExchange": "market.exchange",
    "RateChange": "market.exchange",
    "Swap": "market.exchange",
    "MarketData": "market.marketdata",
    "OrderState": "market.orders",
    "Side": "market.orders",
    "TimeInForce": "market.orders",
    "Host": "market.tiers",
    "Instance": "market.tiers",
    "Pool": "market.tiers",
    "Tier": "market.tiers",
    "TierManager": "market.tiers",
    "load_config": "market.tiers",
    "OrderRequest": "market.venue",
    "Placement": "market.venue",
    "Venue": "market.venue",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'market' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
