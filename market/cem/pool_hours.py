"""The live exchange's priced pool, hour by hour, in the store.

Each hour's market round (:mod:`market.rounds`) sets the hour's terms once its auctions
and the CEM's step are done (:class:`HourTerms`, kept in the round's row): each tier's
draw price and exchange rate, the owners' values and who lends the pool what it holds.
The live accrual (:mod:`market.cem.live`) books each interval under the terms of the
latest round at or before the interval's hour (:func:`terms_at`), with the
:class:`~market.cem.pool_rules.PricedPool` rule, and adds what each instance drew and
lent to ``pool_hours`` in the booking's transaction (:func:`add_pool_hours`). The next
round settles every hour before its own in the transaction that opens it
(:func:`settlement`): drawers pay, lenders are paid or stay owed (``pool_owed``), as
the replay settles each hour (:func:`~market.cem.pool_rules.settle_pool`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from market.cem.live_tables import pool_hours as t_hours
from market.cem.live_tables import pool_owed as t_owed
from market.cem.pool_rules import settle_pool
from market.cem.tiers import POOL_REVENUE_ACCOUNT
from market.errors import AccrualContention
from market.ledger import Transfer, instance_funds
from market.round_tables import rounds as t_rounds

_UPSERT_HOURS = sa.text(
    "INSERT INTO pool_hours (instance_id, hour_us, drawn, lent) "
    "VALUES (:instance_id, :hour_us, :drawn, :lent) "
    "ON CONFLICT (instance_id, hour_us) DO UPDATE SET "
    "drawn = pool_hours.drawn + excluded.drawn, lent = pool_hours.lent + excluded.lent"
)
_UPSERT_OWED = sa.text(
    "INSERT INTO pool_owed (instance_id, owed) VALUES (:instance_id, :owed) "
    "ON CONFLICT (instance_id) DO UPDATE SET owed = excluded.owed"
)


@dataclass(frozen=True, slots=True)
class HourTerms:
    """An hour's priced pool as its round set it.

    ``prices`` (minor units per credit) and ``rates`` (micro-units) per tier of
    ``tiers``; ``lenders`` the instances that lend the pool what they hold; ``values``
    the owners' values that differ from ``default_value``.
    """

    hour_us: int
    tiers: tuple[str, ...]
    prices: tuple[int, ...]
    rates: tuple[int, ...]
    lenders: frozenset[str]
    default_value: int
    values: Mapping[str, int]

    def value_of(self, ids: Sequence[str]) -> np.ndarray:
        """Return the owners' values of ``ids``."""
        values, default = self.values, self.default_value
        return np.array([values.get(i, default) for i in ids], dtype=np.int64)

    def price_of(self, tier_names: Sequence[str]) -> np.ndarray:
        """Return the draw prices of ``tier_names`` (0, free, for a tier it does not price)."""
        price = dict(zip(self.tiers, self.prices, strict=True))
        return np.array([price.get(t, 0) for t in tier_names], dtype=np.int64)

    def rates_of(self, tier_names: Sequence[str]) -> np.ndarray:
        """Return the exchange rates of ``tier_names`` the hour's conversions use."""
        rate = dict(zip(self.tiers, self.rates, strict=True))
        return np.array([rate[t] for t in tier_names], dtype=np.int64)

    def document(self) -> str:
        """Return the terms as the JSON a round's row keeps."""
        return json.dumps(
            {
                "hour_us": self.hour_us,
                "tiers": list(self.tiers),
                "prices": list(self.prices),
                "rates": list(self.rates),
                "lenders": sorted(self.lenders),
                "default_value": self.default_value,
                "values": dict(self.values),
            }
        )

    @classmethod
    def of(cls, document: str) -> HourTerms:
        """Return the terms a round's row keeps."""
        found = json.loads(document)
        return cls(
            int(found["hour_us"]),
            tuple(found["tiers"]),
            tuple(int(p) for p in found["prices"]),
            tuple(int(r) for r in found["rates"]),
            frozenset(found["lenders"]),
            int(found["default_value"]),
            {str(k): int(v) for k, v in found["values"].items()},
        )


def terms_at(conn: Connection, hour_us: int) -> HourTerms | None:
    """Return the terms of the latest round at or before ``hour_us`` that set them."""
    document = conn.execute(
        sa.select(t_rounds.c.terms)
        .where(t_rounds.c.hour_us <= hour_us, t_rounds.c.terms.is_not(None))
        .order_by(t_rounds.c.hour_us.desc())
        .limit(1)
    ).scalar()
    return None if document is None else HourTerms.of(document)


def drawn_in_hour(conn: Connection, hour_us: int, ids: Sequence[str]) -> dict[str, int]:
    """Return what each of ``ids`` drew under the terms of ``hour_us`` so far."""
    rows = conn.execute(
        sa.select(t_hours.c.instance_id, t_hours.c.drawn).where(t_hours.c.hour_us == hour_us)
    )
    wanted = set(ids)
    return {i: int(d) for i, d in rows if i in wanted}


def add_pool_hours(
    conn: Connection, hour_us: int, ids: Sequence[str], drawn: np.ndarray, lent: np.ndarray
) -> None:
    """Add what each of ``ids`` drew and lent under the terms of ``hour_us``."""
    moved = np.flatnonzero((drawn > 0) | (lent > 0)).tolist()
    if moved:
        conn.execute(
            _UPSERT_HOURS,
            [
                {
                    "instance_id": ids[i],
                    "hour_us": hour_us,
                    "drawn": int(drawn[i]),
                    "lent": int(lent[i]),
                }
                for i in moved
            ],
        )


@dataclass(frozen=True, slots=True)
class Unsettled:
    """The pool's hours a round settles: their rows, their terms, what lenders are owed."""

    rows: list[tuple[str, int, int, int]]  # (instance, hour, drawn, lent)
    terms: dict[int, HourTerms]
    owed: dict[str, int]

    def accounts(self) -> list[str]:
        """Return the accounts settling moves money between."""
        ids = {r[0] for r in self.rows} | set(self.owed)
        return [*(instance_funds(i) for i in sorted(ids)), POOL_REVENUE_ACCOUNT]


def unsettled(conn: Connection, before_us: int) -> Unsettled:
    """Return the pool's hours before ``before_us`` not settled yet."""
    rows = [
        (str(i), int(h), int(d), int(lent))
        for i, h, d, lent in conn.execute(
            sa.select(t_hours).where(t_hours.c.hour_us < before_us).order_by(t_hours.c.hour_us)
        )
    ]
    hours = sorted({r[1] for r in rows})
    terms = {}
    for hour in hours:
        document = conn.execute(
            sa.select(t_rounds.c.terms).where(t_rounds.c.hour_us == hour)
        ).scalar_one()
        terms[hour] = HourTerms.of(document)
    owed = {str(i): int(o) for i, o in conn.execute(sa.select(t_owed)) if o}
    return Unsettled(rows, terms, owed)


def settlement(
    found: Unsettled, balances: Mapping[str, int], tier_of: Mapping[str, str]
) -> tuple[list[Transfer], dict[str, int]]:
    """Return the transfers that settle ``found`` hour by hour on ``balances`` (each
    instance's tier in ``tier_of``), and what lenders are owed after."""
    owed = dict(found.owed)
    funds = dict(balances)
    legs: list[Transfer] = []
    for hour, terms in found.terms.items():
        rows = [r for r in found.rows if r[1] == hour]
        ids = sorted({r[0] for r in rows} | set(owed))
        at = {i: n for n, i in enumerate(ids)}
        drawn, lent = np.zeros(len(ids), np.int64), np.zeros(len(ids), np.int64)
        for i, _, d, loan in rows:
            drawn[at[i]], lent[at[i]] = d, loan
        price = terms.price_of([tier_of[i] for i in ids])
        cash = np.array([funds[instance_funds(i)] for i in ids], dtype=np.int64)
        owed_before = np.array([owed.get(i, 0) for i in ids], dtype=np.int64)
        settled = settle_pool(drawn, lent, price, owed_before, cash)
        for n, i in enumerate(ids):
            charge, repay = int(settled.charge[n]), int(settled.repay[n])
            if charge:
                legs.append(Transfer(instance_funds(i), POOL_REVENUE_ACCOUNT, charge))
            if repay:
                legs.append(Transfer(POOL_REVENUE_ACCOUNT, instance_funds(i), repay))
            funds[instance_funds(i)] += repay - charge
            owed[i] = int(settled.owed[n])
    return legs, {i: o for i, o in owed.items() if o or i in found.owed}


def write_settled(conn: Connection, found: Unsettled, owed: dict[str, int]) -> None:
    """Remove the settled hours' rows and keep what lenders are owed, in the settling
    transaction.

    Raises
    ------
    AccrualContention
        If a booking added to a settled row since it was read: the transaction rolls
        back and the round settles again.
    """
    if not found.rows:
        return
    removed = 0
    for instance_id, hour, drawn, lent in found.rows:
        removed += conn.execute(
            t_hours.delete().where(
                t_hours.c.instance_id == instance_id,
                t_hours.c.hour_us == hour,
                t_hours.c.drawn == drawn,
                t_hours.c.lent == lent,
            )
        ).rowcount
    if removed != len(found.rows):
        raise AccrualContention(1)
    if owed:
        conn.execute(_UPSERT_OWED, [{"instance_id": i, "owed": o} for i, o in owed.items()])
