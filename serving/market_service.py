"""The market as the service runs it: one ledger, CEM and venue over the creditx store.

The venue keeps its books in memory, so every operation that changes it runs under
one lock. Order placements that arrive together are placed as one batch
(:meth:`Venue.place_many`), sharing the store's transactions; each batch also
records the idempotent responses of its orders in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from market.book import BookConfig
from market.clock import to_micros
from market.errors import MarketError
from market.exchange import CreditExchange
from market.ledger import Ledger, SqlStore, instance_credits, instance_funds
from market.migrations import upgrade
from market.orders import Order
from market.registry import Registry
from market.tiers import TierManager, load_config
from market.venue import OrderRequest, Placement, Venue, t_auctions, t_orders, t_trades
from serving.errors import IdempotencyMismatch
from serving.tables import api_idempotency

_MAX_BATCH = 256


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
        # open orders and their escrow survive a restart of the service
        self.restored_orders = self.venue.restore()
        self.lock = threading.RLock()

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
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t_orders).where(t_orders.c.order_id == order_id)).first()

    def order_rows(self, owner: str, *, state: str | None, limit: int, offset: int) -> list[Any]:
        """Return an owner's stored orders, newest first."""
        query = sa.select(t_orders).where(t_orders.c.owner == owner)
        if state is not None:
            query = query.where(t_orders.c.state == state)
        query = query.order_by(t_orders.c.created_at_us.desc(), t_orders.c.order_id.desc())
        with self.engine.connect() as conn:
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
        with self.engine.connect() as conn:
            return list(conn.execute(query.limit(limit).offset(offset)))

    def auction_rows(self, tier: str, *, limit: int, offset: int) -> list[Any]:
        """Return a tier's stored auction results, newest first."""
        query = (
            sa.select(t_auctions)
            .where(t_auctions.c.tier == tier)
            .order_by(t_auctions.c.at_us.desc(), t_auctions.c.auction_id.desc())
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query.limit(limit).offset(offset)))

    # idempotency

    def stored_responses(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, int, str]]:
        """Return ``(fingerprint, status, body)`` stored for ``(scope, key)`` pairs."""
        found: dict[tuple[str, str], tuple[str, int, str]] = {}
        scopes = {scope for scope, _ in keys}
        names = {key for _, key in keys}
        with self.engine.connect() as conn:
            for start in range(0, len(names), 400):
                chunk = sorted(names)[start : start + 400]
                rows = conn.execute(
                    sa.select(api_idempotency).where(
                        api_idempotency.c.scope.in_(scopes),
                        api_idempotency.c.idempotency_key.in_(chunk),
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
        tickets: Sequence[tuple[OrderRequest, bool, str, str, str]],
        render: Callable[[Placement | Order], str],
    ) -> list[StoredResponse | MarketError | IdempotencyMismatch]:
        """Place ``(request, auction, scope, key, fingerprint)`` orders in arrival order.

        A key already stored replays its first response (or, with another fingerprint,
        is refused with :class:`IdempotencyMismatch`). Accepted orders have their
        response stored under their key in one transaction; rejected ones return the
        specific error and store nothing.
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
                    results[i] = StoredResponse(first[1], first[2], replayed=True)
            continuous = [i for i in fresh if not tickets[i][1]]
            auction = [i for i in fresh if tickets[i][1]]
            if continuous:
                placed = self.venue.place_many([tickets[i][0] for i in continuous])
                for i, outcome in zip(continuous, placed, strict=True):
                    results[i] = (
                        outcome
                        if isinstance(outcome, MarketError)
                        else StoredResponse(201, render(outcome), replayed=False)
                    )
            if auction:
                waiting = self.venue.submit_to_auction([tickets[i][0] for i in auction])
                for i, waiting_order in zip(auction, waiting, strict=True):
                    results[i] = (
                        waiting_order
                        if isinstance(waiting_order, MarketError)
                        else StoredResponse(201, render(waiting_order), replayed=False)
                    )
            now = to_micros(self.clock())
            rows = [
                {
                    "scope": t[2],
                    "idempotency_key": t[3],
                    "fingerprint": t[4],
                    "status_code": r.status_code,
                    "body": r.body,
                    "created_at_us": now,
                }
                for t, r in zip(tickets, results, strict=True)
                if isinstance(r, StoredResponse) and not r.replayed
            ]
            if rows:
                with self.engine.begin() as conn:
                    conn.execute(api_idempotency.insert(), rows)
        return [r for r in results if r is not None]

    def close(self) -> None:
        """Release the store."""
        self.engine.dispose()


class OrderDesk:
    """Place the orders of concurrent requests in batches, each key at most once.

    Parameters
    ----------
    market
        The market the orders go to.
    render
        Turns a placement or a waiting auction order into the JSON of the response.
    """

    def __init__(self, market: MarketService, render: Callable[[Placement | Order], str]) -> None:
        self._market = market
        self._render = render
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
        """Stop the worker once the orders already queued are placed."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

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
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < _MAX_BATCH:
                batch.append(self._queue.get_nowait())
            tickets = [(t.request, t.auction, t.scope, t.key, t.fingerprint) for t in batch]
            try:
                outcomes = await asyncio.to_thread(self._market.place_batch, tickets, self._render)
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
