"""The credit exchange: tier pools, the double-entry ledger, the CEM, order books, auctions.

The ledger lives in ``market.ledger``; the Resource Tier Manager in ``market.tiers``;
burstable accounting in ``market.accounting``; the CEM's swaps, trades and rates in
``market.exchange``; their persistence in ``market.registry`` and ``market.migrations``.
"""

from market.accounting import BurstableAccountant, IntervalOutcome
from market.cem_errors import ExchangeError
from market.clock import ManualClock, system_clock
from market.exchange import CreditExchange, RateChange, Swap, Trade
from market.tiers import Host, Instance, Pool, Tier, TierManager, load_config

__all__ = [
    "BurstableAccountant",
    "CreditExchange",
    "ExchangeError",
    "Host",
    "Instance",
    "IntervalOutcome",
    "ManualClock",
    "Pool",
    "RateChange",
    "Swap",
    "Tier",
    "TierManager",
    "Trade",
    "load_config",
    "system_clock",
]
