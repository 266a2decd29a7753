"""The credit exchange: tier pools, the double-entry ledger, the CEM, order books, auctions.

Its rooms: ``market.ledger`` (the double-entry ledger), ``market.venue`` (order books,
call auctions, orders, escrow, settlement, market data and the durable venue),
``market.agents`` (owner value, valuation and the Virtual Instance Agent) and
``market.cem`` (tiers and pools, burstable accounting, the live accrual of telemetry
and its allowances, the exchange and its automation). ``market.errors`` holds every
error's tree (the ledger's derive from ``LedgerError``); ``market.schema`` the one
``MetaData`` of the store's tables.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from market.agents.decision import Agent, OwnerPolicy
    from market.agents.runner import AgentRunner, VenueAgents
    from market.cem.accounting import BurstableAccountant, IntervalOutcome
    from market.cem.automation import CemAutomation, CemPolicy
    from market.cem.exchange import CreditExchange, RateChange, Swap
    from market.cem.live import LiveAccrual
    from market.cem.tiers import Host, Instance, Pool, Tier, TierManager, load_config
    from market.clock import ManualClock, system_clock
    from market.errors import ExchangeError, MarketError
    from market.venue.auction import AuctionMode, CallAuction
    from market.venue.book import BookConfig, OrderBook, SelfTradePrevention
    from market.venue.handling import OrderRequest, Placement, Venue
    from market.venue.marketdata import MarketData
    from market.venue.orders import OrderState, Side, TimeInForce

__all__ = [
    "Agent",
    "AgentRunner",
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
    "LiveAccrual",
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
    "BurstableAccountant": "market.cem.accounting",
    "IntervalOutcome": "market.cem.accounting",
    "Agent": "market.agents.decision",
    "OwnerPolicy": "market.agents.decision",
    "AgentRunner": "market.agents.runner",
    "VenueAgents": "market.agents.runner",
    "AuctionMode": "market.venue.auction",
    "CallAuction": "market.venue.auction",
    "BookConfig": "market.venue.book",
    "OrderBook": "market.venue.book",
    "SelfTradePrevention": "market.venue.book",
    "CemAutomation": "market.cem.automation",
    "CemPolicy": "market.cem.automation",
    "ExchangeError": "market.errors",
    "ManualClock": "market.clock",
    "system_clock": "market.clock",
    "MarketError": "market.errors",
    "CreditExchange": "market.cem.exchange",
    "RateChange": "market.cem.exchange",
    "Swap": "market.cem.exchange",
    "LiveAccrual": "market.cem.live",
    "MarketData": "market.venue.marketdata",
    "OrderState": "market.venue.orders",
    "Side": "market.venue.orders",
    "TimeInForce": "market.venue.orders",
    "Host": "market.cem.tiers",
    "Instance": "market.cem.tiers",
    "Pool": "market.cem.tiers",
    "Tier": "market.cem.tiers",
    "TierManager": "market.cem.tiers",
    "load_config": "market.cem.tiers",
    "OrderRequest": "market.venue.handling",
    "Placement": "market.venue.handling",
    "Venue": "market.venue.handling",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'market' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
