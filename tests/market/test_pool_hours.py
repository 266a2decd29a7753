"""The priced pool's hours in the store: settled hour by hour as the replay settles them,
lenders paid pro rata from what the draws brought in and owed the rest, settled rows
gone, and a booking that adds to an hour being settled rolls the settlement back."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from market.cem.live_tables import pool_hours as t_hours
from market.cem.live_tables import pool_owed as t_owed
from market.cem.pool_hours import (
    HourTerms,
    add_pool_hours,
    settlement,
    unsettled,
    write_settled,
)
from market.cem.pool_rules import settle_pool
from market.cem.tiers import POOL_REVENUE_ACCOUNT
from market.errors import AccrualContention
from market.ledger import instance_funds
from market.migrations import upgrade
from market.round_tables import rounds as t_rounds

HOUR = 3_600_000_000
TIER_OF = {"a": "gold", "b": "gold", "c": "silver"}


def _terms(hour_us: int, gold: int, silver: int) -> HourTerms:
    return HourTerms(
        hour_us,
        ("silver", "gold"),
        (silver, gold),
        (1_500_000, 2_000_000),
        frozenset({"c"}),
        100,
        {},
    )


@pytest.fixture
def engine(sqlite_url: str) -> sa.Engine:
    upgrade(sqlite_url)
    return sa.create_engine(sqlite_url)


def _round(conn: sa.Connection, terms: HourTerms) -> None:
    conn.execute(
        t_rounds.insert().values(
            round_id=str(terms.hour_us),
            hour_us=terms.hour_us,
            stage="done",
            plan="{}",
            terms=terms.document(),
            started_at_us=0,
            updated_at_us=0,
        )
    )


def test_hours_settle_in_order_and_lenders_are_owed_what_the_draws_cannot_pay(
    engine: sa.Engine,
) -> None:
    with engine.begin() as conn:
        _round(conn, _terms(HOUR, gold=40, silver=30))
        _round(conn, _terms(2 * HOUR, gold=50, silver=20))
        # hour 1: a draws 2 credits of gold at 40 (80); c lent 5 credits of silver at 30
        add_pool_hours(conn, HOUR, ["a", "c"], np.array([2_000, 0]), np.array([0, 5_000]))
        # hour 2: b draws 1 credit of gold at 50; nothing lent
        add_pool_hours(conn, 2 * HOUR, ["b"], np.array([1_000]), np.array([0]))
        add_pool_hours(conn, 2 * HOUR, ["b"], np.array([500]), np.array([0]))  # adds up
        found = unsettled(conn, 3 * HOUR)
    assert [r[:2] for r in found.rows] == [("a", HOUR), ("c", HOUR), ("b", 2 * HOUR)]
    assert found.rows[-1][2] == 1_500
    funds = {instance_funds(i): 10_000 for i in "abc"} | {POOL_REVENUE_ACCOUNT: 0}
    legs, owed = settlement(found, funds, TIER_OF)
    paid = {(t.source, t.destination): t.amount for t in legs}
    # hour 1: c is owed 5 x 30 = 150 and the hour brings in 80: c is paid 80, owed 70;
    # hour 2: b pays 1.5 x 50 = 75, of which c is paid the 70 it is still owed
    assert paid[(instance_funds("a"), POOL_REVENUE_ACCOUNT)] == 80
    assert paid[(instance_funds("b"), POOL_REVENUE_ACCOUNT)] == 75
    assert sum(t.amount for t in legs if t.destination == instance_funds("c")) == 80 + 70
    assert owed == {}  # nobody is owed anything any more
    with engine.begin() as conn:
        write_settled(conn, found, owed)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t_hours)).scalar_one() == 0
        assert dict(conn.execute(sa.select(t_owed)).all()) == {}
        assert unsettled(conn, 3 * HOUR).rows == []


def test_a_booking_into_an_hour_being_settled_rolls_the_settlement_back(
    engine: sa.Engine,
) -> None:
    with engine.begin() as conn:
        _round(conn, _terms(HOUR, gold=40, silver=30))
        add_pool_hours(conn, HOUR, ["a"], np.array([2_000]), np.array([0]))
        found = unsettled(conn, 2 * HOUR)
    with engine.begin() as conn:  # an interval booked after the round read the hour
        add_pool_hours(conn, HOUR, ["a"], np.array([1_000]), np.array([0]))
    with pytest.raises(AccrualContention), engine.begin() as conn:
        write_settled(conn, found, {})
    with engine.connect() as conn:
        assert unsettled(conn, 2 * HOUR).rows == [("a", HOUR, 3_000, 0)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 50_000), st.integers(0, 50_000), st.integers(0, 10**6)),
        min_size=1,
        max_size=8,
    ),
    st.integers(1, 500),
)
def test_settlement_pays_out_no_more_than_it_takes_in(rows, price: int) -> None:
    drawn = np.array([r[0] for r in rows], dtype=np.int64)
    lent = np.array([r[1] for r in rows], dtype=np.int64)
    funds = np.array([r[2] for r in rows], dtype=np.int64)
    owed = np.zeros(len(rows), dtype=np.int64)
    settled = settle_pool(drawn, lent, np.full(len(rows), price), owed, funds)
    assert (settled.charge <= funds).all()
    assert (settled.charge <= drawn * price // 1000).all()
    assert settled.repay.sum() <= settled.charge.sum()
    # what each lender is owed is paid or still owed, never lost
    assert (settled.repay + settled.owed == lent * price // 1000).all()


def test_what_a_lender_is_still_owed_is_kept_and_paid_by_a_later_hour(engine: sa.Engine) -> None:
    funds = {instance_funds(i): 10_000 for i in "abc"} | {POOL_REVENUE_ACCOUNT: 0}
    with engine.begin() as conn:
        _round(conn, _terms(HOUR, gold=40, silver=30))
        _round(conn, _terms(2 * HOUR, gold=50, silver=20))
        add_pool_hours(conn, HOUR, ["a", "c"], np.array([2_000, 0]), np.array([0, 5_000]))
        first = unsettled(conn, 2 * HOUR)
        legs, owed = settlement(first, funds, TIER_OF)
        write_settled(conn, first, owed)
    assert owed == {"c": 70}
    with engine.begin() as conn:
        add_pool_hours(conn, 2 * HOUR, ["b"], np.array([1_500]), np.array([0]))
        later = unsettled(conn, 3 * HOUR)
        assert later.owed == {"c": 70}
        legs, owed = settlement(later, funds, TIER_OF)
        write_settled(conn, later, owed)
    assert sum(t.amount for t in legs if t.destination == instance_funds("c")) == 70
    with engine.connect() as conn:
        assert dict(conn.execute(sa.select(t_owed)).all()) == {"c": 0}
