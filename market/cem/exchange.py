"""The Credit Exchange Manager (CEM): swaps between tier pools, trades between instances,
audited exchange-rate changes, and the trade and swap log.

A swap converts at both tiers' exchange rates. Valued in micro-units, ``amount`` of
the source tier is worth ``amount * source_rate``; the destination receives
``amount * source_rate // destination_rate`` milli-credits and the rest of the value,
less than one destination milli-credit, is booked to ``rounding:value``. So every swap
holds ``amount_in * source_rate == amount_out * destination_rate + remainder`` exactly,
and the ledger's ``value`` asset accounts for every remainder ever left.

A direct trade is the venue's :class:`~market.venue.orders.Trade` under the market's one
fee rule (:mod:`market.units`): ``quantity`` milli-credits move from the seller to the
buyer at ``price`` minor units per credit; the buyer pays the value
(``quantity * price // 1000``) and a fee of ``value * fee_bps // 10_000`` (both rounded
down), the seller receives the value and the fee goes to ``fees:funds``. All legs of a
swap or a trade are one ledger entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from market.cem.tiers import VALUE, Tier, TierManager, rate_to_micro
from market.errors import (
    CrossTierTrade,
    InsufficientCredits,
    InsufficientFunds,
    InsufficientHeadroom,
    InsufficientPoolCredits,
    InvalidParameter,
    NotAuthorised,
)
from market.ledger import (
    FEES_ACCOUNT,
    FUNDS,
    CeilingExceeded,
    Clock,
    Entry,
    EntryRequest,
    ExtraWrites,
    InsufficientBalance,
    InvalidAmount,
    Ledger,
    MetadataValue,
    Transfer,
    check_amount,
    conversion_account,
    instance_credits,
    instance_funds,
    mint_account,
    pool_account,
    rounding_account,
)
from market.units import MILLI_PER_CREDIT, Credits, Money, Price
from market.venue.orders import Trade

SWAP = "swap"
TRADE = "trade"
DEPOSIT = "deposit"


@dataclass(frozen=True, slots=True)
class Swap:
    """A booked swap between two tier pools."""

    entry: Entry
    source_tier: str
    destination_tier: str
    amount_in: int
    amount_out: int
    source_rate: int
    destination_rate: int
    remainder: int


@dataclass(frozen=True, slots=True)
class RateChange:
    """An audited change of a tier's exchange rate."""

    tier: str
    old_rate: int
    new_rate: int
    actor: str
    reason: str
    changed_at: datetime


class RateAudit(Protocol):
    """Where exchange-rate changes are kept (``market.cem.registry.Registry`` in SQL)."""

    def record_rate_change(self, change: RateChange) -> None:
        """Persist the new rate of the tier and the audit record, atomically."""

    def rate_changes(self, tier: str | None = None) -> list[RateChange]:
        """Return the recorded changes, of one tier if given, oldest first."""


class MemoryRateAudit:
    """Rate changes kept in memory, for simulations."""

    def __init__(self) -> None:
        self._changes: list[RateChange] = []

    def record_rate_change(self, change: RateChange) -> None:
        self._changes.append(change)

    def rate_changes(self, tier: str | None = None) -> list[RateChange]:
        return [c for c in self._changes if tier is None or c.tier == tier]


class CreditExchange:
    """The CEM: it books swaps and trades in the ledger and audits exchange rates.

    Parameters
    ----------
    ledger
        The ledger every movement is posted to.
    tiers
        The Resource Tier Manager: tiers, hosts, instances, fee and administrators.
    clock
        Stamps rate changes; nothing here reads another clock.
    audit
        Where rate changes are recorded (in memory when not given).
    """

    def __init__(
        self,
        ledger: Ledger,
        tiers: TierManager,
        clock: Clock,
        audit: RateAudit | None = None,
    ) -> None:
        self.ledger = ledger
        self.tiers = tiers
        self._clock = clock
        self._audit = audit or MemoryRateAudit()

    def _require_admin(self, actor: str, action: str) -> None:
        if actor not in self.tiers.exchange.administrators:
            raise NotAuthorised(actor, action)

    # swaps

    def perform_credit_swap(
        self,
        source_tier: str,
        destination_tier: str,
        amount: int,
        *,
        actor: str,
        idempotency_key: str | None = None,
        writes: ExtraWrites | None = None,
    ) -> Swap:
        """Move ``amount`` milli-credits out of one tier's pool into another's, converted.

        ``writes`` (a SQL store's) commit with the swap's entry.

        Raises
        ------
        InvalidAmount
            If ``amount`` is not a positive int in bounds.
        TierNotFound, InvalidParameter
            For an unknown tier, the same tier twice, or an amount too small to convert.
        NotAuthorised
            If ``actor`` is not an administrator.
        InsufficientPoolCredits, InsufficientHeadroom
            If the source pool holds too little or the destination has too little room.
        """
        check_amount(amount)
        source = self.tiers.tier(source_tier)
        destination = self.tiers.tier(destination_tier)
        if source.name == destination.name:
            raise InvalidParameter("destination tier", destination_tier, "equals the source")
        self._require_admin(actor, "swap credits between tier pools")
        amount_out = amount * source.exchange_rate // destination.exchange_rate
        if amount_out == 0:
            raise InvalidParameter(
                "amount", amount, f"converts to less than one milli-credit of {destination.name}"
            )
        headroom = self.tiers.pool(self.ledger, destination.name).headroom
        if amount_out > headroom:
            raise InsufficientHeadroom(destination.name, headroom, amount_out)
        # The capacity is a ceiling in the same transaction, so concurrent swaps cannot
        # overfill the destination between the check above and the post.
        capacity = self.tiers.pool_capacity(destination.name)
        request = _swap_request(source, destination, amount, actor, idempotency_key, capacity)
        try:
            entry = self.ledger.post(request, writes=writes)
        except InsufficientBalance as exc:
            raise InsufficientPoolCredits(source.name, exc.balance, exc.requested) from exc
        except CeilingExceeded as exc:
            before = exc.balance - amount_out
            raise InsufficientHeadroom(
                destination.name, max(0, capacity - before), amount_out
            ) from exc
        return _swap(entry)

    # trades

    def facilitate_trade(
        self,
        seller: str,
        buyer: str,
        quantity: int,
        price: int,
        *,
        actor: str = "cem",
        idempotency_key: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
    ) -> Trade:
        """Settle a direct trade: ``quantity`` milli-credits to the buyer at ``price`` per credit.

        The market's one fee rule (:mod:`market.units`), as in the venue: the buyer pays
        the value (``quantity * price // 1000``) and the fee on it, the seller receives
        the value, the fee goes to the exchange's fee account, and the credits move; all
        in one entry. ``quantity`` and ``price`` may be plain ints or
        :class:`~market.units.Credits` and :class:`~market.units.Price`.

        Raises
        ------
        InvalidAmount
            If ``quantity`` or ``price`` is not a positive int in bounds, or an amount of
            another unit.
        InstanceNotFound, InvalidParameter, CrossTierTrade
            For an unknown instance, a self-trade, or instances of different tiers.
        InsufficientCredits, InsufficientFunds
            If the seller holds too few credits or the buyer too little money.
        """
        credits, per_credit = _trade_terms(quantity, price)
        seller_spec = self.tiers.instance(seller)
        buyer_spec = self.tiers.instance(buyer)
        if seller == buyer:
            raise InvalidParameter("buyer", buyer, "an instance cannot trade with itself")
        if seller_spec.tier != buyer_spec.tier:
            raise CrossTierTrade(seller_spec.tier, buyer_spec.tier)
        value = per_credit.value_of(credits)
        fee = value.fee(self.tiers.exchange.fee_bps)
        legs = _trade_legs(seller, buyer, int(credits), int(value), int(fee))
        details: dict[str, MetadataValue] = dict(metadata or {})
        details.update(
            tier=seller_spec.tier,
            seller=seller,
            buyer=buyer,
            quantity=int(credits),
            price=int(per_credit),
            value=int(value),
            fee=int(fee),
        )
        request = EntryRequest(tuple(legs), TRADE, actor, idempotency_key, details)
        try:
            entry = self.ledger.post(request)
        except InsufficientBalance as exc:
            if exc.account == instance_credits(seller):
                raise InsufficientCredits(seller, exc.balance, exc.requested) from exc
            raise InsufficientFunds(buyer, exc.balance, exc.requested) from exc
        return _trade(entry)

    def deposit_funds(
        self, instance_id: str, amount: int, *, actor: str, idempotency_key: str | None = None
    ) -> Entry:
        """Credit an instance's funds with money paid in from outside (an administrator action).

        ``amount`` is minor units: a plain int or :class:`~market.units.Money`, never
        another unit's amount.
        """
        amount = check_amount(int(Money(amount)))
        self.tiers.instance(instance_id)
        self._require_admin(actor, "deposit funds")
        transfer = Transfer(mint_account(FUNDS), instance_funds(instance_id), amount)
        return self.ledger.post(EntryRequest((transfer,), DEPOSIT, actor, idempotency_key))

    # exchange rates

    def set_exchange_rate(
        self, tier: str, exchange_rate: int | str | Decimal, *, actor: str, reason: str
    ) -> RateChange:
        """Set a tier's exchange rate by hand, as an audited administrator action.

        ``exchange_rate`` is integer micro-units, or a decimal string such as ``"2.5"``.
        """
        old = self.tiers.tier(tier).exchange_rate
        micro = rate_to_micro(exchange_rate)
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidParameter("reason", reason, "an audited change needs a reason")
        self._require_admin(actor, "set exchange rates")
        change = RateChange(tier, old, micro, actor, reason, self._clock())
        self._audit.record_rate_change(change)
        self.tiers.set_exchange_rate(tier, micro)
        return change

    def rate_changes(self, tier: str | None = None) -> list[RateChange]:
        """Return the audited exchange-rate changes, of one tier if given, oldest first."""
        if tier is not None:
            self.tiers.tier(tier)
        return self._audit.rate_changes(tier)

    # the log

    def swaps(
        self,
        *,
        tier: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Swap]:
        """Return the swaps touching ``tier`` (either side) in ``[since, until)``, oldest first."""
        if tier is not None:
            self.tiers.tier(tier)
        found = [
            _swap(e)
            for e in self.ledger.entries(
                reason=SWAP,
                since=since,
                until=until,
                account=None if tier is None else pool_account(tier),
            )
        ]
        return found

    def trades(
        self,
        *,
        tier: str | None = None,
        instance: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Trade]:
        """Return the trades of ``tier`` and/or ``instance`` in ``[since, until)``, oldest first."""
        if tier is not None:
            self.tiers.tier(tier)
        if instance is not None:
            self.tiers.instance(instance)
        entries = self.ledger.entries(
            reason=TRADE,
            since=since,
            until=until,
            account=None if instance is None else instance_credits(instance),
            metadata=None if tier is None else {"tier": tier},
        )
        return [_trade(e) for e in entries]

    def log(
        self,
        kind: Literal["swap", "trade"] | None = None,
        *,
        tier: str | None = None,
        instance: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Sequence[Swap | Trade]:
        """Return swaps and trades by tier, instance and time, oldest first.

        Instances never see swaps, so an ``instance`` filter returns only trades.
        """
        records: list[Swap | Trade] = []
        if kind in (None, SWAP) and instance is None:
            records += self.swaps(tier=tier, since=since, until=until)
        if kind in (None, TRADE):
            records += self.trades(tier=tier, instance=instance, since=since, until=until)
        return sorted(records, key=_when)


def _int(entry: Entry, key: str) -> int:
    return int(entry.metadata[key])


def _swap_request(
    source: Tier,
    destination: Tier,
    amount: int,
    actor: str,
    idempotency_key: str | None,
    capacity: int,
) -> EntryRequest:
    """Return the entry of a swap: out of one pool at its rate, into the other at its own.

    What the conversion cannot express in whole milli-credits of the destination stays
    as value in the rounding account.
    """
    amount_out, remainder = divmod(amount * source.exchange_rate, destination.exchange_rate)
    legs = [
        Transfer(pool_account(source.name), conversion_account(source.asset), amount),
        Transfer(conversion_account(destination.asset), pool_account(destination.name), amount_out),
    ]
    if remainder:
        legs.append(Transfer(conversion_account(VALUE), rounding_account(VALUE), remainder))
    metadata: dict[str, MetadataValue] = {
        "source_tier": source.name,
        "destination_tier": destination.name,
        "amount_in": amount,
        "amount_out": amount_out,
        "source_rate": source.exchange_rate,
        "destination_rate": destination.exchange_rate,
        "remainder": remainder,
    }
    ceilings = {pool_account(destination.name): capacity}
    return EntryRequest(tuple(legs), SWAP, actor, idempotency_key, metadata, ceilings=ceilings)


def _swap(entry: Entry) -> Swap:
    return Swap(
        entry=entry,
        source_tier=str(entry.metadata["source_tier"]),
        destination_tier=str(entry.metadata["destination_tier"]),
        amount_in=_int(entry, "amount_in"),
        amount_out=_int(entry, "amount_out"),
        source_rate=_int(entry, "source_rate"),
        destination_rate=_int(entry, "destination_rate"),
        remainder=_int(entry, "remainder"),
    )


def _trade_terms(quantity: object, price: object) -> tuple[Credits, Price]:
    credits = Credits(quantity)
    if not credits:
        raise InvalidAmount(quantity, "a trade must move at least one milli-credit")
    return credits, Price(price)


def _trade(entry: Entry) -> Trade:
    """Return the trade an entry booked, as the venue's trades read."""
    metadata = entry.metadata
    if "quantity" in metadata:
        quantity, price = _int(entry, "quantity"), _int(entry, "price")
        value, fee = _int(entry, "value"), _int(entry, "fee")
    else:
        # entries booked before the one fee rule: ``price`` was the total the buyer
        # paid, the fee came out of it, and ``amount`` was the quantity
        quantity, fee = _int(entry, "amount"), _int(entry, "fee")
        value = _int(entry, "price") - fee
        price = max(1, value * MILLI_PER_CREDIT // quantity)
    return Trade(
        trade_id=entry.id,
        tier=str(metadata["tier"]),
        price=price,
        quantity=quantity,
        buy_order_id="",
        sell_order_id="",
        buyer=str(metadata["buyer"]),
        seller=str(metadata["seller"]),
        value=value,
        fee=fee,
        at=entry.created_at,
    )


def _when(record: Swap | Trade) -> datetime:
    return record.at if isinstance(record, Trade) else record.entry.created_at


def _trade_legs(seller: str, buyer: str, credits: int, value: int, fee: int) -> list[Transfer]:
    # the credits to the buyer; the value to the seller and the fee to the exchange, if any
    legs = [Transfer(instance_credits(seller), instance_credits(buyer), credits)]
    if value:
        legs.append(Transfer(instance_funds(buyer), instance_funds(seller), value))
    if fee:
        legs.append(Transfer(instance_funds(buyer), FEES_ACCOUNT, fee))
    return legs
