"""The market as the service runs it: one ledger, CEM and venue over the creditx store.

The venue keeps its books in memory, so every operation that changes it runs under
one lock. Order placements that arrive together are placed as one batch
(:meth:`Venue.place_many`), sharing the store's transactions.

An order's idempotency record commits in the transaction that commits the order
(its escrow lock and row): ``(scope, key, fingerprint)`` with the order id in place of
the response, which is only known once the order has matched. The response body
follows in the next transaction the service makes anyway (the next batch's), or on its
own once the desk is idle. A replay of a key whose body is not stored (the process
died in between) answers from the order's current state, so no key ever places twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from market.agents.decision import OwnerPolicy
from market.cem.exchange import CreditExchange
from market.cem.registry import Registry
from market.cem.tiers import TierManager, load_config
from market.clock import to_micros
from market.decisions import SqlDecisionLog
from market.errors import MarketError
from market.ledger import (
    ExtraWrites,
    Ledger,
    SqlStore,
    instance_credits,
    instance_funds,
    read_connection,
)
from market.round import MarketRound
from market.rounds import MarketRounds
from market.venue.book import BookConfig
from market.venue.handling import (
    AcceptedWrites,
    OrderRequest,
    Placement,
    Venue,
    t_auctions,
    t_orders,
    t_trades,
)
from market.venue.orders import Order
from serving.errors import IdempotencyMismatch
from serving.migrations import upgrade
from serving.tables import api_idempotency

logger = logging.getLogger(__name__)

_MAX_BATCH = 256
# the status of an idempotency record that holds the order id, not yet the response
_UNRENDERED = 0
# how long the desk waits for another batch to carry stored responses before it
# writes them on their own
_SAVE_AFTER_SECONDS = 0.05


def request_fingerprint(document: Any) -> str:
    """Return the SHA-256 of a request's canonical JSON, to recognise a replay."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response kept for an idempotency key."""

    status_code: int
    body: str
    replayed: bool


PlacementTicket = tuple[OrderRequest, bool, str, str, str]
"""``(request, auction, scope, key, fingerprint)`` of one order placement."""

RenderStored = Callable[[Any, Sequence[Any]], str]
"""Renders a stored order row and its stored trade rows as a placement's response."""


@dataclass(slots=True)
class _Ticket:
    request: OrderRequest
    auction: bool
    scope: str
    key: str
    fingerprint: str
    future: asyncio.Future[StoredResponse | MarketError | IdempotencyMismatch] = field(repr=False)


class MarketService:
    """The ledger, the CEM and the venue of one creditx store, for the service.

    Parameters
    ----------
    engine
        The creditx store (SQLite or PostgreSQL); migrated to the newest schema here.
    clock
        The one clock of the market.
    tiers_config
        The tier configuration to store when the store holds no tiers yet.
    """

    def __init__(
        self, engine: Engine, clock: Callable[[], datetime], tiers_config: Path | None = None
    ) -> None:
        upgrade(engine)
        self.engine = engine
        self.clock = clock
        self.registry = Registry(engine)
        tiers = self.registry.load()
        if not tiers.tiers():
            self.registry.save(load_config(tiers_config))
            tiers = self.registry.load()
        self.tiers: TierManager = tiers
        self.ledger = Ledger(SqlStore(engine), clock)
        tiers.open_accounts(self.ledger)
        self.exchange = CreditExchange(self.ledger, tiers, clock, audit=self.registry)
        self.venue = Venue(
            self.ledger,
            clock,
            [BookConfig(tier=t.name, fee_bps=tiers.exchange.fee_bps) for t in tiers.tiers()],
            engine=engine,
        )
        for instance in tiers.instances():
            self.venue.register_instance(instance.id, instance.tier)
        # the hourly rounds' steps: the pools' sellers trade in the tiers' call auctions
        self.round = MarketRound(self.ledger, self.venue, tiers, OwnerPolicy(), reference=0)
        self.round.register_pool_sellers()
        # open orders and their escrow survive a restart of the service
        self.restored_orders = self.venue.restore()
        self.rounds = MarketRounds(engine, self.round, self.exchange, SqlDecisionLog(engine), clock)
        self.lock = threading.RLock()
        # responses whose records commit holding the order id only, until a later
        # transaction stores them: (scope, key) -> (status, body)
        self._unsaved: dict[tuple[str, str], tuple[int, str]] = {}

    # balances and records

    def balances(self, instance_id: str) -> tuple[int, int]:
        """Return an instance's credits (milli-credits) and funds (minor units)."""
        self.tiers.instance(instance_id)
        return (
            self.ledger.balance(instance_credits(instance_id)),
            self.ledger.balance(instance_funds(instance_id)),
        )

    def order_row(self, order_id: str) -> Any | None:
        """Return an order's stored row, or ``None``."""
        with read_connection(self.engine) as conn:
            return conn.execute(sa.select(t_orders).where(t_orders.c.order_id == order_id)).first()

    def order_rows(self, owner: str, *, state: str | None, limit: int, offset: int) -> list[Any]:
        """Return an owner's stored orders, newest first."""
        query = sa.select(t_orders).where(t_orders.c.owner == owner)
        if state is not None:
            query = query.where(t_orders.c.state == state)
        query = query.order_by(t_orders.c.created_at_us.desc(), t_orders.c.order_id.desc())
        with read_connection(self.engine) as conn:
            return list(conn.execute(query.limit(limit).offset(offset)))

    def trade_rows(
        self, *, tier: str | None = None, instance: str | None = None, limit: int, offset: int
    ) -> list[Any]:
        """Return stored trades of a tier and/or an instance, newest first."""
        query = sa.select(t_trades)
        if tier is not None:
            query = query.where(t_trades.c.tier == tier)
        if instance is not None:
            query = query.where(sa.or_(t_trades.c.buyer == instance, t_trades.c.seller == instance))
        query = query.order_by(t_trades.c.at_us.desc(), t_trades.c.trade_id.desc())
        with read_connection(self.engine) as conn:
            return list(conn.execute(query.limit(limit).offset(offset)))

    def auction_rows(self, tier: str, *, limit: int, offset: int) -> list[Any]:
        """Return a tier's stored auction results, newest first."""
        query = (
            sa.select(t_auctions)
            .where(t_auctions.c.tier == tier)
            .order_by(t_auctions.c.at_us.desc(), t_auctions.c.auction_id.desc())
        )
        with read_connection(self.engine) as conn:
            return list(conn.execute(query.limit(limit).offset(offset)))

    # idempotency

    def stored_responses(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, int, str]]:
        """Return ``(fingerprint, status, body)`` stored for ``(scope, key)`` pairs.

        A status of 0 marks a record whose body is the order id (the response is not
        stored yet).
        """
        found: dict[tuple[str, str], tuple[str, int, str]] = {}
        scopes = {scope for scope, _ in keys}
        names = sorted({key for _, key in keys})
        with read_connection(self.engine) as conn:
            for start in range(0, len(names), 400):
                rows = conn.execute(
                    sa.select(api_idempotency).where(
                        api_idempotency.c.scope.in_(scopes),
                        api_idempotency.c.idempotency_key.in_(names[start : start + 400]),
                    )
                )
                for row in rows:
                    found[(row.scope, row.idempotency_key)] = (
                        row.fingerprint,
                        row.status_code,
                        row.body,
                    )
        return found

    def place_batch(
        self,
        tickets: Sequence[PlacementTicket],
        render: Callable[[Placement | Order], str],
        render_stored: RenderStored,
    ) -> list[StoredResponse | MarketError | IdempotencyMismatch]:
        """Place ``(request, auction, scope, key, fingerprint)`` orders in arrival order.

        A key already stored replays its first response (or, with another fingerprint,
        is refused with :class:`IdempotencyMismatch`); a key whose order committed
        without its response replays the order's current state (``render_stored``).
        An accepted order's key commits with the order; its response is kept until
        :meth:`save_responses` or the next batch stores it. Rejected orders return
        the specific error and store nothing.
        """
        results: list[StoredResponse | MarketError | IdempotencyMismatch | None]
        results = [None] * len(tickets)
        with self.lock:
            stored = self.stored_responses([(t[2], t[3]) for t in tickets])
            fresh: list[int] = []
            for i, t in enumerate(tickets):
                first = stored.get((t[2], t[3]))
                if first is None:
                    fresh.append(i)
                elif first[0] != t[4]:
                    results[i] = IdempotencyMismatch(t[3])
                else:
                    results[i] = self._replay((t[2], t[3]), first, render_stored)
            # continuous orders first, as they arrived; then those for the auctions
            for auction in (False, True):
                positions = [i for i in fresh if tickets[i][1] == auction]
                if positions:
                    outcomes = self._place_recorded([tickets[i] for i in positions], auction)
                    self._keep_responses(positions, outcomes, tickets, results, render)
        return [r for r in results if r is not None]

    def save_responses(self) -> int:
        """Store the responses whose orders committed without them; return how many."""
        with self.lock:
            unsaved = dict(self._unsaved)
            if unsaved:
                with self.engine.begin() as conn:
                    self._response_writes(unsaved)(conn)
                self._forget(unsaved)
            return len(unsaved)

    @property
    def unsaved_responses(self) -> int:
        """Return how many responses wait to be stored."""
        return len(self._unsaved)

    def _replay(
        self, key: tuple[str, str], first: tuple[str, int, str], render_stored: RenderStored
    ) -> StoredResponse | MarketError:
        status, body = first[1], first[2]
        if status != _UNRENDERED:
            return StoredResponse(status, body, replayed=True)
        kept = self._unsaved.get(key)
        if kept is not None:
            return StoredResponse(kept[0], kept[1], replayed=True)
        # the order committed but the process stopped before its response was stored
        row = self.order_row(body)
        if row is None:
            return MarketError(f"idempotency key {key[1]!r} names order {body!r}, not stored")
        query = (
            sa.select(t_trades)
            .where(sa.or_(t_trades.c.buy_order_id == body, t_trades.c.sell_order_id == body))
            .order_by(t_trades.c.at_us, t_trades.c.trade_id)
        )
        with read_connection(self.engine) as conn:
            trades = list(conn.execute(query))
        return StoredResponse(201, render_stored(row, trades), replayed=True)

    def _record_keys(self, tickets: Sequence[PlacementTicket]) -> AcceptedWrites:
        # the keys of the orders a venue transaction accepts, written in it
        now = to_micros(self.clock())

        def accepted(placed: list[tuple[int, str]]) -> ExtraWrites | None:
            rows = [
                {
                    "scope": tickets[i][2],
                    "idempotency_key": tickets[i][3],
                    "fingerprint": tickets[i][4],
                    "status_code": _UNRENDERED,
                    "body": order_id,
                    "created_at_us": now,
                }
                for i, order_id in placed
            ]

            def write(conn: sa.Connection) -> None:
                conn.execute(api_idempotency.insert(), rows)

            return write

        return accepted

    def _place_recorded(
        self, tickets: Sequence[PlacementTicket], auction: bool
    ) -> Sequence[Placement | Order | MarketError]:
        # the accepted orders' keys, and the responses kept so far, commit with the orders
        record = self._record_keys(tickets)
        unsaved = dict(self._unsaved)
        responses = self._response_writes(unsaved) if unsaved else None

        def writes(placed: list[tuple[int, str]]) -> ExtraWrites | None:
            keys = record(placed)
            if responses is None:
                return keys

            def write(conn: sa.Connection) -> None:
                if keys is not None:
                    keys(conn)
                responses(conn)

            return write

        requests = [t[0] for t in tickets]
        outcomes: Sequence[Placement | Order | MarketError] = (
            self.venue.submit_to_auction(requests, writes=writes)
            if auction
            else self.venue.place_many(requests, writes=writes)
        )
        # the writes committed exactly when some order was accepted
        if unsaved and any(not isinstance(o, MarketError) for o in outcomes):
            self._forget(unsaved)
        return outcomes

    def _keep_responses(
        self,
        positions: list[int],
        outcomes: Sequence[Placement | Order | MarketError],
        tickets: Sequence[PlacementTicket],
        results: list[StoredResponse | MarketError | IdempotencyMismatch | None],
        render: Callable[[Placement | Order], str],
    ) -> None:
        for i, outcome in zip(positions, outcomes, strict=True):
            if isinstance(outcome, MarketError):
                results[i] = outcome
                continue
            response = StoredResponse(201, render(outcome), replayed=False)
            self._unsaved[(tickets[i][2], tickets[i][3])] = (201, response.body)
            results[i] = response

    @staticmethod
    def _response_writes(unsaved: dict[tuple[str, str], tuple[int, str]]) -> ExtraWrites:
        statement = (
            api_idempotency.update()
            .where(
                api_idempotency.c.scope == sa.bindparam("b_scope"),
                api_idempotency.c.idempotency_key == sa.bindparam("b_key"),
            )
            .values(status_code=sa.bindparam("b_status"), body=sa.bindparam("b_body"))
        )
        rows = [
            {"b_scope": scope, "b_key": key, "b_status": status, "b_body": body}
            for (scope, key), (status, body) in unsaved.items()
        ]

        def write(conn: sa.Connection) -> None:
            conn.execute(statement, rows)

        return write

    def _forget(self, saved: dict[tuple[str, str], tuple[int, str]]) -> None:
        for key, response in saved.items():
            if self._unsaved.get(key) == response:
                del self._unsaved[key]

    def close(self) -> None:
        """Store the responses still kept, then release the store."""
        try:
            self.save_responses()
        finally:
            self.engine.dispose()


class OrderDesk:
    """Place the orders of concurrent requests in batches, each key at most once.

    Parameters
    ----------
    market
        The market the orders go to.
    render
        Turns a placement or a waiting auction order into the JSON of the response.
    render_stored
        Turns a stored order row and its trade rows into the JSON of the response, for
        a replay whose first response was never stored.

    A batch's responses are sent once its orders and their keys committed; the
    responses themselves are stored with the next batch, or on their own once no
    batch follows within 50 ms.
    """

    def __init__(
        self,
        market: MarketService,
        render: Callable[[Placement | Order], str],
        render_stored: RenderStored,
    ) -> None:
        self._market = market
        self._render = render
        self._render_stored = render_stored
        self._queue: asyncio.Queue[_Ticket] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: dict[tuple[str, str], _Ticket] = {}

    def start(self) -> None:
        """Start the batching worker on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._in_flight = {}
        self._worker = self._loop.create_task(self._run())

    async def stop(self) -> None:
        """Stop the worker and store the responses it still keeps."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        try:
            await asyncio.to_thread(self._market.save_responses)
        except Exception:  # their orders and keys are stored: a replay answers from those
            logger.exception("storing idempotent responses failed on shutdown")

    async def place(
        self,
        request: OrderRequest,
        *,
        auction: bool,
        scope: str,
        key: str,
        fingerprint: str,
    ) -> StoredResponse:
        """Place one order, or replay the response its idempotency key already has.

        Raises
        ------
        IdempotencyMismatch
            If the key was used before with a different request.
        MarketError
            The specific reason the venue rejected the order; nothing changed.
        """
        waiting = self._in_flight.get((scope, key))
        if waiting is not None:
            if waiting.fingerprint != fingerprint:
                raise IdempotencyMismatch(key)
            outcome = await asyncio.shield(waiting.future)
            if isinstance(outcome, Exception):
                raise outcome
            return StoredResponse(outcome.status_code, outcome.body, replayed=True)
        if self._loop is not asyncio.get_running_loop() or self._worker is None:
            # a test client may run each request on an event loop of its own
            self.start()
        assert self._queue is not None
        ticket = _Ticket(
            request, auction, scope, key, fingerprint, asyncio.get_running_loop().create_future()
        )
        self._in_flight[(scope, key)] = ticket
        try:
            await self._queue.put(ticket)
            outcome = await asyncio.shield(ticket.future)
        finally:
            if ticket.future.done():
                self._in_flight.pop((scope, key), None)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._next_ticket()]
            while not self._queue.empty() and len(batch) < _MAX_BATCH:
                batch.append(self._queue.get_nowait())
            tickets = [(t.request, t.auction, t.scope, t.key, t.fingerprint) for t in batch]
            try:
                outcomes = await asyncio.to_thread(
                    self._market.place_batch, tickets, self._render, self._render_stored
                )
            except Exception as exc:  # the store failed: every order of the batch fails
                for t in batch:
                    if not t.future.done():
                        t.future.set_exception(exc)
                    self._in_flight.pop((t.scope, t.key), None)
                continue
            for t, outcome in zip(batch, outcomes, strict=True):
                if not t.future.done():
                    t.future.set_result(outcome)
                self._in_flight.pop((t.scope, t.key), None)

    async def _next_ticket(self) -> _Ticket:
        # kept responses ride with the next batch; with none in sight, store them alone
        assert self._queue is not None
        while self._market.unsaved_responses:
            try:
                return await asyncio.wait_for(self._queue.get(), _SAVE_AFTER_SECONDS)
            except TimeoutError:
                try:
                    await asyncio.to_thread(self._market.save_responses)
                except Exception:  # the store failed: the next batch carries them
                    logger.exception("storing idempotent responses failed")
        return await self._queue.get()
