"""The live accrual: 5-minute readings in, each (instance, interval) booked exactly once,
allowances out.

Readings arrive in batches (``POST /v1/telemetry``, files the ``telemetry`` flow picks
up) as :class:`data.readings.ReadingBatch`. :meth:`LiveAccrual.submit` refuses a batch
with any problem (:func:`data.readings.check_readings`) whole, before anything is
stored. Otherwise each reading is

* a *duplicate*: its (instance, interval) was read before: earlier in the batch, in an
  earlier batch still waiting, or booked from a reading; ignored and reported;
* *refused* as too late to book (see the window below), with the reason;
* *accepted*: new, and on time.

Then the bookings due are planned, the accepted readings that must wait for an
earlier interval are stored in ``accrual_pending`` (one transaction), and the bookings
are made, interval after interval. A reading booked at once is never stored as
pending: were the process to die before it is booked, the batch got no response, and
its retry books it then.

The booking rules
-----------------
* **Exactly once.** Booking an interval writes its ledger entry, the
  (instance, interval) keys in ``accrual_booked``, the instances' allowances and the
  removal of their pending readings in one transaction
  (:meth:`market.ledger.Ledger.post_planned`). A crash leaves all of an interval's
  booking or none of it; a key booked twice fails the transaction, so a second writer
  (another process) never books what the first did.
* **In order.** An instance's intervals are booked one after another from its first
  booked interval: an interval is booked once its reading is there and the interval
  before it is booked. An instance's books open with the first interval booked for it;
  a reading for an earlier interval is refused.
* **The late window** (``late_window``, 60 minutes by default): an interval *closes*
  once it ended ``late_window`` ago. A reading for a closed interval is refused; an
  instance whose next interval closes without a reading has it booked as **zero
  usage** (source ``missing``: it earns its baseline and uses nothing) and its waiting
  readings follow. A missing reading holds an instance's later intervals back by at
  most the window; a reading is never booked after an interval that followed it.
* **One interval, the fleet at once.** Every instance due at the same interval is
  booked in one transaction by :func:`market.cem.accrual.accrue_interval`, on balances
  read in that transaction: the instances short in it share their tier's pool under
  the hour's priced pool (:mod:`market.cem.pool_hours`: the terms of the latest market
  round at or before the interval's hour; what each drew and lent is kept for the next
  round's settlement), or by the free pool rule (pro rata by default) before any round
  set terms. The tiers' hosts bound what they serve. An instance whose reading comes
  later is booked in a later transaction of the same interval, with the pool as it is
  then (and its tier's hosts counted afresh).

Allowances
----------
Each booking also writes, per instance, what it may use next (``accrual_allowances``):
the last booked interval, its balance in milli-credits (thousandths of a vCPU-minute),
whether it is throttled to baseline (an empty balance and no pool credits it may draw),
what the last interval throttled, and ``seq``: a cursor handed out in commit order
(the one row of ``accrual_feed`` serialises the bookings that take one), so a follower
that reads ``seq > cursor`` in order never misses a change.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from data.readings import STEP_SECONDS, ReadingBatch, check_readings
from market.cem.accrual import (
    IntervalBooking,
    TierSegments,
    accrue_interval,
    cpu_micro_of,
    interval_demand,
    interval_earnings,
)
from market.cem.live_tables import FEED_ROW
from market.cem.live_tables import allowances as t_allowances
from market.cem.live_tables import booked as t_booked
from market.cem.pool_hours import HourTerms, add_pool_hours, drawn_in_hour, terms_at
from market.cem.pool_rules import PoolRule, PricedPool, draw_pro_rata, value_order
from market.cem.tiers import VALUE, TierManager
from market.clock import from_micros, to_micros
from market.crashpoints import crash_point
from market.errors import AccrualContention, InvalidParameter
from market.ledger import (
    AccountKind,
    EntryRequest,
    Ledger,
    SqlStore,
    Transfer,
    burn_account,
    conversion_account,
    escrow_account,
    instance_credits,
    instance_funds,
    mint_account,
    pool_account,
    read_connection,
    rounding_account,
)
from market.units import MILLI_PER_CREDIT

ACCRUAL = "accrual"
READING, MISSING = "reading", "missing"
STEP_US = STEP_SECONDS * 1_000_000
DEFAULT_LATE_WINDOW = timedelta(minutes=60)

# instances per ledger entry: a transfer's position is a SMALLINT
_PER_ENTRY = 16_000
_CHUNK = 400
_ATTEMPTS = 8
_UNBOUNDED = 2**62
HOUR_US = 3_600_000_000


def clearing_account(tier: str) -> str:
    """Return the account a tier's accrual entries move their totals through."""
    return escrow_account(f"accrual-{tier}")


@dataclass(frozen=True, slots=True)
class ReadingNote:
    """A reading not booked: a duplicate or a refusal, and why."""

    row: int
    instance_id: str
    interval_start: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of a batch's readings."""

    received: int
    accepted: int
    duplicates: tuple[ReadingNote, ...]
    refused: tuple[ReadingNote, ...]


@dataclass(frozen=True, slots=True)
class IntervalBooked:
    """One booking transaction: an interval of some instances; totals in milli-credits."""

    interval_start: datetime
    booking_id: str
    instances: int
    readings: int
    missing: int
    earned: int
    spent: int
    to_pool: int
    from_pool: int
    forfeited: int
    throttled: int


@dataclass(frozen=True, slots=True)
class Submission:
    """What a batch did: its receipt and the bookings that followed it."""

    receipt: Receipt
    booked: tuple[IntervalBooked, ...]


@dataclass(frozen=True, slots=True)
class Allowance:
    """What an instance may use after its last booked interval.

    ``balance`` is in milli-credits: thousandths of a vCPU-minute at 100 %.
    ``throttled`` says it runs at baseline next: its balance is empty and it has no
    pool credits to draw. ``seq`` is the feed cursor of this version.
    """

    instance_id: str
    tier: str
    interval_start: datetime
    balance: int
    throttled: bool
    last_throttled: int
    earns_per_interval: int
    pool_draw: bool
    seq: int
    updated_at: datetime

    @property
    def next_interval_start(self) -> datetime:
        """Return the start of the interval this allowance is for."""
        return self.interval_start + timedelta(seconds=STEP_SECONDS)

    @property
    def vcpu_minutes(self) -> Decimal:
        """Return the balance in vCPU-minutes (exact)."""
        return Decimal(self.balance) / MILLI_PER_CREDIT


class _Fleet:
    """The registry's instances grouped by tier, as arrays."""

    def __init__(self, tiers: TierManager) -> None:
        specs = tiers.tiers()
        self.tier_names = [t.name for t in specs]
        position = {t.name: k for k, t in enumerate(specs)}
        instances = sorted(tiers.instances(), key=lambda i: (position[i.tier], i.id))
        self.ids = [i.id for i in instances]
        self.index = {i.id: n for n, i in enumerate(instances)}
        self.accounts = [instance_credits(i) for i in self.ids]
        self.tier_of = np.array([position[i.tier] for i in instances], dtype=np.int64)
        self.vcpus = np.array([i.vcpus for i in instances], dtype=np.int64)
        baseline = np.array([t.baseline_bps for t in specs], dtype=np.int64)
        self.baseline = baseline[self.tier_of] if instances else baseline[:0]
        self.earned = interval_earnings(self.vcpus, self.baseline, STEP_SECONDS)
        self.cap = np.array(
            [specs[position[i.tier]].balance_cap(i.vcpus) for i in instances], dtype=np.int64
        )
        self.pool_draw = np.array([i.pool_draw for i in instances], dtype=bool)
        self.pools = [pool_account(t) for t in self.tier_names]
        self.mints = [mint_account(t.asset) for t in specs]
        self.burns = [burn_account(t.asset) for t in specs]
        self.clearings = [clearing_account(t) for t in self.tier_names]
        self.assets = [t.asset for t in specs]
        self.capacity = np.array([tiers.pool_capacity(t) for t in self.tier_names], dtype=np.int64)
        self.funds = [instance_funds(i) for i in self.ids]
        # what each tier's hosts serve in an interval; unbounded for a tier without hosts
        host_vcpus = [sum(h.vcpus for h in tiers.hosts(t)) for t in self.tier_names]
        self.host_capacity = np.array(
            [v * STEP_SECONDS // 60 * MILLI_PER_CREDIT if v else _UNBOUNDED for v in host_vcpus],
            dtype=np.int64,
        )
        self.conversions = [conversion_account(t.asset) for t in specs]
        self.conversions += [conversion_account(VALUE), rounding_account(VALUE)]

    def locks(self, idx: np.ndarray, segments: TierSegments, *, priced: bool) -> list[str]:
        """Return the accounts a booking of instances ``idx`` moves: their balances and
        their tiers' pools, clearing, mint and burn accounts; under a priced pool also
        their funds and every pool and conversion account (other tiers' pools serve)."""
        rows = idx.tolist()
        tiers = np.flatnonzero(segments.ends > segments.starts).tolist()
        if priced:
            tiers = list(range(segments.tiers))
        lock = [self.accounts[i] for i in rows]
        lock += [a for k in tiers for a in (self.pools[k], self.clearings[k])]
        lock += [a for k in tiers for a in (self.mints[k], self.burns[k])]
        if priced:
            lock += [self.funds[i] for i in rows] + self.conversions
        return lock


class LiveAccrual:
    """Books live readings into the ledger, each (instance, interval) exactly once.

    Parameters
    ----------
    ledger
        The ledger over the creditx SQL store (``SqlStore``) holding the accrual tables.
    tiers
        The fleet: tiers, hosts (pool capacities) and instances.
    late_window
        How long after an interval ends its reading may still arrive (see the module).
    draw
        The pool rule sharing a short pool among the instances short in an interval.
    actor
        The actor of the ledger entries.
    """

    def __init__(
        self,
        ledger: Ledger,
        tiers: TierManager,
        *,
        late_window: timedelta = DEFAULT_LATE_WINDOW,
        draw: PoolRule = draw_pro_rata,
        actor: str = "telemetry",
    ) -> None:
        if not isinstance(ledger.store, SqlStore):
            raise InvalidParameter("ledger", type(ledger.store).__name__, "needs a SQL store")
        if late_window < timedelta(0):
            raise InvalidParameter("late_window", late_window, "must not be negative")
        self.ledger = ledger
        self.tiers = tiers
        self.engine = ledger.store.engine
        self.late_window = late_window
        self.actor = actor
        self._draw = draw
        self._postgres = self.engine.dialect.name == "postgresql"
        self._fleet = _Fleet(tiers)
        self._lock = threading.Lock()
        ledger.open_accounts(
            (clearing, asset, AccountKind.ESCROW)
            for clearing, asset in zip(self._fleet.clearings, self._fleet.assets, strict=True)
        )

    # the whole path

    def submit(self, batch: ReadingBatch, now: datetime) -> Submission:
        """Check, receive and book a batch of readings, then everything else due.

        Readings booked at once never wait in ``accrual_pending``: only those that must
        wait for an earlier interval are stored there first. A crash before the
        response leaves each interval booked whole or not at all; the client's retry
        then finds what was booked a duplicate and books the rest.

        Raises
        ------
        InvalidReadingsError
            If any reading has a problem (:mod:`data.readings`); nothing is stored.
        AccrualContention
            If other writers kept booking the same intervals; what was stored stays
            pending and is booked by the next call.
        """
        check_readings(batch, instances=self._fleet.index, now=now)
        cpu = cpu_micro_of(batch.cpu_percent)
        booked: list[IntervalBooked] = []
        receipt: Receipt | None = None
        with self._lock:
            for _ in range(_ATTEMPTS):
                state = self._state()
                try:
                    # a retry sorts again what the bookings so far left; the receipt
                    # stays the first one, what the batch found when it arrived
                    again, fresh = self._classify(batch, cpu, now, state)
                    receipt = receipt or again
                    self._book_all(state, fresh, now, booked)
                    return Submission(receipt, tuple(booked))
                except sa.exc.IntegrityError:
                    continue  # another writer received or booked some of them
            raise AccrualContention(_ATTEMPTS)

    def receive(self, batch: ReadingBatch, now: datetime) -> Receipt:
        """Check a batch and store all its new readings as pending; book nothing."""
        check_readings(batch, instances=self._fleet.index, now=now)
        cpu = cpu_micro_of(batch.cpu_percent)
        with self._lock:
            for _ in range(_ATTEMPTS):
                state = self._state()
                receipt, fresh = self._classify(batch, cpu, now, state)
                try:
                    self._insert_pending(fresh, to_micros(now))
                except sa.exc.IntegrityError:
                    continue
                return receipt
            raise AccrualContention(_ATTEMPTS)

    def book_due(self, now: datetime) -> list[IntervalBooked]:
        """Book every interval due at ``now``, in interval order, one transaction each."""
        with self._lock:
            booked: list[IntervalBooked] = []
            for _ in range(_ATTEMPTS):
                try:
                    self._book_all(self._state(), [], now, booked)
                    return booked
                except sa.exc.IntegrityError:
                    continue
            raise AccrualContention(_ATTEMPTS)

    def cutoff(self, now: datetime) -> int:
        """Return the start (microseconds) of the latest interval closed at ``now``."""
        return to_micros(now) - STEP_US - self.late_window // timedelta(microseconds=1)

    # receiving

    def _classify(
        self, batch: ReadingBatch, cpu: np.ndarray, now: datetime, state: _State
    ) -> tuple[Receipt, list[tuple[str, int, int]]]:
        ids = batch.instance_id.tolist()
        starts = batch.interval_start_us.tolist()
        values = cpu.tolist()
        last, waiting = state.last, state.waiting
        cutoff = self.cutoff(now)
        window = int(self.late_window.total_seconds() // 60)
        duplicates: list[ReadingNote] = []
        refused: list[ReadingNote] = []
        first: dict[tuple[str, int], int] = {}
        earlier: list[int] = []
        fresh: list[tuple[str, int, int]] = []
        for row, key in enumerate(zip(ids, starts, strict=True)):
            if key in first:
                same = values[first[key]] == values[row]
                again = "" if same else " with another value (kept the first)"
                duplicates.append(self._note(row, key, f"repeated in this batch{again}"))
                continue
            first[key] = row
            booked_until = last.get(key[0])
            pending = waiting.get(key[0])
            if pending is not None and key[1] in pending:
                duplicates.append(self._note(row, key, "already received, waiting to be booked"))
            elif booked_until is not None and key[1] <= booked_until:
                earlier.append(row)
            elif key[1] <= cutoff:
                refused.append(
                    self._note(row, key, f"older than the late window of {window} minutes")
                )
            else:
                fresh.append((key[0], key[1], values[row]))
        sources = self._booked_sources([(ids[r], starts[r]) for r in earlier])
        for row in earlier:
            key = (ids[row], starts[row])
            source = sources.get(key)
            if source == READING:
                duplicates.append(self._note(row, key, "already booked"))
            elif source == MISSING:
                reason = "booked as zero usage once the late window passed without a reading"
                refused.append(self._note(row, key, reason))
            else:
                refused.append(self._note(row, key, "before the instance's first booked interval"))
        duplicates.sort(key=lambda n: n.row)
        refused.sort(key=lambda n: n.row)
        receipt = Receipt(len(batch), len(fresh), tuple(duplicates), tuple(refused))
        return receipt, fresh

    @staticmethod
    def _note(row: int, key: tuple[str, int], reason: str) -> ReadingNote:
        return ReadingNote(row, key[0], from_micros(key[1]), reason)

    def _insert_pending(self, fresh: list[tuple[str, int, int]], received: int) -> None:
        rows = [(i, t, c, received) for i, t, c in fresh]
        with self.engine.begin() as conn:
            if rows and self._postgres:
                conn.exec_driver_sql(
                    "INSERT INTO accrual_pending (instance_id, interval_us, cpu_micro,"
                    " received_at_us) SELECT * FROM unnest(%s::varchar[], %s::bigint[],"
                    " %s::bigint[], %s::bigint[])",
                    _columns(rows, 4),
                )
            elif rows:
                conn.exec_driver_sql(
                    "INSERT INTO accrual_pending (instance_id, interval_us, cpu_micro,"
                    " received_at_us) VALUES (?, ?, ?, ?)",
                    rows,
                )
            crash_point("accrual.receive.before_commit")
        crash_point("accrual.receive.after_commit")

    # reading the state

    def _state(self) -> _State:
        index = self._fleet.index
        with read_connection(self.engine) as conn, conn.begin():
            booked = conn.exec_driver_sql(
                "SELECT instance_id, interval_us FROM accrual_allowances"
            ).fetchall()
            pending = conn.exec_driver_sql(
                "SELECT instance_id, interval_us, cpu_micro FROM accrual_pending"
            ).fetchall()
        waiting: dict[str, dict[int, int]] = {}
        for instance_id, start, reading in pending:
            if instance_id in index:
                waiting.setdefault(instance_id, {})[start] = reading
        return _State({i: t for i, t in booked if i in index}, waiting)

    def _booked_sources(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str]:
        found: dict[tuple[str, int], str] = {}
        if not keys:
            return found
        key = sa.tuple_(t_booked.c.instance_id, t_booked.c.interval_us)
        query = sa.select(t_booked.c.instance_id, t_booked.c.interval_us, t_booked.c.source)
        with read_connection(self.engine) as conn, conn.begin():
            for a in range(0, len(keys), _CHUNK):
                for i, t, source in conn.execute(query.where(key.in_(keys[a : a + _CHUNK]))):
                    found[(i, t)] = source
        return found

    # booking

    def _book_all(
        self,
        state: _State,
        fresh: list[tuple[str, int, int]],
        now: datetime,
        booked: list[IntervalBooked],
    ) -> None:
        # plan every booking first: what must wait is stored before anything is booked
        plan = list(_schedule(state, fresh, self.cutoff(now)))
        scheduled = {(i, step.interval) for step in plan for i in step.due}
        waits = [r for r in fresh if (r[0], r[1]) not in scheduled]
        if waits:
            self._insert_pending(waits, to_micros(now))
        for step in plan:
            booked.append(self._book(step, now))

    def _book(self, step: _Step, now: datetime) -> IntervalBooked:
        fleet = self._fleet
        interval, due, new, clear = step.interval, step.due, step.new, step.clear
        idx = np.array(sorted(fleet.index[i] for i in due), dtype=np.int64)
        ids = [fleet.ids[i] for i in idx.tolist()]
        missing = np.array([due[i] is None for i in ids], dtype=bool)
        cpu = np.array([due[i] or 0 for i in ids], dtype=np.int64)
        tier_of = fleet.tier_of[idx]
        segments = TierSegments.of(tier_of, len(fleet.tier_names))
        demand = interval_demand(fleet.vcpus[idx], cpu, STEP_SECONDS)
        accounts = [fleet.accounts[i] for i in idx.tolist()]
        pool = _PoolHour.at(self.engine, interval, ids)
        lock = fleet.locks(idx, segments, priced=pool.terms is not None)
        booking_id = uuid.uuid4().hex
        iso = from_micros(interval).isoformat()
        result: list[IntervalBooking] = []

        def plan(balances: Mapping[str, int]) -> tuple[list[EntryRequest], Callable[..., None]]:
            balance = np.fromiter((balances[a] for a in accounts), np.int64, len(accounts))
            booking = accrue_interval(
                balance=balance,
                earned=fleet.earned[idx],
                demand=demand,
                cap=fleet.cap[idx],
                pool_draw=fleet.pool_draw[idx],
                segments=segments,
                pool=np.array([balances.get(p, 0) for p in fleet.pools], dtype=np.int64),
                pool_capacity=fleet.capacity,
                draw=pool.rule(fleet, idx, balances, self._draw),
                host_capacity=fleet.host_capacity,
                lend=pool.lenders,
            )
            result[:] = [booking]
            entries = self._entries(iso, booking_id, idx, segments, booking)
            rows = _Rows(interval, ids, new, clear, cpu, missing, booking, fleet, idx)

            def write(conn: Connection) -> None:
                pool.write(conn, booking)
                self._write(conn, rows, booking_id, to_micros(now))

            return entries, write

        self.ledger.post_planned(lock, plan)
        crash_point("accrual.book.after_commit")
        booking = result[0]
        return IntervalBooked(
            interval_start=from_micros(interval),
            booking_id=booking_id,
            instances=len(ids),
            readings=int((~missing).sum()),
            missing=int(missing.sum()),
            earned=int(booking.earned.sum()),
            spent=int(booking.spent.sum()),
            to_pool=int(booking.to_pool.sum()),
            from_pool=int(booking.from_pool.sum()),
            forfeited=int(booking.forfeited.sum()),
            throttled=int(booking.throttled.sum()),
        )

    def _entries(
        self,
        interval: str,
        booking_id: str,
        idx: np.ndarray,
        segments: TierSegments,
        booking: IntervalBooking,
    ) -> list[EntryRequest]:
        # each tier's totals through its clearing account, which ends the entry at zero,
        # and one net leg per instance whose balance moved
        fleet = self._fleet
        change, minted = booking.change, booking.minted
        pooled = booking.to_pool + booking.lent - booking.from_pool
        requests: list[EntryRequest] = []
        for part, a in enumerate(range(0, len(idx), _PER_ENTRY)):
            b = min(len(idx), a + _PER_ENTRY)
            tier_of = segments.tier_of[a:b]
            chunk = TierSegments.of(tier_of, segments.tiers)
            legs: list[Transfer] = []
            pools = chunk.total(pooled[a:b])
            if part == 0:
                legs += self._conversion_legs(booking)
                pools += booking.conversions.shift
            for k, m, s, p in zip(
                range(segments.tiers),
                chunk.total(minted[a:b]).tolist(),
                chunk.total(booking.spent[a:b]).tolist(),
                pools.tolist(),
                strict=True,
            ):
                clearing = fleet.clearings[k]
                if m:
                    legs.append(Transfer(fleet.mints[k], clearing, m))
                if s:
                    legs.append(Transfer(clearing, fleet.burns[k], s))
                if p > 0:
                    legs.append(Transfer(clearing, fleet.pools[k], p))
                elif p < 0:
                    legs.append(Transfer(fleet.pools[k], clearing, -p))
            moved = change[a:b]
            accounts, clearings = fleet.accounts, fleet.clearings
            for i in np.flatnonzero(moved).tolist():
                amount, k, account = int(moved[i]), int(tier_of[i]), accounts[int(idx[a + i])]
                if amount > 0:
                    legs.append(Transfer(clearings[k], account, amount))
                else:
                    legs.append(Transfer(account, clearings[k], -amount))
            if legs:
                metadata: dict[str, str | int] = {
                    "interval": interval,
                    "booking": booking_id,
                    "part": part,
                    "instances": b - a,
                }
                requests.append(EntryRequest(tuple(legs), ACCRUAL, self.actor, None, metadata))
        return requests

    def _conversion_legs(self, booking: IntervalBooking) -> list[Transfer]:
        # what the pools converted for each other, through each tier's clearing account
        fleet, converted = self._fleet, booking.conversions
        legs = []
        for k, (out, into) in enumerate(
            zip(converted.out.tolist(), converted.into.tolist(), strict=True)
        ):
            if out:
                legs.append(Transfer(fleet.clearings[k], fleet.conversions[k], out))
            if into:
                legs.append(Transfer(fleet.conversions[k], fleet.clearings[k], into))
        if converted.remainder:
            value, rounding = fleet.conversions[-2:]
            legs.append(Transfer(value, rounding, converted.remainder))
        return legs

    def _write(self, conn: Connection, rows: _Rows, booking_id: str, now_us: int) -> None:
        n = len(rows.ids)
        conn.execute(
            sa.text("UPDATE accrual_feed SET seq = seq + :n WHERE id = :row"),
            {"n": n, "row": FEED_ROW},
        )
        top = conn.execute(
            sa.text("SELECT seq FROM accrual_feed WHERE id = :row"), {"row": FEED_ROW}
        ).scalar_one()
        seqs = list(range(top - n + 1, top + 1))
        booked = rows.booked(booking_id)
        states = rows.allowances(seqs, now_us)
        fresh = [s for s in states if s[0] in rows.new]
        moved = [s for s in states if s[0] not in rows.new]
        cleared = [i for i in rows.ids if i in rows.clear]
        if self._postgres:
            conn.exec_driver_sql(_PG_BOOKED, _columns(booked, 13))
            if moved:
                conn.exec_driver_sql(_PG_UPDATE_ALLOWANCES, _columns(moved, 7))
            if fresh:
                conn.exec_driver_sql(_PG_INSERT_ALLOWANCES, _columns(fresh, 7))
            if cleared:
                conn.exec_driver_sql(_PG_CLEAR_PENDING, (cleared, rows.interval))
        else:
            conn.exec_driver_sql(_SQLITE_BOOKED, booked)
            if moved:
                conn.exec_driver_sql(_SQLITE_UPDATE_ALLOWANCES, [(*s[1:], s[0]) for s in moved])
            if fresh:
                conn.exec_driver_sql(_SQLITE_INSERT_ALLOWANCES, fresh)
            if cleared:
                conn.exec_driver_sql(_SQLITE_CLEAR_PENDING, [(i, rows.interval) for i in cleared])
        crash_point("accrual.book.before_commit")

    # allowances

    def allowance(self, instance_id: str) -> Allowance | None:
        """Return an instance's allowance, or ``None`` before its first booked interval.

        Raises
        ------
        InstanceNotFound
            For an instance the fleet does not know.
        """
        self.tiers.instance(instance_id)
        query = sa.select(t_allowances).where(t_allowances.c.instance_id == instance_id)
        with read_connection(self.engine) as conn, conn.begin():
            row = conn.execute(query).first()
        return None if row is None else self.allowance_of(AllowanceRow(*row))

    def allowances(self, *, since: int = 0, limit: int | None = None) -> list[Allowance]:
        """Return the allowances changed after cursor ``since``, in cursor order.

        Each instance appears once, in its latest version; a follower passes the last
        ``seq`` it read as the next ``since``.
        """
        return [self.allowance_of(row) for row in self.allowance_rows(since=since, limit=limit)]

    def allowance_rows(self, *, since: int = 0, limit: int | None = None) -> list[AllowanceRow]:
        """Return the stored rows of :meth:`allowances`, to build lazily with
        :meth:`allowance_of` (a feed of the whole fleet builds fast)."""
        sql = (
            "SELECT instance_id, interval_us, balance, throttled, last_throttled, seq,"
            " updated_at_us FROM accrual_allowances WHERE seq > "
            + ("%s" if self._postgres else "?")
            + " ORDER BY seq"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        index = self._fleet.index
        with read_connection(self.engine) as conn, conn.begin():
            rows = conn.exec_driver_sql(sql, (since,)).fetchall()
        return [AllowanceRow(*r) for r in rows if r[0] in index]

    def allowance_of(self, row: AllowanceRow) -> Allowance:
        """Return the allowance of a stored row."""
        fleet = self._fleet
        n = fleet.index.get(row.instance_id)
        instance = self.tiers.instance(row.instance_id)
        return Allowance(
            instance_id=row.instance_id,
            tier=instance.tier,
            interval_start=from_micros(row.interval_us),
            balance=row.balance,
            throttled=bool(row.throttled),
            last_throttled=row.last_throttled,
            earns_per_interval=0 if n is None else int(fleet.earned[n]),
            pool_draw=instance.pool_draw,
            seq=row.seq,
            updated_at=from_micros(row.updated_at_us),
        )


@dataclass(frozen=True, slots=True)
class _PoolHour:
    """The priced pool an interval is booked under: the terms of the latest market round
    at or before its hour (none before the first: the free pool) and what the
    interval's instances drew under them so far."""

    terms: HourTerms | None
    ids: list[str]
    drawn: np.ndarray
    lenders: np.ndarray | None

    @classmethod
    def at(cls, engine: sa.Engine, interval: int, ids: list[str]) -> _PoolHour:
        with read_connection(engine) as conn, conn.begin():
            terms = terms_at(conn, interval - interval % HOUR_US)
            if terms is None:
                return cls(None, ids, np.zeros(len(ids), dtype=np.int64), None)
            drawn = drawn_in_hour(conn, terms.hour_us, ids)
        lenders = np.array([i in terms.lenders for i in ids], dtype=bool)
        return cls(terms, ids, np.array([drawn.get(i, 0) for i in ids], dtype=np.int64), lenders)

    def rule(
        self, fleet: _Fleet, idx: np.ndarray, balances: Mapping[str, int], free: PoolRule
    ) -> PoolRule:
        """Return the pool rule of the interval: priced under terms, else ``free``."""
        terms = self.terms
        if terms is None:
            return free
        value = terms.value_of(self.ids)
        order, inverse = value_order(value, fleet.tier_of[idx])
        return PricedPool(
            value,
            order,
            inverse,
            terms.price_of(fleet.tier_names),
            np.array([balances[fleet.funds[i]] for i in idx.tolist()], dtype=np.int64),
            self.drawn,
            terms.rates_of(fleet.tier_names),
        )

    def write(self, conn: Connection, booking: IntervalBooking) -> None:
        """Add the interval's draws and loans to the hour's, in the booking's transaction."""
        if self.terms is not None:
            add_pool_hours(conn, self.terms.hour_us, self.ids, booking.from_pool, booking.lent)


class AllowanceRow(NamedTuple):
    """A stored allowance, as ``accrual_allowances`` holds it."""

    instance_id: str
    interval_us: int
    balance: int
    throttled: int
    last_throttled: int
    seq: int
    updated_at_us: int


@dataclass(slots=True)
class _State:
    """The store's view of the booking: each instance's last booked interval and the
    readings waiting in ``accrual_pending`` (interval -> micro-percent)."""

    last: dict[str, int]
    waiting: dict[str, dict[int, int]]


@dataclass(frozen=True, slots=True)
class _Step:
    """One booking: an interval, its instances (micro-percent, ``None`` for zero usage),
    those booked for the first time, and those whose stored readings it clears."""

    interval: int
    due: dict[str, int | None]
    new: frozenset[str]
    clear: frozenset[str]


def _schedule(state: _State, fresh: Sequence[tuple[str, int, int]], cutoff: int) -> Iterator[_Step]:
    """Yield the bookings due, in interval order (see the module's rules)."""
    last = dict(state.last)
    stored = set(state.waiting)
    readings = {i: dict(r) for i, r in state.waiting.items()}
    for instance_id, start, reading in fresh:
        readings.setdefault(instance_id, {})[start] = reading
    buckets: dict[int, dict[str, int | None]] = {}

    def place(instance_id: str) -> None:
        booked_until = last.get(instance_id)
        nxt = None if booked_until is None else booked_until + STEP_US
        mine = readings.get(instance_id)
        if mine:
            earliest = min(mine)
            if nxt is not None and earliest < nxt:
                # a reading another writer booked meanwhile: its row goes with the next
                for start in [s for s in mine if s < nxt]:
                    del mine[start]
                if mine:
                    earliest = min(mine)
            if mine:
                if nxt is None or earliest == nxt:
                    buckets.setdefault(earliest, {})[instance_id] = mine[earliest]
                elif nxt <= cutoff:
                    buckets.setdefault(nxt, {})[instance_id] = None
                return  # or it waits for the reading before it
        if nxt is not None and nxt <= cutoff:
            buckets.setdefault(nxt, {})[instance_id] = None

    for instance_id in set(readings) | set(last):
        place(instance_id)
    while buckets:
        interval = min(buckets)
        due = buckets.pop(interval)
        yield _Step(
            interval,
            due,
            frozenset(i for i in due if i not in last),
            frozenset(i for i in due if i in stored),
        )
        closed = interval + STEP_US <= cutoff
        for instance_id in due:
            last[instance_id] = interval
            mine = readings.get(instance_id)
            if mine:
                mine.pop(interval, None)
            if mine or closed:
                place(instance_id)


class _Rows:
    """The rows one booking writes beside its ledger entry."""

    def __init__(
        self,
        interval: int,
        ids: list[str],
        new: AbstractSet[str],
        clear: AbstractSet[str],
        cpu: np.ndarray,
        missing: np.ndarray,
        booking: IntervalBooking,
        fleet: _Fleet,
        idx: np.ndarray,
    ) -> None:
        self.interval = interval
        self.ids = ids
        self.new = new
        self.clear = clear
        self.cpu = cpu
        self.missing = missing
        self.booking = booking
        tier_of = fleet.tier_of[idx]
        may_draw = fleet.pool_draw[idx] & (booking.pool[tier_of] > 0)
        self.throttled = (booking.balance == 0) & ~may_draw

    def booked(self, booking_id: str) -> list[tuple[Any, ...]]:
        b = self.booking
        return list(
            zip(
                self.ids,
                [self.interval] * len(self.ids),
                np.where(self.missing, MISSING, READING).tolist(),
                self.cpu.tolist(),
                b.earned.tolist(),
                b.demand.tolist(),
                b.spent.tolist(),
                b.from_pool.tolist(),
                b.to_pool.tolist(),
                b.forfeited.tolist(),
                b.throttled.tolist(),
                b.balance.tolist(),
                [booking_id] * len(self.ids),
                strict=True,
            )
        )

    def allowances(self, seqs: list[int], now_us: int) -> list[tuple[Any, ...]]:
        n = len(self.ids)
        return list(
            zip(
                self.ids,
                [self.interval] * n,
                self.booking.balance.tolist(),
                self.throttled.astype(np.int64).tolist(),
                self.booking.throttled.tolist(),
                seqs,
                [now_us] * n,
                strict=True,
            )
        )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> tuple[list[Any], ...]:
    return tuple([row[i] for row in rows] for i in range(width))


_BOOKED_COLUMNS = (
    "instance_id, interval_us, source, cpu_micro, earned, demand, spent, from_pool, to_pool,"
    " forfeited, throttled, balance, booking_id"
)
_ALLOWANCE_COLUMNS = (
    "instance_id, interval_us, balance, throttled, last_throttled, seq, updated_at_us"
)
_SQLITE_BOOKED = f"INSERT INTO accrual_booked ({_BOOKED_COLUMNS}) VALUES ({', '.join('?' * 13)})"
_SQLITE_UPDATE_ALLOWANCES = (
    "UPDATE accrual_allowances SET interval_us = ?, balance = ?, throttled = ?,"
    " last_throttled = ?, seq = ?, updated_at_us = ? WHERE instance_id = ?"
)
_SQLITE_INSERT_ALLOWANCES = (
    f"INSERT INTO accrual_allowances ({_ALLOWANCE_COLUMNS}) VALUES ({', '.join('?' * 7)})"
)
_SQLITE_CLEAR_PENDING = "DELETE FROM accrual_pending WHERE instance_id = ? AND interval_us <= ?"
_PG_BOOKED = (
    f"INSERT INTO accrual_booked ({_BOOKED_COLUMNS}) SELECT * FROM unnest(%s::varchar[],"
    " %s::bigint[], %s::varchar[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],"
    " %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::varchar[])"
)
_PG_ALLOWANCE_ARRAYS = (
    "unnest(%s::varchar[], %s::bigint[], %s::bigint[], %s::smallint[], %s::bigint[],"
    " %s::bigint[], %s::bigint[])"
)
_PG_UPDATE_ALLOWANCES = (
    "UPDATE accrual_allowances AS a SET interval_us = v.interval_us, balance = v.balance,"
    " throttled = v.throttled, last_throttled = v.last_throttled, seq = v.seq,"
    f" updated_at_us = v.updated_at_us FROM {_PG_ALLOWANCE_ARRAYS} AS v({_ALLOWANCE_COLUMNS})"
    " WHERE a.instance_id = v.instance_id"
)
_PG_INSERT_ALLOWANCES = (
    f"INSERT INTO accrual_allowances ({_ALLOWANCE_COLUMNS}) SELECT * FROM {_PG_ALLOWANCE_ARRAYS}"
)
_PG_CLEAR_PENDING = (
    "DELETE FROM accrual_pending AS p USING unnest(%s::varchar[]) AS v(instance_id)"
    " WHERE p.instance_id = v.instance_id AND p.interval_us <= %s"
)
