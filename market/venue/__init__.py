"""The venue: order books, call auctions, orders, escrow, settlement and market data.

``handling`` takes orders, matches them and settles trades; ``tables`` is the
store's schema for orders, trades, limits and auction results; ``audit`` checks a
stored venue's invariants.
"""
