"""Crash points at every commit: a child runs a small venue workload and SIGKILLs itself
at one named crash point; the venue restarts over the same store and must come back
with every invariant holding and every acknowledged write present, then finish the
workload by retrying it to exactly the state of a run that never crashed. Every commit
of the workload is killed before and after it, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from market.clock import ManualClock
from market.crashpoints import CRASH_POINTS, set_crash_hook
from market.venue.audit import audit_venue_store
from market.venue.handling import Venue, t_auctions, t_orders, t_trades
from market.venue.orders import TimeInForce
from tests.conftest import pg_schema
from tests.market.crash_workload import (
    START,
    TIER,
    killed_child,
    open_venue,
    order_ids,
    prepare,
    run,
)


def _state(venue: Venue) -> dict[str, Any]:
    """The outcome of a workload, by order key: independent of ids and of the store."""
    engine = venue._engine
    assert engine is not None
    keys = {order_id: key for key, order_id in order_ids(engine).items()}
    with engine.connect() as conn:
        orders = {
            keys[r.order_id]: (r.state, r.filled, r.price, r.quantity, r.escrow)
            for r in conn.execute(sa.select(t_orders))
        }
        trades = sorted(
            (keys[r.buy_order_id], keys[r.sell_order_id], r.price, r.quantity, r.value, r.fee)
            for r in conn.execute(sa.select(t_trades))
        )
        auctions = [(r.clearing_price, r.volume) for r in conn.execute(sa.select(t_auctions))]
    balances = {a: b for a, b in venue.ledger.balances().items() if b}
    book = venue.book(TIER)
    resting = [(keys[o.order_id], o.remaining) for o in book.open_orders()]
    return {
        "orders": orders,
        "trades": trades,
        "auctions": auctions,
        "balances": balances,
        "book": resting,
    }


def _check_invariants(venue: Venue) -> list[str]:
    engine = venue._engine
    assert engine is not None
    problems = audit_venue_store(engine).problems()
    book = venue.book(TIER)
    bid, ask = book.best_bid(), book.best_ask()
    if bid is not None and ask is not None and bid >= ask:
        problems.append(f"the restored book is crossed: {bid} >= {ask}")
    problems += [
        f"IOC {o.order_id} rests in the restored book"
        for o in book.open_orders()
        if o.time_in_force is TimeInForce.IOC
    ]
    return problems


def _check_acknowledged(venue: Venue, acks: list[dict[str, Any]]) -> list[str]:
    engine = venue._engine
    assert engine is not None
    keys = order_ids(engine)
    with engine.connect() as conn:
        states = {r.order_id: r.state for r in conn.execute(sa.select(t_orders))}
        trades = set(conn.execute(sa.select(t_trades.c.trade_id)).scalars())
        auctions = set(conn.execute(sa.select(t_auctions.c.auction_id)).scalars())
    missing = []
    for ack in acks:
        if "key" in ack:
            if keys.get(ack["key"]) != ack["order_id"]:
                missing.append(f"acknowledged order {ack['key']} ({ack['order_id']}) is gone")
            elif ack["state"] in ("filled", "cancelled", "expired") and (
                states[ack["order_id"]] != ack["state"]
            ):
                missing.append(
                    f"order {ack['key']} was {ack['state']}, is {states[ack['order_id']]}"
                )
        if "trade_id" in ack and ack["trade_id"] not in trades:
            missing.append(f"acknowledged trade {ack['trade_id']} is gone")
        if "auction_id" in ack and ack["auction_id"] not in auctions:
            missing.append(f"acknowledged auction {ack['auction_id']} is gone")
    return missing


def _trace(url: str) -> list[str]:
    """Run the workload once in this process; return the crash points it passes."""
    prepare(url)
    clock = ManualClock(START)
    passed: list[str] = []
    # from the start, as in the child: opening the venue opens its accounts
    previous = set_crash_hook(passed.append)
    try:
        venue = open_venue(url, clock)
        run(venue, clock)
    finally:
        set_crash_hook(previous)
    venue.ledger.close()
    return passed


def _cases(trace: list[str]) -> list[tuple[str, int]]:
    """Return ``(point, hit)`` for every commit of ``trace``, before and after it.

    A venue commit passes its own point and the ledger's at the same moment; the
    venue's stands for both.
    """
    hits: Counter[str] = Counter()
    cases = []
    for k, name in enumerate(trace):
        hits[name] += 1
        if name.startswith("ledger."):
            moment = name.rsplit(".", 1)[1]
            beside = trace[k - 1] if moment == "before_commit" else trace[k + 1 : k + 2]
            beside = beside if isinstance(beside, str) else (beside[0] if beside else "")
            if beside.startswith("venue.") and beside.endswith(moment):
                continue
        cases.append((name, hits[name]))
    return cases


def _crash_and_recover(url: str, point: str, hit: int, reference: dict[str, Any]) -> list[str]:
    prepare(url)

    def work(ack: Callable[[str], None]) -> None:
        clock = ManualClock(START)
        run(open_venue(url, clock), clock, ack)

    code, lines = killed_child(work, point, hit)
    acks = [json.loads(line) for line in lines]
    where = f"{point} #{hit}"
    if code != -signal.SIGKILL:
        return [f"{where}: the child was not killed there (exit {code})"]
    clock = ManualClock(START)
    try:
        venue = open_venue(url, clock)
    except Exception as exc:
        return [f"{where}: the restart was refused: {exc}"]
    problems = _check_invariants(venue) + _check_acknowledged(venue, acks)
    # the client resumes after its last acknowledged step: it must end exactly where an
    # uncrashed run ends
    run(venue, clock, start=1 + max((a["step"] for a in acks if "step" in a), default=-1))
    problems += _check_invariants(venue)
    outcome = _state(venue)
    problems += [
        f"after retries, {part} differ from an uncrashed run: {outcome[part]} != {reference[part]}"
        for part in reference
        if outcome[part] != reference[part]
    ]
    venue.ledger.close()
    # and memory matches the store: a second restart rebuilds the same book
    again = open_venue(url, ManualClock(clock()))
    if _state(again)["book"] != outcome["book"]:
        problems.append("a second restart rebuilt another book")
    again.ledger.close()
    return [f"{where}: {p}" for p in problems]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str]]:
    """The outcome of an uncrashed run on SQLite, and the crash points it passes."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reference') / 'venue.db'}"
    trace = _trace(url)
    venue = open_venue(url, ManualClock(START))
    state = _state(venue)
    venue.ledger.close()
    return state, trace


def test_the_workload_passes_every_kind_of_commit(
    reference: tuple[dict[str, Any], list[str]],
) -> None:
    state, trace = reference
    # the live accrual's commits are killed in test_live_accrual.py, the market rounds'
    # in tests/serving/test_market_rounds.py
    unreached = {
        p for p in set(CRASH_POINTS) - set(trace) if not p.startswith(("accrual.", "round."))
    }
    # the restore commits only to repair a store an older venue left: tested apart
    assert unreached == {"venue.restore.before_commit", "venue.restore.after_commit"}
    # the workload really trades, cancels an IOC's rest, expires and clears an auction
    assert state["orders"]["i1"][:2] == ("cancelled", 4_000)
    assert state["orders"]["g1"][0] == "expired"
    assert state["orders"]["u3"][0] == "cancelled"
    assert len(state["auctions"]) == 1
    assert state["auctions"][0][1] > 0
    assert state["orders"]["b1"][0] == "filled"
    assert state["orders"]["i2"][:2] == ("cancelled", 0)
    assert ("b2", "s1", 100, 1_000, 100, 0) in state["trades"]
    # good-till-time orders expired by the cancel, the modification (with a top-up) and
    # the placement that found them due: nothing else touched the book in between
    assert [state["orders"][k][::4] for k in ("g2", "g3", "g4")] == [("expired", 0)] * 3
    assert state["book"] == [("a5", 700), ("a6", 500)]


def test_a_kill_at_any_commit_on_sqlite_comes_back_whole(
    reference: tuple[dict[str, Any], list[str]], tmp_path: Path
) -> None:
    state, trace = reference
    cases = _cases(trace)
    problems: list[str] = []
    for n, (point, hit) in enumerate(cases):
        problems += _crash_and_recover(f"sqlite:///{tmp_path / f'venue-{n}.db'}", point, hit, state)
    assert len(cases) >= 30
    assert problems == []


@pytest.mark.postgres
def test_a_kill_at_any_commit_on_postgres_comes_back_whole(
    reference: tuple[dict[str, Any], list[str]], pg_server_url: str
) -> None:
    state, trace = reference
    cases = _cases(trace)
    problems: list[str] = []
    for point, hit in cases:
        with pg_schema(pg_server_url) as url:
            problems += _crash_and_recover(url, point, hit, state)
    assert len(cases) >= 30
    assert problems == []
