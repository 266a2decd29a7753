"""The live accrual (market.cem.live) on real SQLite and PostgreSQL stores: each
(instance, interval) booked exactly once, in order, late and duplicate readings sorted,
bad batches refused whole, a SIGKILL'd booking that leaves all or nothing, allowances
and their feed, and credits conserved over random readings."""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.errors import InvalidReadingsError
from data.readings import ReadingBatch
from market.cem.accounting import BurstableAccountant
from market.cem.live import LiveAccrual
from market.cem.live_tables import allowances as t_allowances
from market.cem.live_tables import booked as t_booked
from market.cem.live_tables import pending as t_pending
from market.cem.pool_rules import draw_in_order
from market.cem.tiers import Instance, TierManager, load_config
from market.clock import ManualClock
from market.ledger import EntryRequest, Ledger, MemoryStore, SqlStore, Transfer
from market.migrations import upgrade
from tests.market.crash_workload import killed_child

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)


def at(n: int) -> datetime:
    """The start of the ``n``-th interval from T0."""
    return T0 + n * STEP


def after(n: int, minutes: float = 0.5) -> datetime:
    """A moment shortly after interval ``n`` ended."""
    return at(n + 1) + timedelta(minutes=minutes)


def fleet() -> TierManager:
    tiers = load_config()
    for i in range(4):
        tiers.add_instance(Instance(f"vm-s{i}", "silver", 2 + 2 * (i % 2), "team"))
    return tiers


def open_live(url: str, tiers: TierManager | None = None, **options: Any) -> LiveAccrual:
    upgrade(url)
    tiers = tiers or fleet()
    ledger = Ledger(SqlStore(url), ManualClock(T0))
    tiers.open_accounts(ledger)
    return LiveAccrual(ledger, tiers, **options)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def live(store_url: str) -> Iterator[LiveAccrual]:
    accrual = open_live(store_url)
    yield accrual
    accrual.ledger.close()


def batch(*readings: tuple[str, int, float | None]) -> ReadingBatch:
    return ReadingBatch.from_records([(i, at(n), cpu) for i, n, cpu in readings])


def credits(live: LiveAccrual, instance: str) -> int:
    return live.ledger.balance(f"instance:{instance}:credits")


def booked_keys(live: LiveAccrual) -> list[tuple[str, int, str]]:
    with live.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t_booked.c.instance_id, t_booked.c.interval_us, t_booked.c.source).order_by(
                t_booked.c.interval_us, t_booked.c.instance_id
            )
        )
        return [(i, (t - int(T0.timestamp() * 1e6)) // 300_000_000, s) for i, t, s in rows]


def grant_pool(live: LiveAccrual, tier: str, amount: int) -> None:
    live.ledger.post(
        EntryRequest((Transfer(f"mint:credits:{tier}", f"pool:{tier}", amount),), "grant", "t")
    )


def test_readings_in_order_book_as_burstable_accounting_books_them(live: LiveAccrual) -> None:
    reference = Ledger(MemoryStore(), ManualClock(T0))
    tiers = fleet()
    tiers.open_accounts(reference)
    accountant = BurstableAccountant(reference, tiers)
    plan = [("vm-silver-1", 50.0), ("vm-gold-2", 3.25), ("vm-bronze-1", 0.0), ("vm-s1", 100.0)]
    for n in range(3):
        done = live.submit(batch(*((i, n, min(cpu + n, 100.0)) for i, cpu in plan)), after(n))
        assert done.receipt.accepted == 4
        assert [b.instances for b in done.booked] == [4]
        for instance, cpu in plan:
            accountant.settle(instance, 300, min(cpu + n, 100.0))
    for instance, _ in plan:
        assert credits(live, instance) == reference.balance(f"instance:{instance}:credits")
    assert live.ledger.verify().ok
    assert [k for k in booked_keys(live) if k[0] == "vm-s1"] == [
        ("vm-s1", n, "reading") for n in range(3)
    ]
    allowance = live.allowance("vm-silver-1")
    assert allowance is not None
    assert allowance.interval_start == at(2)
    assert allowance.next_interval_start == at(3)
    assert allowance.balance == credits(live, "vm-silver-1")
    # 2 vCPUs at 52 % use 5.2 credits and earn 1: empty, and silver's pool is empty too
    assert allowance.throttled
    assert allowance.last_throttled == 4_200
    assert live.allowance("vm-gold-1") is None


def test_duplicates_are_reported_and_book_nothing_twice(live: LiveAccrual) -> None:
    first = batch(("vm-gold-1", 0, 10.0), ("vm-gold-2", 0, 20.0))
    live.submit(first, after(0))
    balances = live.ledger.balances()
    again = live.submit(
        batch(("vm-gold-1", 0, 10.0), ("vm-gold-2", 0, 99.0), ("vm-gold-2", 1, 5.0)), after(1)
    )
    assert again.receipt.accepted == 1
    assert [(d.row, d.reason) for d in again.receipt.duplicates] == [
        (0, "already booked"),
        (1, "already booked"),
    ]
    assert (
        live.ledger.balance("instance:vm-gold-1:credits") == balances["instance:vm-gold-1:credits"]
    )
    within = live.submit(batch(("vm-gold-1", 2, 1.0), ("vm-gold-1", 2, 7.0)), after(2))
    assert [d.reason for d in within.receipt.duplicates] == [
        "repeated in this batch with another value (kept the first)"
    ]
    keys = booked_keys(live)
    assert keys == [
        ("vm-gold-1", 0, "reading"),
        ("vm-gold-2", 0, "reading"),
        ("vm-gold-2", 1, "reading"),
    ]
    # vm-gold-1's interval 1 waits: its reading for 2 holds until 1 closes
    assert ("vm-gold-1", 2, "reading") not in keys
    with live.engine.connect() as conn:
        waiting = conn.execute(sa.select(t_pending.c.instance_id, t_pending.c.cpu_micro)).all()
    assert waiting == [("vm-gold-1", 1_000_000)]


def test_a_late_reading_is_booked_in_interval_order(live: LiveAccrual) -> None:
    live.submit(batch(("vm-s0", 0, 10.0)), after(0))
    early = live.submit(batch(("vm-s0", 2, 80.0)), after(2))
    assert early.booked == ()  # interval 1 is still open and unread
    resent = live.submit(batch(("vm-s0", 2, 80.0)), after(2, minutes=1))
    assert [d.reason for d in resent.receipt.duplicates] == [
        "already received, waiting to be booked"
    ]
    allowance = live.allowance("vm-s0")
    assert allowance is not None
    assert allowance.interval_start == at(0)
    late = live.submit(batch(("vm-s0", 1, 30.0)), after(2, minutes=20))
    assert [b.interval_start for b in late.booked] == [at(1), at(2)]
    assert booked_keys(live) == [("vm-s0", n, "reading") for n in range(3)]
    reference = Ledger(MemoryStore(), ManualClock(T0))
    tiers = fleet()
    tiers.open_accounts(reference)
    for cpu in (10.0, 30.0, 80.0):
        BurstableAccountant(reference, tiers).settle("vm-s0", 300, cpu)
    assert credits(live, "vm-s0") == reference.balance("instance:vm-s0:credits")


def test_a_missing_interval_is_booked_as_zero_usage_once_the_window_passes(
    live: LiveAccrual,
) -> None:
    live.submit(batch(("vm-s1", 0, 40.0)), after(0))
    held = live.submit(batch(("vm-s1", 2, 40.0)), after(2, minutes=50))
    assert held.booked == ()
    # interval 1 ended at T0+10min: at T0+10min+60min it closes
    closed = live.book_due(at(2) + timedelta(minutes=60))
    assert [(b.interval_start, b.missing, b.readings) for b in closed] == [
        (at(1), 1, 0),
        (at(2), 0, 1),
    ]
    assert booked_keys(live) == [
        ("vm-s1", 0, "reading"),
        ("vm-s1", 1, "missing"),
        ("vm-s1", 2, "reading"),
    ]
    late = live.submit(batch(("vm-s1", 1, 40.0)), at(2) + timedelta(minutes=61))
    assert [r.reason for r in late.receipt.refused] == [
        "booked as zero usage once the late window passed without a reading"
    ]
    # and with nothing more read, each interval closes as zero usage
    later = live.book_due(at(7) + timedelta(minutes=60))
    assert [b.interval_start for b in later] == [at(3), at(4), at(5), at(6)]
    assert live.ledger.verify().ok


def test_too_old_and_too_early_readings_are_refused_with_their_reason(
    live: LiveAccrual,
) -> None:
    live.submit(batch(("vm-gold-2", 5, 10.0)), after(5))
    refused = live.submit(
        batch(("vm-gold-1", 0, 10.0), ("vm-gold-2", 4, 10.0), ("vm-gold-1", 6, 1.0)),
        at(1) + timedelta(minutes=65),
    )
    assert [(r.row, r.reason) for r in refused.receipt.refused] == [
        (0, "older than the late window of 60 minutes"),
        (1, "before the instance's first booked interval"),
    ]
    assert refused.receipt.accepted == 1
    narrow = open_live(
        str(live.engine.url.render_as_string(hide_password=False)),
        late_window=timedelta(0),
    )
    assert narrow.cutoff(after(7, 0)) == int(at(7).timestamp() * 1e6)
    narrow.ledger.close()


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (("vm-gold-1", 0, float("nan")), "nan"),
        (("vm-gold-1", 0, -3.0), "negative"),
        (("vm-gold-1", 0, 100.5), "above_100"),
        (("vm-ghost", 0, 5.0), "unknown_instance"),
        (("vm-gold-1", 9, 5.0), "not_ended"),
    ],
)
def test_a_bad_batch_is_refused_whole_and_nothing_is_booked(
    live: LiveAccrual, bad: tuple[str, int, float], problem: str
) -> None:
    live.submit(batch(("vm-gold-2", 0, 5.0)), after(0))
    before = live.ledger.balances()
    keys = booked_keys(live)
    with pytest.raises(InvalidReadingsError) as caught:
        live.submit(batch(("vm-gold-2", 1, 5.0), bad), after(1))
    assert [(p.row, p.problem) for p in caught.value.problems] == [(1, problem)]
    assert live.ledger.balances() == before
    assert booked_keys(live) == keys
    with live.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t_pending)).scalar() == 0


def test_instances_short_in_one_interval_share_the_pool_pro_rata(live: LiveAccrual) -> None:
    grant_pool(live, "silver", 9_000)
    # vm-s0 (2 vCPUs) and vm-s1 (4 vCPUs) flat out: short 9 and 18 credits, 27 in all
    done = live.submit(batch(("vm-s0", 0, 100.0), ("vm-s1", 0, 100.0)), after(0))
    assert done.booked[0].from_pool == 9_000
    with live.engine.connect() as conn:
        drawn = dict(conn.execute(sa.select(t_booked.c.instance_id, t_booked.c.from_pool)).all())
    assert drawn == {"vm-s0": 3_000, "vm-s1": 6_000}
    assert live.ledger.balance("pool:silver") == 0
    assert live.ledger.verify().ok


def test_the_pool_rule_is_a_parameter(store_url: str) -> None:
    live = open_live(store_url, draw=draw_in_order)
    grant_pool(live, "silver", 9_000)
    live.submit(batch(("vm-s0", 0, 100.0), ("vm-s1", 0, 100.0)), after(0))
    with live.engine.connect() as conn:
        drawn = dict(conn.execute(sa.select(t_booked.c.instance_id, t_booked.c.from_pool)).all())
    assert drawn == {"vm-s0": 9_000, "vm-s1": 0}
    live.ledger.close()


def test_the_allowance_feed_is_ordered_by_a_cursor_that_only_grows(live: LiveAccrual) -> None:
    live.submit(batch(("vm-s0", 0, 1.0), ("vm-s1", 0, 1.0), ("vm-s2", 0, 1.0)), after(0))
    first = live.allowances()
    assert [a.instance_id for a in first] == ["vm-s0", "vm-s1", "vm-s2"]
    assert [a.seq for a in first] == [1, 2, 3]
    cursor = first[-1].seq
    assert live.allowances(since=cursor) == []
    live.submit(batch(("vm-s1", 1, 1.0)), after(1))
    changed = live.allowances(since=cursor)
    assert [(a.instance_id, a.seq, a.interval_start) for a in changed] == [("vm-s1", 4, at(1))]
    everyone = live.allowances()
    assert [a.instance_id for a in everyone] == ["vm-s0", "vm-s2", "vm-s1"]
    assert [a.seq for a in live.allowances(limit=2)] == [1, 3]


def test_two_writers_on_one_store_book_each_interval_once(store_url: str) -> None:
    one, two = open_live(store_url), open_live(store_url)
    ids = ["vm-s0", "vm-s1", "vm-s2", "vm-s3", "vm-gold-1"]
    work = batch(*((i, n, 10.0 * n) for n in range(6) for i in ids))
    one.receive(work, after(5))
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def book(live: LiveAccrual) -> None:
        barrier.wait()
        results.append(live.book_due(after(5)))

    threads = [threading.Thread(target=book, args=(w,)) for w in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = booked_keys(one)
    assert sorted(keys) == sorted((i, n, "reading") for n in range(6) for i in ids)
    assert sum(b.instances for r in results for b in r) == len(keys)
    assert one.ledger.verify().ok
    one.ledger.close()
    two.ledger.close()


# ---------------------------------------------------------------- crashes

CRASH_IDS = ["vm-s0", "vm-s1", "vm-s2", "vm-s3", "vm-gold-1", "vm-gold-2", "vm-platinum-1"]
CRASH_NOW = after(5)


def crash_batch() -> ReadingBatch:
    # vm-s3 misses interval 2: its intervals 3 to 5 wait in accrual_pending
    rng = np.random.default_rng(3)
    return batch(
        *(
            (i, n, float(np.round(rng.uniform(0, 100), 3)))
            for n in range(6)
            for i in CRASH_IDS
            if (i, n) != ("vm-s3", 2)
        )
    )


def prepare_crash_store(url: str) -> None:
    live = open_live(url)
    grant_pool(live, "silver", 20_000)
    live.ledger.close()


def store_state(url: str) -> dict[str, Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            booked = sorted(tuple(r)[:-1] for r in conn.execute(sa.select(t_booked)))
            allowances = sorted(tuple(r) for r in conn.execute(sa.select(t_allowances)))
            balances = dict(conn.exec_driver_sql("SELECT id, balance FROM ledger_accounts").all())
            pending = conn.execute(sa.select(sa.func.count()).select_from(t_pending)).scalar()
    finally:
        engine.dispose()
    return {"booked": booked, "allowances": allowances, "balances": balances, "pending": pending}


@pytest.fixture(scope="module")
def crash_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path_factory.mktemp('reference') / 'live.db'}"
    prepare_crash_store(url)
    live = open_live(url)
    done = live.submit(crash_batch(), CRASH_NOW)
    assert len(done.booked) == 6
    live.ledger.close()
    return store_state(url)


CRASHES = [
    ("accrual.receive.before_commit", 1),
    ("accrual.receive.after_commit", 1),
    ("accrual.book.before_commit", 1),
    ("accrual.book.before_commit", 4),
    ("accrual.book.after_commit", 3),
    ("ledger.post.after_commit", 2),
]


def crash_and_restart(url: str, point: str, hit: int) -> dict[str, Any]:
    prepare_crash_store(url)

    def work(ack: Any) -> None:
        live = open_live(url)
        for booked in live.submit(crash_batch(), CRASH_NOW).booked:
            ack(booked.interval_start.isoformat())

    code, acknowledged = killed_child(work, point, hit)
    assert code == -signal.SIGKILL
    assert acknowledged == []  # the child died inside the one submit
    state = store_state(url)
    # what the killed child committed is whole intervals, each booked once
    per_interval: dict[int, set[str]] = {}
    for row in state["booked"]:
        per_interval.setdefault(row[1], set()).add(row[0])
    whole = [set(CRASH_IDS)] * 2 + [set(CRASH_IDS) - {"vm-s3"}] * 4
    assert [per_interval[t] for t in sorted(per_interval)] == whole[: len(per_interval)]
    # the client retries the batch after the restart
    live = open_live(url)
    retry = live.submit(crash_batch(), CRASH_NOW)
    assert retry.receipt.accepted + len(retry.receipt.duplicates) == len(crash_batch())
    assert live.ledger.verify().ok
    live.ledger.close()
    return state


@pytest.mark.parametrize(("point", "hit"), CRASHES)
def test_a_sigkilled_booking_is_booked_exactly_once_after_restart_on_sqlite(
    point: str, hit: int, tmp_path: Path, crash_reference: dict[str, Any]
) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    crashed = crash_and_restart(url, point, hit)
    expected_intervals = {
        ("accrual.receive.before_commit", 1): 0,
        ("accrual.receive.after_commit", 1): 0,
        ("accrual.book.before_commit", 1): 0,
        ("accrual.book.before_commit", 4): 3,
        ("accrual.book.after_commit", 3): 3,
        ("ledger.post.after_commit", 2): 2,
    }[(point, hit)]
    sizes = [7, 7, 6, 6, 6, 6]
    assert len(crashed["booked"]) == sum(sizes[:expected_intervals])
    assert store_state(url) == crash_reference
    assert crash_reference["pending"] == 3


@pytest.mark.postgres
@pytest.mark.parametrize(("point", "hit"), [CRASHES[1], CRASHES[3]])
def test_a_sigkilled_booking_is_booked_exactly_once_after_restart_on_postgres(
    point: str, hit: int, pg_url: str, crash_reference: dict[str, Any]
) -> None:
    crash_and_restart(pg_url, point, hit)
    assert store_state(pg_url) == crash_reference


# ---------------------------------------------------------------- conservation

readings = st.lists(
    st.tuples(
        st.sampled_from(["vm-s0", "vm-s1", "vm-s2", "vm-s3", "vm-gold-1", "vm-bronze-2"]),
        st.integers(0, 8),
        st.floats(0, 100, allow_nan=False).map(lambda x: round(x, 4)),
    ),
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(readings, min_size=1, max_size=4),
    pool=st.integers(0, 50_000),
    delays=st.lists(st.integers(0, 90), min_size=4, max_size=4),
)
def test_credits_minted_are_spent_held_pooled_or_forfeited(
    batches: list[list[tuple[str, int, float]]],
    pool: int,
    delays: list[int],
    template_db: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("conserve") / "live.db"
    shutil.copy(template_db, path)
    live = open_live(f"sqlite:///{path}")
    if pool:
        grant_pool(live, "silver", pool)
    moment = after(0)
    for readings_, delay in zip(batches, delays, strict=False):
        moment = max(moment, after(max((n for _, n, _ in readings_), default=0), delay))
        live.submit(batch(*readings_), moment)
    live.book_due(moment + timedelta(hours=2))
    with live.engine.connect() as conn:
        totals = conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(t_booked.c.earned), 0),
                sa.func.coalesce(sa.func.sum(t_booked.c.spent), 0),
                sa.func.coalesce(sa.func.sum(t_booked.c.forfeited), 0),
                sa.func.count(),
            )
        ).one()
        keys = conn.execute(sa.select(t_booked.c.instance_id, t_booked.c.interval_us)).all()
    earned, spent, forfeited, count = (int(v) for v in totals)
    balances = live.ledger.balances()
    held = sum(b for a, b in balances.items() if a.startswith("instance:"))
    pooled = sum(b for a, b in balances.items() if a.startswith("pool:")) - pool
    minted = -sum(b for a, b in balances.items() if a.startswith("mint:")) - pool
    burnt = sum(b for a, b in balances.items() if a.startswith("burn:"))
    assert minted == earned - forfeited
    assert burnt == spent
    assert earned == spent + held + pooled + forfeited
    assert len(set(keys)) == count
    assert all(b == 0 for a, b in balances.items() if a.startswith("escrow:"))
    report = live.ledger.verify()
    assert report.ok
    live.ledger.close()
