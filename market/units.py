"""The market's units, defined once.

* Credits are integer **milli-credits**: :data:`MILLI_PER_CREDIT` to a credit.
* Money is integer **minor units** (cents); a price is minor units per credit.
* Rates and fees are integer **basis points**: :data:`BPS` to the whole.

One fee rule: a trade's fee is its value times the fee in basis points, rounded down
(:func:`trade_fee`); a fill of ``quantity`` milli-credits at ``price`` per credit is
worth ``quantity * price // 1000`` (:func:`trade_value`), also rounded down. The buyer
pays the value and the fee; the seller receives the value.

:class:`Credits`, :class:`Money` and :class:`Price` are the value types callers hand the
market: integers inside (so the books, the ledger and SQL take them as they are),
validated on construction (no bool, float, NaN, negative or oversized amount), with
arithmetic that keeps the unit and refuses to mix two units (:class:`UnitMismatch`):
``Credits(1) + Money(1)`` raises, ``Price(50).value_of(Credits(2_000))`` is
``Money(100)``. The hot paths (matching, the auctions' arrays, the replay) run on
plain ints under the same rules.
"""

from __future__ import annotations

from typing import ClassVar, Self

from market.errors import UnitMismatch
from market.ledger import MAX_AMOUNT, InvalidAmount

MILLI_PER_CREDIT = 1000
BPS = 10_000


class _Amount(int):
    """A non-negative integer amount of one unit that will not mix with another unit."""

    __slots__ = ()
    unit: ClassVar[str] = "amount"
    minimum: ClassVar[int] = 0

    def __new__(cls, value: object) -> Self:
        if isinstance(value, _Amount) and not isinstance(value, cls):
            raise UnitMismatch(cls.__name__, type(value).__name__, "convert")
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidAmount(value, f"{cls.unit} must be an int, not {type(value).__name__}")
        if value < cls.minimum:
            raise InvalidAmount(value, f"{cls.unit} must be at least {cls.minimum}")
        if value > MAX_AMOUNT:
            raise InvalidAmount(value, f"{cls.unit} exceeds the largest amount {MAX_AMOUNT}")
        return super().__new__(cls, value)

    def _plain(self, other: object, operation: str) -> int:
        if isinstance(other, _Amount) and type(other) is not type(self):
            raise UnitMismatch(type(self).__name__, type(other).__name__, operation)
        if isinstance(other, bool) or not isinstance(other, int):
            raise InvalidAmount(other, f"{self.unit} arithmetic takes ints only")
        return int(other)

    def __add__(self, other: object) -> Self:
        return type(self)(int(self) + self._plain(other, "add"))

    __radd__ = __add__

    def __sub__(self, other: object) -> Self:
        return type(self)(int(self) - self._plain(other, "subtract"))

    def __rsub__(self, other: object) -> Self:
        return type(self)(self._plain(other, "subtract") - int(self))

    def __mul__(self, factor: object) -> Self:
        # scaling by a plain count; two amounts never multiply into a third
        if isinstance(factor, _Amount):
            raise UnitMismatch(type(self).__name__, type(factor).__name__, "multiply")
        return type(self)(int(self) * self._plain(factor, "multiply"))

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


class Credits(_Amount):
    """Milli-credits: :data:`MILLI_PER_CREDIT` to a credit, one credit a vCPU-minute."""

    __slots__ = ()
    unit = "credits"


class Money(_Amount):
    """Minor units of money (cents)."""

    __slots__ = ()
    unit = "money"

    def fee(self, fee_bps: int) -> Money:
        """Return the fee on a trade of this value at ``fee_bps`` (:func:`trade_fee`)."""
        return Money(trade_fee(int(self), fee_bps))


class Price(_Amount):
    """A positive price: minor units of money per credit."""

    __slots__ = ()
    unit = "price"
    minimum = 1

    def value_of(self, quantity: Credits) -> Money:
        """Return what ``quantity`` is worth at this price (:func:`trade_value`)."""
        if not isinstance(quantity, Credits):
            raise UnitMismatch("Price", type(quantity).__name__, "value")
        return Money(trade_value(int(quantity), int(self)))


def trade_value(quantity: int, price: int) -> int:
    """Return the value in minor units of ``quantity`` milli-credits at ``price`` per credit.

    Rounded down, so the fills of an order never exceed the value of the whole order.
    """
    return quantity * price // MILLI_PER_CREDIT


def trade_fee(value: int, fee_bps: int) -> int:
    """Return the fee in minor units on a trade ``value``, rounded down."""
    return value * fee_bps // BPS
