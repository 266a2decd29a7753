"""The market's units, defined once.

* Credits are integer **milli-credits**: :data:`MILLI_PER_CREDIT` to a credit.
* Money is integer **minor units** (cents); a price is minor units per credit.
* Rates and fees are integer **basis points**: :data:`BPS` to the whole.

One fee rule: a trade's fee is its value times the fee in basis points, rounded down
(:func:`trade_fee`); a fill of ``quantity`` milli-credits at ``price`` per credit is
worth ``quantity * price // 1000`` (:func:`trade_value`), also rounded down.
"""

from __future__ import annotations

MILLI_PER_CREDIT = 1000
BPS = 10_000


def trade_value(quantity: int, price: int) -> int:
    """Return the value in minor units of ``quantity`` milli-credits at ``price`` per credit.

    Rounded down, so the fills of an order never exceed the value of the whole order.
    """
    return quantity * price // MILLI_PER_CREDIT


def trade_fee(value: int, fee_bps: int) -> int:
    """Return the fee in minor units on a trade ``value``, rounded down."""
    return value * fee_bps // BPS
