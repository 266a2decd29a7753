"""A store that refuses an operation's transaction leaves the venue exactly as it was.

Random order streams run on SQLite; before some operations a trigger makes the store
refuse every order row, so the transaction that would lock, match and settle them
fails. The books (time priority included), every order's escrow share, the trade log
and every balance must then be as before the operation, and a venue restored from the
store at the end must hold the same books as the one that lived through the refusals.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from market.clock import ManualClock
from market.errors import MarketError
from market.ledger import Ledger, SqlStore
from market.venue.book import BookConfig
from market.venue.handling import OrderRequest, Venue
from market.venue.orders import TimeInForce
from tests.market.crash_workload import START
from tests.market.test_escrow_properties import (
    FEE_BPS,
    _venue,
    auction,
    bad_place,
    cancel,
    modify,
    place,
    run,
    tick,
)

# a batch of continuous orders placed together
batch = st.tuples(st.just("batch"), st.lists(place, min_size=2, max_size=4))
streams = st.lists(
    st.tuples(
        st.one_of(place, place, batch, bad_place, cancel, modify, tick, auction, run),
        st.booleans(),
    ),
    min_size=4,
    max_size=25,
)


def _refuse_rows(venue: Venue, refuse: bool) -> None:
    engine = venue._engine
    assert engine is not None
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM refusals")
        if refuse:
            conn.exec_driver_sql("INSERT INTO refusals VALUES (1)")


def _snapshot(venue: Venue, ids: list[str]) -> tuple[Any, ...]:
    book = venue.book("gold")
    resting = [
        (o.order_id, o.side, o.price, o.quantity, o.filled, o.state, o.priority)
        for o in book.open_orders()
    ]
    shares = {o: venue.escrow_left(o) for o in ids}
    return resting, shares, len(venue.trade_log()), venue.ledger.balances()


@settings(max_examples=60, deadline=None)
@given(stream=streams)
def test_a_refused_operation_changes_nothing(
    stream: list[tuple[Any, bool]], template_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("stream") / "venue.db"
    shutil.copy(template_db, path)
    url = f"sqlite:///{path}"
    clock = ManualClock(START)
    venue = _venue(clock, url)
    engine = venue._engine
    assert engine is not None
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE refusals (flag INTEGER)")
        for statement in ("INSERT", "UPDATE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER refuse_{statement} BEFORE {statement} ON market_orders "
                "WHEN EXISTS (SELECT 1 FROM refusals) "
                "BEGIN SELECT RAISE(ABORT, 'the disk refused the row'); END"
            )
    ids: list[str] = []
    for op, refuse in stream:
        _refuse_rows(venue, refuse)
        before = _snapshot(venue, ids)
        placed: list[Any] = []
        try:
            if op[0] in ("place", "batch"):
                specs = [op[1:]] if op[0] == "place" else [p[1:] for p in op[1]]
                placed = venue.place_many(
                    [
                        OrderRequest(
                            name,
                            side,
                            price,
                            qty,
                            tif,
                            clock.now + timedelta(minutes=2) if tif is TimeInForce.GTT else None,
                        )
                        for name, side, price, qty, tif in specs
                    ]
                )
                placed = [p.order for p in placed if not isinstance(p, MarketError)]
            elif op[0] == "cancel" and ids:
                venue.cancel(ids[op[1] % len(ids)])
            elif op[0] == "modify" and ids:
                venue.modify(ids[op[1] % len(ids)], price=op[2], quantity=op[3])
            elif op[0] == "tick":
                clock.advance(timedelta(minutes=op[1]))
                venue.expire()
            elif op[0] == "auction":
                batch_requests = [OrderRequest(*o) for o in op[1]]
                placed = [
                    w
                    for w in venue.submit_to_auction(batch_requests)
                    if not isinstance(w, MarketError)
                ]
            elif op[0] == "run":
                venue.run_auction("gold")
        except MarketError:
            event(f"{'refused' if refuse else 'rejected'}: {op[0]}")
            assert _snapshot(venue, ids) == before, f"a failed {op[0]} changed the venue"
            continue
        ids += [o.order_id for o in placed]
        if refuse:
            # an operation passes a refusing store only if it had no order to write
            assert _snapshot(venue, ids) == before, f"a refused {op[0]} changed the venue"
    _refuse_rows(venue, False)
    live = _snapshot(venue, ids)
    venue.ledger.close()
    again = _venue_from_store(url)
    assert _snapshot(again, [o for o in ids if again.escrow_left(o)])[:2] == (
        live[0],
        {o: s for o, s in live[1].items() if s},
    )
    assert again.ledger.verify().ok
    again.ledger.close()


def _venue_from_store(url: str) -> Venue:
    clock = ManualClock(START)
    store = SqlStore(url, durable=False)
    venue = Venue(
        Ledger(store, clock),
        clock,
        [BookConfig(tier="gold", tick_size=10, fee_bps=FEE_BPS)],
        engine=store.engine,
    )
    venue.restore()
    return venue
