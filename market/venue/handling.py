"""The durable venue: order books and call auctions with escrow and ledger settlement.

One :class:`Venue` runs one book and one call auction per tier over a
:class:`~market.ledger.Ledger`. Each instance trades its own tier's credits for funds;
its owner may set standing limits (the highest price it may bid, the lowest it may
ask) that every order must respect.

Every operation validates everything first (a failure raises a specific
:class:`~market.errors.MarketError`, and the books and every balance stay as they
were), then changes the books in memory and commits what it did in one ledger
transaction: a continuous order's escrow lock, one entry per trade (value, fee and
credits legs) and one entry returning what is left in the escrow of every order that
finished; a modification's top-up with what it trades; or one entry for a whole
auction batch, unused escrow included. If the store refuses that transaction the books
and escrow shares are rewound (:meth:`~market.venue.book.OrderBook.rewind`) and the error
propagates: nothing changed.

Orders, trades, standing limits and auction results are written to the same SQL
database as the ledger (tables ``market_*``, created by the store's Alembic
migrations) when the venue is given its engine, inside the ledger's own transaction,
so a crash at any moment leaves the store at a commit boundary: every order's row
holds its state after matching and its share of the escrow, every trade its
settlement. Each commit passes the crash points ``venue.<operation>.before_commit``
and ``.after_commit`` (:mod:`market.crashpoints`). Every ledger entry carries an
idempotency key derived from the order, trade or auction id, so a settlement can be
posted again without moving anything twice. Batches (:meth:`Venue.place_many`) share
one transaction between many orders. Operations run one at a time (a lock serialises
callers from several threads).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, ParamSpec, TypeVar

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from market.clock import from_micros, to_micros
from market.crashpoints import crash_point
from market.errors import (
    InsufficientEscrow,
    InvalidOrder,
    MarketError,
    SelfTradeRejected,
    StandingLimitViolation,
    UnknownInstance,
    UnknownOrder,
    UnknownTier,
)
from market.ledger import (
    FEES_ACCOUNT,
    FUNDS,
    AccountKind,
    EntryRequest,
    ExtraWrites,
    InsufficientBalance,
    Ledger,
    Transfer,
    credits_asset,
    escrow_account,
    read_connection,
)
from market.memory import gc_paused
from market.venue import tables as schema
from market.venue.auction import AuctionMode, AuctionOrder, AuctionResult, CallAuction
from market.venue.book import BookConfig, BookEvent, Clock, OrderBook
from market.venue.escrow import (
    RELEASE_REASON,
    escrow_asset,
    escrow_of,
    lock_request,
    owner_account,
    release_transfers,
    required_escrow,
    trading_accounts,
)
from market.venue.marketdata import MarketData
from market.venue.orders import (
    LIFECYCLE,
    TERMINAL_STATES,
    Order,
    OrderEvent,
    OrderEventType,
    OrderState,
    Side,
    TimeInForce,
    Trade,
    check_expiry,
    check_quantity,
    transition,
)
from market.venue.settlement import auction_request, trade_request
from market.venue.store import (
    bulk_sql,
    create_market_tables,
    order_row,
    trade_log_writes,
)

t_orders = schema.orders
t_trades = schema.trades
t_limits = schema.limits
t_auctions = schema.auctions

AcceptedWrites = Callable[[list[tuple[int, str]]], ExtraWrites | None]
"""A caller's rows for the transaction that commits accepted orders.

Called with the ``(request position, order id)`` of the orders one transaction locks;
returns writes to run on that transaction's connection (or ``None``), so that the
caller's rows commit with the orders' escrow locks and rows, or not at all."""


def auction_clearing_accounts(tier: str) -> tuple[str, str]:
    """Return the funds and credits clearing accounts ``tier``'s auctions settle through."""
    return escrow_account(f"auction-{tier}-funds"), escrow_account(f"auction-{tier}-credits")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An instance's request to buy or sell its tier's credits at a limit price."""

    instance_id: str
    side: Side
    price: int
    quantity: int
    time_in_force: TimeInForce = TimeInForce.GTC
    expires_at: datetime | None = None


def _stored_order(row: Any) -> Order:
    """Return the order a stored row holds."""
    return Order(
        order_id=row.order_id,
        tier=row.tier,
        owner=row.owner,
        side=Side(row.side),
        price=row.price,
        quantity=row.quantity,
        filled=row.filled,
        time_in_force=TimeInForce(row.time_in_force),
        expires_at=None if row.expires_at_us is None else from_micros(row.expires_at_us),
        created_at=from_micros(row.created_at_us),
        state=OrderState(row.state),
        priority=row.priority,
    )


def _stored_trade(row: Any) -> Trade:
    """Return the trade a stored row holds."""
    return Trade(
        trade_id=row.trade_id,
        tier=row.tier,
        price=row.price,
        quantity=row.quantity,
        buy_order_id=row.buy_order_id,
        sell_order_id=row.sell_order_id,
        buyer=row.buyer,
        seller=row.seller,
        value=row.value,
        fee=row.fee,
        at=from_micros(row.at_us),
        aggressor=None if row.aggressor is None else Side(row.aggressor),
        seller_value=row.seller_value,
    )


@dataclass(frozen=True, slots=True)
class Placement:
    """What placing one order did: its state afterwards, its trades and its events."""

    order: Order
    trades: tuple[Trade, ...]
    events: tuple[OrderEvent, ...]


@dataclass(slots=True)
class _Held:
    """An open order's share of its owner's escrow account (persisted on its row)."""

    owner: str
    side: Side
    tier: str
    left: int


ADOPT_REASON = "market.escrow.adopt"
# an auction order's final state, indexed by whether it was filled completely
_AUCTION_OUTCOMES = (
    LIFECYCLE[OrderState.OPEN, OrderEventType.CANCEL],
    LIFECYCLE[OrderState.OPEN, OrderEventType.FILL],
)
_AUCTION_OUTCOME_VALUES = tuple(state.value for state in _AUCTION_OUTCOMES)
_LEFT = attrgetter("left")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _serialised(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a venue method under the venue's lock: one operation at a time."""

    @functools.wraps(method)
    def locked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with args[0]._mutex:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return locked


class Venue:
    """The secondary market of every tier: books, auctions, escrow and settlement.

    Parameters
    ----------
    ledger
        Where every credit and unit of money moves.
    clock
        Returns the current UTC time; stamps orders, trades and expiries.
    tiers
        One :class:`~market.venue.book.BookConfig` per tier traded.
    engine
        The engine of the ledger's ``SqlStore``, to persist orders, trades, limits and
        auction results in the ledger's transactions; ``None`` keeps them in memory
        only.
    auction_mode
        Uniform-price or McAfee call auctions.
    actor
        Who the ledger entries name as their author.
    id_prefix
        Starts every order, trade and auction id. A replay passes a fixed one to get
        the same ids every run; the default is random, so that ids from two venues
        (or two runs over one store) never collide.
    """

    def __init__(
        self,
        ledger: Ledger,
        clock: Clock,
        tiers: Sequence[BookConfig],
        *,
        engine: Engine | None = None,
        auction_mode: AuctionMode = AuctionMode.UNIFORM,
        actor: str = "cem",
        id_prefix: str | None = None,
    ) -> None:
        self.ledger = ledger
        # the books, escrow records and the ledger must move together: one caller at a time
        self._mutex = threading.RLock()
        self._clock = clock
        self._actor = actor
        self._prefix = uuid.uuid4().hex[:10] if id_prefix is None else id_prefix
        self._configs = {c.tier: c for c in tiers}
        self._books = {c.tier: OrderBook(c, clock, id_prefix=f"{self._prefix}-") for c in tiers}
        self._auctions = {
            c.tier: CallAuction(c.tier, tick_size=c.tick_size, fee_bps=c.fee_bps, mode=auction_mode)
            for c in tiers
        }
        self._instances: dict[str, str] = {}
        self._limits: dict[str, tuple[int | None, int | None]] = {}
        self._held: dict[str, _Held] = {}
        self._pending: dict[str, dict[str, AuctionOrder]] = {c.tier: {} for c in tiers}
        # per tier, owner -> [side, number of waiting orders]: self-trade checks
        self._waiting: dict[str, dict[str, list[Any]]] = {c.tier: {} for c in tiers}
        self._auction_snapshots: dict[str, Order] = {}
        # order id -> (the order as it waited, quantity filled, final state)
        self._finished_auction_orders: dict[str, tuple[Order, int, OrderState]] = {}
        self._last_price: dict[str, int] = {}
        self._trade_log: list[Trade] = []
        self._seq = 0
        self._auction_seq = 0
        self.market_data = MarketData()
        self._engine = engine
        self._postgres = engine is not None and engine.dialect.name == "postgresql"
        if engine is not None:
            self._prepare_store(engine)
        # each tier's auctions settle through two clearing accounts that end every batch at 0
        self._clearing = {c.tier: auction_clearing_accounts(c.tier) for c in tiers}
        ledger.open_accounts(
            [
                (FEES_ACCOUNT, FUNDS, AccountKind.FEES),
                *(
                    (account, asset, AccountKind.ESCROW)
                    for tier, pair in self._clearing.items()
                    for account, asset in zip(pair, (FUNDS, credits_asset(tier)), strict=True)
                ),
            ]
        )

    def _prepare_store(self, engine: Engine) -> None:
        # the venue's tables, and the statements that write its rows
        ledger_engine: object = getattr(self.ledger.store, "engine", None)
        if ledger_engine is not engine:
            raise MarketError(
                "the venue writes its rows in its ledger's transactions: "
                "pass the engine of the ledger's SqlStore"
            )
        if not sa.inspect(engine).has_table(t_trades.name):
            create_market_tables(engine)
        self._upsert_orders = bulk_sql(engine, t_orders, upsert=True)
        self._insert_auction = bulk_sql(engine, t_auctions, upsert=False)
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._update_orders = (
            f"UPDATE {t_orders.name} SET filled = {mark}, state = {mark}, escrow = 0 "
            f"WHERE order_id = {mark}"
        )
        # one statement per group of auction orders: filled whole, or cancelled unfilled
        ids = "= ANY(%s)" if self._postgres else "IN (SELECT value FROM json_each(?))"
        self._finish_orders = tuple(
            f"UPDATE {t_orders.name} SET filled = {filled}, state = '{state.value}', "
            f"escrow = 0 WHERE order_id {ids}"
            for filled, state in zip(("quantity", "0"), _AUCTION_OUTCOMES[::-1], strict=True)
        )
        self._update_escrow = f"UPDATE {t_orders.name} SET escrow = {mark} WHERE order_id = {mark}"

    # ---------------------------------------------------------------- set-up

    @_serialised
    def register_instance(self, instance_id: str, tier: str) -> None:
        """Let an instance of ``tier`` trade: open its credit and funds accounts and the
        escrow accounts its orders lock them in.

        Raises
        ------
        UnknownTier
            If the venue runs no book for ``tier``.
        """
        if tier not in self._books:
            raise UnknownTier(tier)
        self.ledger.open_accounts(trading_accounts(instance_id, tier))
        self._instances[instance_id] = tier

    @_serialised
    def set_limits(
        self, instance_id: str, *, max_bid: int | None = None, min_ask: int | None = None
    ) -> None:
        """Set the owner's standing limits: bid at most ``max_bid``, ask at least ``min_ask``.

        ``None`` lifts a limit. Orders already resting are not touched.

        Raises
        ------
        UnknownInstance
            If the instance is not registered.
        InvalidOrder
            If a limit is not a positive integer.
        """
        self._tier_of(instance_id)
        for name, value in (("max_bid", max_bid), ("min_ask", min_ask)):
            if value is not None and (type(value) is not int or value <= 0):
                raise InvalidOrder(
                    f"{name} must be a positive integer or None, got {value!r}",
                    field=name,
                    value=value,
                )
        if self._engine is not None:
            row = {"instance_id": instance_id, "max_bid": max_bid, "min_ask": min_ask}

            def write(conn: Connection) -> None:
                conn.execute(sa.delete(t_limits).where(t_limits.c.instance_id == instance_id))
                conn.execute(t_limits.insert(), row)

            self._post([], write, "limits")
        self._limits[instance_id] = (max_bid, min_ask)

    @_serialised
    def restore(self) -> int:
        """Reload standing limits and open orders from the store after a restart.

        Call it on a fresh venue over the same ledger and engine. Continuous orders go
        back into their books in their old time priority and auction orders back to
        their tier's next auction; each keeps the share of its owner's escrow its row
        records. A store an older venue left after a crash between accepting orders
        and settling them (the venue now does both in one transaction) may hold open
        orders that cross the book or immediate-or-cancel orders still open: those are
        matched in time priority as if they arrived now, what an immediate-or-cancel
        order leaves is cancelled, and the settlement commits in one transaction, so a
        crash during it leaves the store as it was and the next restore finishes the
        work exactly once. Orders written before escrow was held per instance have their
        per-order escrow moved into their owner's escrow account first (one entry,
        committed with their rows' shares). Instances named by those orders are
        registered again; others need :meth:`register_instance`. Returns the number of
        orders open afterwards.

        Raises
        ------
        MarketError
            If the venue has no engine or already holds orders, or if an escrow
            account's balance differs from the sum of its open orders' shares.
        """
        if self._engine is None:
            raise MarketError("a venue without an engine has nothing to restore")
        if self._held:
            raise MarketError("restore into a fresh venue, before any order is placed")
        limits, rows = self._stored_rows(self._engine)
        for row in rows:
            if row.owner not in self._instances:
                self.register_instance(row.owner, row.tier)
        shares = self._escrow_shares(rows)
        for row in limits:
            self._limits[row.instance_id] = (row.max_bid, row.min_ask)
        # orders an older venue accepted but did not get to match before a crash
        unfinished: dict[str, list[BookEvent]] = defaultdict(list)
        for row in rows:
            order = _stored_order(row)
            if row.auction:
                self._pending[row.tier][row.order_id] = AuctionOrder(
                    row.order_id, row.owner, order.side, row.price, order.remaining
                )
                self._wait(row.tier, row.owner, order.side)
                self._auction_snapshots[row.order_id] = order
            self._held[row.order_id] = _Held(row.owner, order.side, row.tier, shares[row.order_id])
            if not row.auction:
                unfinished[row.tier] += self.book(row.tier).resume(order)
        for tier, events in unfinished.items():
            if events:
                self._apply(self.book(tier), events, "restore")
        self._restore_prices(self._engine)
        return len(self._held)

    def _restore_prices(self, engine: Engine, per_tier: int = 100) -> None:
        # the agents price from the tiers' latest trades and a call auction breaks ties
        # towards the tier's last clearing price: a restart must forget neither
        with read_connection(engine) as conn:
            for tier in self._books:
                rows = conn.execute(
                    sa.select(t_trades)
                    .where(t_trades.c.tier == tier)
                    .order_by(t_trades.c.at_us.desc(), t_trades.c.trade_id.desc())
                    .limit(per_tier)
                ).all()
                self.market_data.record_trades(_stored_trade(r) for r in reversed(rows))
                last = conn.execute(
                    sa.select(t_auctions.c.clearing_price)
                    .where(t_auctions.c.tier == tier, t_auctions.c.clearing_price.is_not(None))
                    .order_by(t_auctions.c.at_us.desc())
                    .limit(1)
                ).scalar()
                if last is not None:
                    self._last_price[tier] = int(last)

    @staticmethod
    def _stored_rows(engine: Engine) -> tuple[Sequence[Any], list[Any]]:
        """Return the standing limits and the open orders' rows, in the order to restore."""
        open_states = [OrderState.OPEN.value, OrderState.PARTIALLY_FILLED.value]
        with read_connection(engine) as conn:
            limits = conn.execute(sa.select(t_limits)).all()
            stored = conn.execute(
                sa.select(t_orders).where(t_orders.c.state.in_(open_states))
            ).all()
        # resting orders in their time priority, then those that never rested (auction
        # orders, and continuous orders accepted but not matched) in arrival order: an
        # order id ends in the venue's sequence number
        rows = sorted(
            stored,
            key=lambda r: (
                r.priority == 0,
                r.priority,
                r.created_at_us,
                len(r.order_id),
                r.order_id,
            ),
        )
        return limits, rows

    def _escrow_shares(self, rows: Sequence[Any]) -> dict[str, int]:
        """Return each open order's share of its owner's escrow; check the accounts hold them.

        Raises
        ------
        MarketError
            If an escrow account's balance differs from the sum of its orders' shares.
        """
        shares = {row.order_id: row.escrow for row in rows}
        legacy = [row for row in rows if row.escrow is None]
        if legacy:
            shares.update(self._adopt_order_escrow(legacy))
        expected: dict[str, int] = defaultdict(int)
        for row in rows:
            expected[escrow_of(Side(row.side), row.owner)] += shares[row.order_id]
        held = {a: b for a, b in self.ledger.balances("escrow:instance:").items() if b}
        if held != {a: b for a, b in expected.items() if b}:
            wrong = sorted(
                a for a in held.keys() | expected.keys() if held.get(a, 0) != expected[a]
            )
            raise MarketError(
                f"escrow accounts differ from their open orders' shares: {', '.join(wrong)}"
            )
        return shares

    def _adopt_order_escrow(self, rows: Sequence[Any]) -> dict[str, int]:
        """Move per-order escrow accounts of ``rows`` into their owners' escrow accounts."""
        balances = self.ledger.balances("escrow:order:")
        shares = {row.order_id: balances.get(escrow_account(row.order_id), 0) for row in rows}
        legs = tuple(
            Transfer(escrow_account(row.order_id), escrow_of(Side(row.side), row.owner), amount)
            for row in rows
            if (amount := shares[row.order_id])
        )
        updates = [(shares[row.order_id], row.order_id) for row in rows]
        sql = self._update_escrow

        def write(conn: Connection) -> None:
            conn.exec_driver_sql(sql, updates)

        requests = []
        if legs:
            self._seq += 1
            requests.append(
                EntryRequest(
                    legs,
                    reason=ADOPT_REASON,
                    actor=self._actor,
                    idempotency_key=f"escrow-adopt:{self._prefix}:{self._seq}",
                    metadata={"orders": len(rows)},
                )
            )
        self._post(requests, write, "restore")
        return shares

    # ---------------------------------------------------------------- queries

    def book(self, tier: str) -> OrderBook:
        """Return the continuous book of ``tier``."""
        try:
            return self._books[tier]
        except KeyError:
            raise UnknownTier(tier) from None

    def order(self, order_id: str) -> Order:
        """Return a snapshot of an order of any book or auction."""
        if order_id in self._auction_snapshots:
            return self._auction_snapshots[order_id]
        if order_id in self._finished_auction_orders:
            waited, filled, state = self._finished_auction_orders[order_id]
            return dataclasses.replace(waited, filled=filled, state=state)
        held = self._held.get(order_id)
        tier = held.tier if held is not None else None
        for book in [self._books[tier]] if tier else self._books.values():
            if order_id in book:
                return book.order(order_id)
        raise UnknownOrder(order_id)

    def escrow_left(self, order_id: str) -> int:
        """Return what an open order still holds in escrow (0 once it finished)."""
        held = self._held.get(order_id)
        return 0 if held is None else held.left

    def trade_log(self, tier: str | None = None) -> list[Trade]:
        """Return every trade of this venue, oldest first (of ``tier`` if given)."""
        return [t for t in self._trade_log if tier is None or t.tier == tier]

    def pending_auction_orders(self, tier: str) -> list[AuctionOrder]:
        """Return the orders waiting for ``tier``'s next call auction, in arrival order."""
        return list(self._pending[self.book(tier).tier].values())

    # -------------------------------------------------------------- continuous

    def place(
        self,
        instance_id: str,
        side: Side,
        price: int,
        quantity: int,
        time_in_force: TimeInForce = TimeInForce.GTC,
        expires_at: datetime | None = None,
    ) -> Placement:
        """Place one limit order in the instance's tier book; see :meth:`place_many`.

        Raises
        ------
        MarketError
            The specific error of a bad order; nothing changes.
        """
        (result,) = self.place_many(
            [OrderRequest(instance_id, side, price, quantity, time_in_force, expires_at)]
        )
        if isinstance(result, MarketError):
            raise result
        return result

    @_serialised
    def place_many(
        self, requests: Sequence[OrderRequest], *, writes: AcceptedWrites | None = None
    ) -> list[Placement | MarketError]:
        """Place orders in arrival order, sharing the ledger and store transactions.

        Parameters
        ----------
        requests
            The orders, in arrival order.
        writes
            Adds the caller's rows to the transaction that commits the accepted orders'
            escrow locks, rows, trades and settlement: called with the
            ``(request position, order id)`` of the orders that transaction commits, it
            returns writes to run on its connection, or ``None``. It is called once per
            such transaction (more than once only if some owner's balance changed under
            the batch and its orders were placed one by one), and not at all if no order
            is accepted. What the writes raise rolls the orders back: SQL errors reach
            the caller as :class:`~market.errors.MarketError` (the driver's error as its
            cause), others unchanged. Needs a venue with an engine.

        Returns, per request, its :class:`Placement` or the specific error that rejected
        it (a rejected order changes nothing).

        Raises
        ------
        MarketError
            If ``writes`` is given to a venue without an engine; nothing changes.
        """
        self._check_writes(writes)
        now = self._clock()
        results: list[Placement | MarketError | None] = [None] * len(requests)
        funded = self._fund(requests, now, results, auction=False)
        if funded:
            try:
                self._place_funded(requests, funded, results, writes)
            except InsufficientBalance:
                # an owner's balance changed under the batch: one order per transaction,
                # so that the others still trade
                for item in funded:
                    try:
                        self._place_funded(requests, [item], results, writes)
                    except InsufficientBalance as exc:
                        results[item[0]] = self._insufficient(requests[item[0]], exc, item[2])
        return [r for r in results if r is not None]

    def _place_funded(
        self,
        requests: Sequence[OrderRequest],
        funded: list[tuple[int, str, int]],
        results: list[Any],
        writes: AcceptedWrites | None,
    ) -> None:
        """Lock, match and settle funded orders in one transaction.

        The orders' escrow locks, their rows in their state after matching, the trades
        and their settlement commit together, so that no commit ever leaves an order
        open that should have traded. If the store refuses the transaction the books
        and escrow shares are rewound and the error propagates.
        """
        ledger_requests = self._lock_entries(
            [(requests[i], order_id, amount) for i, order_id, amount in funded]
        )
        for i, order_id, amount in funded:
            r = requests[i]
            self._held[order_id] = _Held(
                r.instance_id, r.side, self._instances[r.instance_id], amount
            )
        trades: list[Trade] = []
        touched: set[str] = set()
        finished: list[tuple[str, _Held]] = []
        placed: list[tuple[int, Placement]] = []
        try:
            for i, order_id, _ in funded:
                r = requests[i]
                book = self._books[self._instances[r.instance_id]]
                events = book.submit(
                    order_id,
                    r.instance_id,
                    r.side,
                    r.price,
                    r.quantity,
                    r.time_in_force,
                    r.expires_at,
                )
                own = self._settle(book, events, ledger_requests, trades, touched, finished)
                mine = tuple(e for e in own if isinstance(e, OrderEvent) and e.order_id == order_id)
                trades_made = tuple(t for t in own if isinstance(t, Trade))
                placed.append((i, Placement(book.order(order_id), trades_made, mine)))
            extra = None if writes is None else writes([(i, o) for i, o, _ in funded])
            self._commit(
                ledger_requests,
                trades,
                [self.order(o) for o in touched],
                operation="place",
                extra=extra,
            )
        except BaseException:
            self._rewind(trades, touched, finished, added=[o for _, o, _ in funded])
            raise
        for i, placement in placed:
            results[i] = placement

    def _insufficient(self, r: OrderRequest, exc: InsufficientBalance, amount: int) -> MarketError:
        asset = escrow_asset(r.side, self._instances[r.instance_id])
        return InsufficientEscrow(r.instance_id, asset, exc.balance, amount)

    def _rewind(
        self,
        trades: Sequence[Trade],
        touched: set[str],
        finished: Sequence[tuple[str, _Held]],
        added: Sequence[str] = (),
        before: dict[str, tuple[Order, int]] | None = None,
    ) -> None:
        """Put the books and escrow shares back as they were before a refused operation.

        ``touched`` orders that were open before are put back in the state the batch's
        ``trades`` took them from (or as ``before`` recorded them, with their escrow
        share), ``finished`` escrow records come back, ``added`` orders are forgotten.
        """
        for order_id, held in finished:
            self._held[order_id] = held
        new = set(added)
        for order_id in new:
            self._held.pop(order_id, None)
        filled: dict[str, int] = defaultdict(int)
        spent: dict[str, int] = defaultdict(int)
        for t in trades:
            filled[t.buy_order_id] += t.quantity
            filled[t.sell_order_id] += t.quantity
            spent[t.buy_order_id] += t.value + t.fee
            spent[t.sell_order_id] += t.quantity
        snapshots: dict[str, list[Order]] = defaultdict(list)
        for order_id in touched - new:
            held = self._held[order_id]
            if before is not None and order_id in before:
                snapshot, held.left = before[order_id]
            else:
                now = self._books[held.tier].order(order_id)
                done = now.filled - filled[order_id]
                state = OrderState.OPEN if done == 0 else OrderState.PARTIALLY_FILLED
                snapshot = dataclasses.replace(now, filled=done, state=state)
                held.left += spent[order_id]
            snapshots[held.tier].append(snapshot)
        for tier, book in self._books.items():
            dropped = [o for o in new if o in book]
            if snapshots[tier] or dropped:
                book.rewind(snapshots[tier], dropped)

    @_serialised
    def cancel(self, order_id: str) -> list[BookEvent]:
        """Cancel an open order (continuous or waiting for an auction); return its escrow.

        Raises
        ------
        UnknownOrder
            If no order has this id.
        InvalidTransition
            If the order is already filled, cancelled or expired.
        """
        if order_id in self._auction_snapshots:
            return self._cancel_auction_order(order_id)
        if order_id in self._finished_auction_orders:
            transition(order_id, self._finished_auction_orders[order_id][2], OrderEventType.CANCEL)
        book = self._book_of(order_id)
        events = book.cancel(order_id)
        self._apply(book, events, "cancel")
        return events

    @_serialised
    def modify(
        self, order_id: str, *, price: int | None = None, quantity: int | None = None
    ) -> list[BookEvent]:
        """Reprice or resize an open continuous order, topping up or trimming its escrow.

        ``quantity`` is the new open quantity; see :meth:`market.venue.book.OrderBook.modify`
        for time priority.

        Raises
        ------
        UnknownOrder, InvalidTransition, InvalidOrder, StandingLimitViolation
            For a bad modification; nothing changes.
        InsufficientEscrow
            If the owner cannot fund the larger escrow; nothing changes.
        """
        if order_id in self._finished_auction_orders:
            transition(order_id, self._finished_auction_orders[order_id][2], OrderEventType.MODIFY)
        if order_id in self._auction_snapshots:
            raise InvalidOrder(
                f"order {order_id!r} waits for an auction: cancel it and submit a new one",
                field="order_id",
                value=order_id,
            )
        book = self._book_of(order_id)
        current = book.order(order_id)
        transition(order_id, current.state, OrderEventType.MODIFY)
        config = book.config
        new_price = current.price if price is None else config.check_price(price)
        new_remaining = current.remaining if quantity is None else check_quantity(quantity)
        self._check_limits(current.owner, current.side, new_price)
        held = self._held[order_id]
        needed = required_escrow(current.side, new_price, new_remaining, config.fee_bps)
        left = held.left
        locks = []
        if needed > left:
            # the top-up commits with the modification and whatever it trades
            self._seq += 1
            locks.append(
                lock_request(
                    {(held.owner, held.side): needed - left},
                    actor=self._actor,
                    key=f"lock:{order_id}:{self._seq}",
                    metadata={"orders": 1, "first_order_id": order_id, "last_order_id": order_id},
                )
            )
        events = book.modify(order_id, price=price, quantity=quantity)
        held.left = max(left, needed)
        try:
            before = {order_id: (current, left)}
            self._apply(book, events, "modify", trim=order_id, locks=locks, before=before)
        except InsufficientBalance as exc:
            asset = escrow_asset(held.side, held.tier)
            raise InsufficientEscrow(held.owner, asset, exc.balance, needed - left) from exc
        return events

    @_serialised
    def expire(self) -> list[BookEvent]:
        """Expire every good-till-time order whose time has come and return their escrow."""
        out: list[BookEvent] = []
        for book in self._books.values():
            events = book.expire()
            if events:
                self._apply(book, events, "expire")
                out += events
        return out

    # ----------------------------------------------------------------- auction

    @_serialised
    def submit_to_auction(
        self, requests: Sequence[OrderRequest], *, writes: AcceptedWrites | None = None
    ) -> list[Order | MarketError]:
        """Lock escrow for orders that wait for their tier's next call auction.

        An auction order lives for one auction: :meth:`run_auction` fills what it can
        and returns the escrow of the rest. Time in force is ignored. An order whose
        owner already waits on the opposite side is rejected with
        :class:`~market.errors.SelfTradeRejected`. ``writes`` adds the caller's rows to
        the transaction that commits the accepted orders, as in :meth:`place_many`.

        Returns, per request, the waiting order or the specific error that rejected it.

        Raises
        ------
        MarketError
            If ``writes`` is given to a venue without an engine; nothing changes.
        """
        self._check_writes(writes)
        now = self._clock()
        results: list[Order | MarketError | None] = [None] * len(requests)
        accepted = self._lock_many(requests, now, results, auction=True, writes=writes)
        for i, order_id in accepted:
            r = requests[i]
            tier = self._instances[r.instance_id]
            self._pending[tier][order_id] = AuctionOrder(
                order_id, r.instance_id, r.side, r.price, r.quantity
            )
            self._wait(tier, r.instance_id, r.side)
            snapshot = Order(
                order_id=order_id,
                tier=tier,
                owner=r.instance_id,
                side=r.side,
                price=r.price,
                quantity=r.quantity,
                filled=0,
                time_in_force=TimeInForce.GTC,
                expires_at=None,
                created_at=now,
                state=OrderState.OPEN,
            )
            self._auction_snapshots[order_id] = snapshot
            results[i] = snapshot
        return [r for r in results if r is not None]

    @_serialised
    def run_auction(self, tier: str, *, auction_id: str | None = None) -> AuctionResult:
        """Clear ``tier``'s waiting orders in one call auction and settle it in one entry.

        The uniform clearing price breaks ties towards the previous auction's price.
        Every waiting order is finished afterwards: filled, or cancelled for what the
        auction left (its escrow goes back in the same entry).
        """
        with gc_paused():
            return self._run_auction(tier, auction_id)

    def _run_auction(self, tier: str, auction_id: str | None) -> AuctionResult:
        book = self.book(tier)
        now = self._clock()
        self._auction_seq += 1
        auction_id = auction_id or f"{self._prefix}-{tier}-a{self._auction_seq}"
        pending = self._pending[book.tier]
        result = self._auctions[tier].clear(
            auction_id,
            list(pending.values()),
            at=now,
            previous_price=self._last_price.get(tier),
        )
        ids = list(pending)
        held = self._held
        funds_clearing, credits_clearing = self._clearing[tier]
        request = auction_request(
            result,
            list(map(_LEFT, map(held.__getitem__, ids))),
            funds_clearing=funds_clearing,
            credits_clearing=credits_clearing,
            actor=self._actor,
        )
        filled = result.order_fills()
        # open -> fill -> filled, or open [-> partial_fill] -> cancel -> cancelled
        done = filled == result.allocation.order_quantity
        states = list(map(_AUCTION_OUTCOMES.__getitem__, done.tolist()))
        fills = filled.tolist()
        # whole groups of rows change alike: filled completely, or cancelled untouched;
        # the few partly filled orders (one per side at most) are updated one by one
        id_array = np.array(ids, dtype=object)
        whole = id_array[done].tolist()
        untouched = id_array[filled == 0].tolist()
        partial = [
            (fills[k], _AUCTION_OUTCOME_VALUES[False], ids[k])
            for k in np.flatnonzero((filled > 0) & ~done).tolist()
        ]
        self._commit(
            [] if request is None else [request],
            list(result.trades),
            [],
            result=result,
            order_updates=partial,
            finished_orders=(whole, untouched),
            operation="auction_run",
        )
        # settled: every waiting order is finished
        snapshots = list(map(self._auction_snapshots.pop, ids))
        outcomes = zip(snapshots, fills, states, strict=True)
        self._finished_auction_orders.update(zip(ids, outcomes, strict=True))
        for order_id in ids:
            del held[order_id]
        pending.clear()
        self._waiting[book.tier].clear()
        if result.clearing_price is not None:
            self._last_price[tier] = result.clearing_price
        self.market_data.record_auction(result)
        return result

    # --------------------------------------------------------------- internals

    def _tier_of(self, instance_id: str) -> str:
        try:
            return self._instances[instance_id]
        except KeyError:
            raise UnknownInstance(instance_id) from None

    def _book_of(self, order_id: str) -> OrderBook:
        held = self._held.get(order_id)
        if held is not None:
            return self._books[held.tier]
        for book in self._books.values():
            if order_id in book:
                return book
        raise UnknownOrder(order_id)

    def _check_limits(self, instance_id: str, side: Side, price: int) -> None:
        max_bid, min_ask = self._limits.get(instance_id, (None, None))
        if side is Side.BUY and max_bid is not None and price > max_bid:
            raise StandingLimitViolation(instance_id, side.value, price, max_bid)
        if side is Side.SELL and min_ask is not None and price < min_ask:
            raise StandingLimitViolation(instance_id, side.value, price, min_ask)

    def _validate(self, r: OrderRequest, now: datetime, auction: bool) -> int:
        """Check one request without side effects; return the escrow it needs."""
        tier = self._tier_of(r.instance_id)
        config = self._configs[tier]
        check_quantity(r.quantity)
        config.check_price(r.price)
        if not isinstance(r.side, Side):
            raise InvalidOrder(f"side must be a Side, got {r.side!r}", field="side", value=r.side)
        if not auction:
            check_expiry(r.time_in_force, r.expires_at, now)
        self._check_limits(r.instance_id, r.side, r.price)
        return required_escrow(r.side, r.price, r.quantity, config.fee_bps)

    def _wait(self, tier: str, owner: str, side: Side) -> None:
        waiting = self._waiting[tier].setdefault(owner, [side, 0])
        waiting[1] += 1

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}-{self._seq}"

    def _fund(
        self, requests: Sequence[OrderRequest], now: datetime, results: list[Any], *, auction: bool
    ) -> list[tuple[int, str, int]]:
        """Validate each request and check its owner can pay, without side effects.

        Returns ``(position, order id, escrow)`` of the requests that pass; the others'
        errors go to ``results``.
        """
        valid: list[tuple[int, str, int]] = []
        batch_sides: dict[tuple[str, str], tuple[Side, str]] = {}
        for i, r in enumerate(requests):
            try:
                amount = self._validate(r, now, auction)
            except MarketError as exc:
                results[i] = exc
                continue
            order_id = self._next_id()
            if auction:
                tier = self._instances[r.instance_id]
                waiting = self._waiting[tier].get(r.instance_id)
                if waiting is not None and waiting[0] is not r.side:
                    other_id = next(
                        o.order_id for o in self._pending[tier].values() if o.owner == r.instance_id
                    )
                    results[i] = SelfTradeRejected(r.instance_id, other_id)
                    continue
                other = batch_sides.get((tier, r.instance_id))
                if other is not None and other[0] is not r.side:
                    results[i] = SelfTradeRejected(r.instance_id, other[1])
                    continue
                batch_sides.setdefault((tier, r.instance_id), (r.side, order_id))
            valid.append((i, order_id, amount))
        # check the owners can pay before opening any escrow account, so that a
        # rejected order leaves no trace
        owners = {owner_account(requests[i].side, requests[i].instance_id) for i, _, _ in valid}
        if len(owners) <= 8:
            available = {account: self.ledger.balance(account) for account in owners}
        else:
            # one read of every instance balance beats a round trip per owner
            available = self.ledger.balances("instance:")
        funded: list[tuple[int, str, int]] = []
        for i, order_id, amount in valid:
            r = requests[i]
            account = owner_account(r.side, r.instance_id)
            if available[account] < amount:
                results[i] = InsufficientEscrow(
                    r.instance_id,
                    escrow_asset(r.side, self._instances[r.instance_id]),
                    available[account],
                    amount,
                )
                continue
            available[account] -= amount
            funded.append((i, order_id, amount))
        return funded

    def _lock_many(
        self,
        requests: Sequence[OrderRequest],
        now: datetime,
        results: list[Any],
        *,
        auction: bool,
        writes: AcceptedWrites | None = None,
    ) -> list[tuple[int, str]]:
        """Validate and lock escrow for each request; return ``(position, order_id)`` locked."""
        valid = self._fund(requests, now, results, auction=auction)
        if not valid:
            return []
        # one entry locks the whole batch, one leg per owner and asset
        locks = self._lock_entries(
            [(requests[i], order_id, amount) for i, order_id, amount in valid]
        )
        # each order's row (with its share of the escrow) commits with its lock; a venue
        # without an engine keeps no rows
        rows = (
            []
            if self._engine is None
            else [
                order_row(self._new_order(order_id, requests[i], now, auction), auction, amount)
                for i, order_id, amount in valid
            ]
        )
        operation = "auction_submit" if auction else "place"
        try:
            self._post(
                locks,
                self._order_writes(rows, writes, [(i, o) for i, o, _ in valid]),
                operation,
            )
            locked = valid
        except InsufficientBalance:
            # one of them cannot pay: lock one by one so the rest still trade
            locked = []
            for k, (i, order_id, amount) in enumerate(valid):
                lock = self._lock_entries([(requests[i], order_id, amount)])
                row = rows[k : k + 1]
                try:
                    self._post(lock, self._order_writes(row, writes, [(i, order_id)]), operation)
                    locked.append((i, order_id, amount))
                except InsufficientBalance as exc:
                    results[i] = self._insufficient(requests[i], exc, amount)
        for i, order_id, amount in locked:
            r = requests[i]
            self._held[order_id] = _Held(
                r.instance_id, r.side, self._instances[r.instance_id], amount
            )
        return [(i, order_id) for i, order_id, _ in locked]

    def _lock_entries(self, locks: Sequence[tuple[OrderRequest, str, int]]) -> list[EntryRequest]:
        """Return the entry locking ``(request, order id, amount)``s, or none if nothing moves."""
        amounts: dict[tuple[str, Side], int] = defaultdict(int)
        for r, _, amount in locks:
            amounts[r.instance_id, r.side] += amount
        if not any(amounts.values()):
            return []
        first, last = locks[0][1], locks[-1][1]
        return [
            lock_request(
                amounts,
                actor=self._actor,
                key=f"lock:{first}",
                metadata={"orders": len(locks), "first_order_id": first, "last_order_id": last},
            )
        ]

    def _new_order(self, order_id: str, r: OrderRequest, now: datetime, auction: bool) -> Order:
        # an auction order lives for one auction: its time in force does not apply
        return Order(
            order_id=order_id,
            tier=self._instances[r.instance_id],
            owner=r.instance_id,
            side=r.side,
            price=r.price,
            quantity=r.quantity,
            filled=0,
            time_in_force=TimeInForce.GTC if auction else r.time_in_force,
            expires_at=None if auction else r.expires_at,
            created_at=now,
            state=OrderState.OPEN,
        )

    def _id_list(self, order_ids: list[str]) -> Any:
        # PostgreSQL takes an array; SQLite a JSON array read back by json_each
        return order_ids if self._postgres else json.dumps(order_ids)

    def _check_writes(self, writes: AcceptedWrites | None) -> None:
        if writes is not None and self._engine is None:
            raise MarketError("extra writes need a venue with an engine: it keeps no SQL rows")
        if writes is not None and not callable(writes):
            raise MarketError(f"writes must be callable, got {writes!r}")

    def _order_writes(
        self,
        rows: list[tuple[Any, ...]],
        writes: AcceptedWrites | None = None,
        accepted: list[tuple[int, str]] | None = None,
    ) -> Callable[[Connection], None] | None:
        if self._engine is None or not rows:
            return None
        sql = self._upsert_orders
        extra = None if writes is None else writes(list(accepted or ()))

        def write(conn: Connection) -> None:
            conn.exec_driver_sql(sql, rows)
            if extra is not None:
                extra(conn)

        return write

    def _post(
        self,
        requests: list[EntryRequest],
        writes: Callable[[Connection], None] | None,
        operation: str,
    ) -> None:
        """Post ``requests`` with the venue's rows in one transaction; translate SQL errors.

        The transaction passes the crash points ``venue.<operation>.before_commit`` and
        ``venue.<operation>.after_commit``.
        """
        if writes is None:
            if requests:
                self.ledger.post_batch(requests)
            return
        before, after = f"venue.{operation}.before_commit", f"venue.{operation}.after_commit"

        def write(conn: Connection) -> None:
            writes(conn)
            crash_point(before)

        try:
            if requests:
                self.ledger.post_batch(requests, writes=write)
            else:
                with self._engine.begin() as conn:  # type: ignore[union-attr]
                    write(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise MarketError(f"the venue's store refused the settlement: {exc}") from exc
        crash_point(after)

    def _settle(
        self,
        book: OrderBook,
        events: Iterable[BookEvent],
        ledger_requests: list[EntryRequest],
        trades: list[Trade],
        touched: set[str],
        finished: list[tuple[str, _Held]],
    ) -> list[BookEvent]:
        """Turn a book's events into ledger requests; return the events.

        The escrow records of orders that finish go to ``finished``, to be put back
        if the store refuses the settlement.
        """
        releases: dict[tuple[str, Side], int] = defaultdict(int)
        out = list(events)
        for event in out:
            if isinstance(event, Trade):
                self._held[event.buy_order_id].left -= event.value + event.fee
                self._held[event.sell_order_id].left -= event.quantity
                ledger_requests.append(trade_request(event, (), actor=self._actor))
                trades.append(event)
                touched.add(event.buy_order_id)
                touched.add(event.sell_order_id)
            else:
                touched.add(event.order_id)
                if event.state in TERMINAL_STATES:
                    held = self._held.pop(event.order_id)
                    finished.append((event.order_id, held))
                    if held.left < 0:
                        raise AssertionError(f"order {event.order_id} overdrew its escrow")
                    releases[held.owner, held.side] += held.left
        legs = release_transfers(releases)
        if legs:
            self._seq += 1
            ledger_requests.append(
                EntryRequest(
                    tuple(legs),
                    reason=RELEASE_REASON,
                    actor=self._actor,
                    idempotency_key=f"release:{self._prefix}:{self._seq}",
                )
            )
        return out

    def _apply(
        self,
        book: OrderBook,
        events: list[BookEvent],
        operation: str,
        trim: str | None = None,
        locks: Sequence[EntryRequest] = (),
        before: dict[str, tuple[Order, int]] | None = None,
    ) -> None:
        """Settle a book's events (after ``locks``) in one transaction; rewind if refused."""
        ledger_requests: list[EntryRequest] = list(locks)
        trades: list[Trade] = []
        touched: set[str] = set(before or ())
        finished: list[tuple[str, _Held]] = []
        try:
            self._settle_and_commit(
                book, events, operation, trim, ledger_requests, trades, touched, finished
            )
        except BaseException:
            self._rewind(trades, touched, finished, before=before)
            raise

    def _settle_and_commit(
        self,
        book: OrderBook,
        events: list[BookEvent],
        operation: str,
        trim: str | None,
        ledger_requests: list[EntryRequest],
        trades: list[Trade],
        touched: set[str],
        finished: list[tuple[str, _Held]],
    ) -> None:
        self._settle(book, events, ledger_requests, trades, touched, finished)
        held = self._held.get(trim) if trim is not None else None
        if trim is not None and held is not None:
            touched.add(trim)
            current = book.order(trim)
            needed = required_escrow(
                current.side, current.price, current.remaining, book.config.fee_bps
            )
            if held.left > needed:
                self._seq += 1
                ledger_requests.append(
                    EntryRequest(
                        tuple(release_transfers({(held.owner, held.side): held.left - needed})),
                        reason=RELEASE_REASON,
                        actor=self._actor,
                        idempotency_key=f"release:{self._prefix}:{self._seq}",
                    )
                )
                held.left = needed
        self._commit(ledger_requests, trades, [book.order(o) for o in touched], operation=operation)

    def _cancel_auction_order(self, order_id: str) -> list[BookEvent]:
        snapshot = self._auction_snapshots[order_id]
        state = transition(order_id, snapshot.state, OrderEventType.CANCEL)
        now = self._clock()
        held = self._held.pop(order_id)
        self._seq += 1
        legs = release_transfers({(held.owner, held.side): held.left})
        requests = [
            EntryRequest(
                tuple(legs),
                reason=RELEASE_REASON,
                actor=self._actor,
                idempotency_key=f"release:{self._prefix}:{self._seq}",
            )
        ]
        cancelled = Order(
            order_id=order_id,
            tier=snapshot.tier,
            owner=snapshot.owner,
            side=snapshot.side,
            price=snapshot.price,
            quantity=snapshot.quantity,
            filled=0,
            time_in_force=snapshot.time_in_force,
            expires_at=None,
            created_at=snapshot.created_at,
            state=state,
        )
        try:
            self._commit(
                requests if legs else [], [], [cancelled], auction=True, operation="auction_cancel"
            )
        except BaseException:
            self._held[order_id] = held
            raise
        self._finished_auction_orders[order_id] = (snapshot, 0, state)
        del self._pending[snapshot.tier][order_id]
        waiting = self._waiting[snapshot.tier][snapshot.owner]
        waiting[1] -= 1
        if waiting[1] == 0:
            del self._waiting[snapshot.tier][snapshot.owner]
        del self._auction_snapshots[order_id]
        return [
            OrderEvent(
                order_id,
                snapshot.tier,
                OrderEventType.CANCEL,
                state,
                snapshot.quantity,
                now,
                "cancelled by owner",
            )
        ]

    def _commit(
        self,
        ledger_requests: list[EntryRequest],
        trades: list[Trade],
        orders: Iterable[Order],
        *,
        auction: bool = False,
        result: AuctionResult | None = None,
        order_updates: Sequence[tuple[int, str, str]] = (),
        finished_orders: tuple[list[str], list[str]] = ([], []),
        operation: str,
        extra: ExtraWrites | None = None,
    ) -> None:
        orders = list(orders)
        writes = None
        if self._engine is not None and (orders or trades or order_updates or result is not None):
            writes = self._writes(
                orders, trades, auction, result, order_updates, finished_orders, extra
            )
        self._post(ledger_requests, writes, operation)
        self._trade_log += trades
        if trades and result is None:
            # an auction's trades reach the market data with its result
            self.market_data.record_trades(trades)

    def _writes(
        self,
        orders: list[Order],
        trades: list[Trade],
        auction: bool,
        result: AuctionResult | None,
        order_updates: Sequence[tuple[int, str, str]],
        finished_orders: tuple[list[str], list[str]],
        extra: ExtraWrites | None,
    ) -> Callable[[Connection], None]:
        """Return the writes of the venue's rows, to run in the ledger's transaction."""
        held = self._held
        order_rows = [
            order_row(o, auction, held[o.order_id].left if o.order_id in held else 0)
            for o in orders
        ]
        # the first ten fields of a Trade are the table's first ten columns
        assert self._engine is not None
        at = None if result is None else result.at
        write_trades = trade_log_writes(self._engine, trades, auction_at=at) if trades else None
        auction_rows = (
            []
            if result is None
            else [
                (
                    result.auction_id,
                    result.tier,
                    result.mode.value,
                    to_micros(result.at),
                    result.clearing_price,
                    result.buy_price,
                    result.sell_price,
                    result.volume,
                    result.demand,
                    result.supply,
                    result.unmatched_bid_quantity,
                    result.unmatched_ask_quantity,
                )
            ]
        )
        updates = list(order_updates)

        def write(conn: Connection) -> None:
            # plain driver executemany: bulk rows skip SQLAlchemy's per-row compilation
            if order_rows:
                conn.exec_driver_sql(self._upsert_orders, order_rows)
            if write_trades is not None:
                write_trades(conn)
            if updates:
                conn.exec_driver_sql(self._update_orders, updates)
            # auction orders filled completely, and those the auction did not touch
            for sql, order_ids in zip(self._finish_orders, finished_orders, strict=True):
                if order_ids:
                    conn.exec_driver_sql(sql, (self._id_list(order_ids),))
            if auction_rows:
                conn.exec_driver_sql(self._insert_auction, auction_rows)
            if extra is not None:
                extra(conn)

        return write
