"""A small venue workload that passes every kind of venue commit, for crash-point tests,
and :func:`killed_child`, which runs work in a child killed at one crash point.

:func:`run` runs it on a venue, reporting one acknowledgement per step it finished:
what a client would have been told. It is also the client's retry after a restart:
every step is safe to run again (orders carry keys that commit with them in
``crash_keys``; a step that already happened is skipped).
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from market.clock import ManualClock
from market.crashpoints import kill_at, set_crash_hook
from market.errors import MarketError
from market.ledger import EntryRequest, Ledger, SqlStore, Transfer, instance_funds, mint_account
from market.migrations import upgrade
from market.venue.book import BookConfig
from market.venue.handling import OrderRequest, Placement, Venue, t_orders
from market.venue.orders import TERMINAL_STATES, Order, OrderState, Side, TimeInForce
from tests.market.support import deposit

START = datetime(2026, 3, 2, tzinfo=UTC)
TIER = "gold"
NAMES = [f"vm{i}" for i in range(6)]
BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, GTT = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.GTT

crash_keys = sa.Table(
    "crash_keys",
    sa.MetaData(),
    sa.Column("key", sa.String(40), primary_key=True),
    sa.Column("order_id", sa.String(80), nullable=False),
)

# (key, instance, side, price, quantity, time in force, seconds to expiry)
OrderSpec = tuple[str, str, Side, int, int, TimeInForce, int | None]
STEPS: list[tuple[Any, ...]] = [
    ("limits", "vm5", 150, None),
    (
        "place",
        [
            ("a1", "vm1", SELL, 101, 2_000, GTC, None),
            ("a2", "vm2", SELL, 102, 2_000, GTC, None),
            ("a3", "vm1", SELL, 103, 1_000, GTC, None),
            ("b1", "vm0", BUY, 99, 1_000, GTC, None),
        ],
    ),
    # an IOC that trades 4,000 and leaves 1,000 to cancel
    ("place", [("i1", "vm3", BUY, 102, 5_000, IOC, None)]),
    # a batch whose second order trades with its first and with an older bid
    (
        "place",
        [("b2", "vm4", BUY, 100, 1_000, GTC, None), ("s1", "vm5", SELL, 99, 1_500, GTC, None)],
    ),
    ("place", [("g1", "vm2", BUY, 98, 1_000, GTT, 3)]),
    ("modify", "a3", None, 3_000),
    # a repriced bid that crosses the book and trades
    ("modify", "b1", 104, None),
    ("expire",),
    ("cancel", "a3"),
    ("deposit", "vm0", 5_000, "crash-deposit-1"),
    (
        "auction",
        [
            ("u1", "vm0", BUY, 110, 2_000, GTC, None),
            ("u2", "vm1", SELL, 95, 1_000, GTC, None),
            ("u3", "vm2", SELL, 100, 1_500, GTC, None),
        ],
    ),
    ("cancel", "u3"),
    ("auction", [("u4", "vm3", SELL, 105, 500, GTC, None)]),
    ("run_auction",),
    (
        "place",
        [("i2", "vm4", SELL, 90, 500, IOC, None), ("a5", "vm5", BUY, 120, 700, GTC, None)],
    ),
    # good-till-time orders whose time passes while nothing touches the book: the next
    # operation on it (a cancel, a modification with a top-up, a placement) finds them
    # due, and the expiry commits with that operation
    ("place", [("g2", "vm2", BUY, 95, 1_000, GTT, 1)]),
    ("cancel", "g2"),
    ("place", [("g3", "vm3", BUY, 96, 1_000, GTT, 1)]),
    ("modify", "g3", None, 2_000),
    ("place", [("g4", "vm4", SELL, 150, 500, GTT, 1)]),
    ("place", [("a6", "vm1", SELL, 160, 500, GTC, None)]),
]


def open_venue(url: str, clock: ManualClock) -> Venue:
    """Return a venue over the store at ``url`` with its open orders restored."""
    store = SqlStore(url, durable=False)
    venue = Venue(
        Ledger(store, clock), clock, [BookConfig(tier=TIER, fee_bps=25)], engine=store.engine
    )
    for name in NAMES:
        venue.register_instance(name, TIER)
    venue.restore()
    return venue


def prepare(url: str) -> None:
    """Migrate a fresh store, fund the instances and create the ``crash_keys`` table."""
    upgrade(url)
    clock = ManualClock(START)
    store = SqlStore(url, durable=False)
    venue = Venue(
        Ledger(store, clock), clock, [BookConfig(tier=TIER, fee_bps=25)], engine=store.engine
    )
    for name in NAMES:
        venue.register_instance(name, TIER)
    deposit(venue.ledger, NAMES, funds=10**7, credits=10**7)
    crash_keys.create(store.engine, checkfirst=True)
    venue.ledger.close()


def order_ids(engine: Engine) -> dict[str, str]:
    """Return every committed order key and its order id."""
    with engine.connect() as conn:
        return {r.key: r.order_id for r in conn.execute(sa.select(crash_keys))}


def _row(engine: Engine, order_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(t_orders).where(t_orders.c.order_id == order_id)).one()


def _recorder(
    engine: Engine, specs: Sequence[OrderSpec]
) -> Callable[[list[tuple[int, str]]], Callable[[Connection], None]]:
    def writes(accepted: list[tuple[int, str]]) -> Callable[[Connection], None]:
        rows = [{"key": specs[i][0], "order_id": order_id} for i, order_id in accepted]

        def write(conn: Connection) -> None:
            conn.execute(crash_keys.insert(), rows)

        return write

    return writes


def _requests(specs: Sequence[OrderSpec], now: datetime) -> list[OrderRequest]:
    return [
        OrderRequest(
            owner,
            side,
            price,
            quantity,
            tif,
            None if expiry is None else now + timedelta(seconds=expiry),
        )
        for _, owner, side, price, quantity, tif, expiry in specs
    ]


def _ack_order(ack: Callable[[str], None], key: str, order: Order, trades: Sequence[Any]) -> None:
    ack(json.dumps({"key": key, "order_id": order.order_id, "state": order.state.value}))
    for trade in trades:
        ack(json.dumps({"trade_id": trade.trade_id}))


def run(
    venue: Venue,
    clock: ManualClock,
    ack: Callable[[str], None] = lambda line: None,
    *,
    start: int = 0,
) -> None:
    """Run the steps from ``start`` on, each at its own time; acknowledge each step.

    A client resumes after the last step acknowledged: only the first step after it
    may have committed unseen, and the store tells whether it did.
    """
    engine = venue._engine
    assert engine is not None
    for number, step in enumerate(STEPS[start:], start):
        _step(venue, clock, ack, engine, number, step)
        ack(json.dumps({"step": number}))


def _step(
    venue: Venue,
    clock: ManualClock,
    ack: Callable[[str], None],
    engine: Engine,
    number: int,
    step: tuple[Any, ...],
) -> None:
    clock.set(START + timedelta(seconds=number))
    kind = step[0]
    done = order_ids(engine)
    if kind == "limits":
        venue.set_limits(step[1], max_bid=step[2], min_ask=step[3])
        ack(json.dumps({"limits": step[1]}))
    elif kind in ("place", "auction"):
        specs = [s for s in step[1] if s[0] not in done]
        if not specs:
            return
        requests = _requests(specs, clock())
        if kind == "place":
            placed: list[Any] = venue.place_many(requests, writes=_recorder(engine, specs))
        else:
            placed = venue.submit_to_auction(requests, writes=_recorder(engine, specs))
        for spec, result in zip(specs, placed, strict=True):
            if isinstance(result, MarketError):
                raise result
            if isinstance(result, Placement):
                _ack_order(ack, spec[0], result.order, result.trades)
            else:
                _ack_order(ack, spec[0], result, ())
    elif kind == "modify":
        _, key, price, quantity = step
        row = _row(engine, done[key])
        if OrderState(row.state) in TERMINAL_STATES or (
            (price is None or row.price == price)
            and (quantity is None or row.quantity == row.filled + quantity)
        ):
            return
        venue.modify(done[key], price=price, quantity=quantity)
        _ack_order(ack, key, venue.order(done[key]), ())
    elif kind == "expire":
        for event in venue.expire():
            ack(json.dumps({"expired": getattr(event, "order_id", "")}))
    elif kind == "cancel":
        order_id = done[step[1]]
        if OrderState(_row(engine, order_id).state) in TERMINAL_STATES:
            return
        venue.cancel(order_id)
        # cancelled, or expired if its time had come: the expiry wins
        _ack_order(ack, step[1], venue.order(order_id), ())
    elif kind == "deposit":
        _, owner, amount, key = step
        venue.ledger.post(
            EntryRequest(
                (Transfer(mint_account("funds"), instance_funds(owner), amount),),
                reason="deposit",
                actor="test",
                idempotency_key=key,
            )
        )
        ack(json.dumps({"deposit": key}))
    elif kind == "run_auction":
        if not venue.pending_auction_orders(TIER):
            return
        result = venue.run_auction(TIER)
        ack(json.dumps({"auction_id": result.auction_id}))
        for trade in result.trades:
            ack(json.dumps({"trade_id": trade.trade_id}))


def killed_child(
    work: Callable[[Callable[[str], None]], None], point: str, hit: int
) -> tuple[int, list[str]]:
    """Fork a child that runs ``work(ack)`` and SIGKILLs itself at ``point``'s ``hit``-th pass.

    Returns its exit code (negative: the signal) and the lines it acknowledged (its
    traceback, if it failed, goes to stderr). A fork shares this process's imports, so
    a case costs milliseconds, not the seconds of a fresh interpreter.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        code = 0
        try:
            os.close(read_end)
            with os.fdopen(write_end, "w") as out:
                set_crash_hook(kill_at(point, hit))

                def ack(line: str) -> None:
                    out.write(line + "\n")
                    out.flush()

                work(ack)
        except BaseException:
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as lines:
        acknowledged = lines.read().splitlines()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), acknowledged
