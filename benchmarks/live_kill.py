"""``creditx bench live --kill-run``: seven simulated days of the live loop, killed at random.

A child process runs the live loop on a SQLite store over a seeded synthetic fleet
(:func:`data.synthetic.generate_fleet`, 200 instances by default), the clock advancing
with the trace: for every 5-minute interval it submits the fleet's readings through
:meth:`market.cem.live.LiveAccrual.submit` (what ``POST /v1/telemetry`` calls) and, on
every hour, runs that hour's market round (:meth:`market.rounds.MarketRounds.run`, the
service's construction, :class:`serving.market_service.MarketService`) on served-style
forecasts (each instance's same hours of the day before, ``q90`` above them). The
trace's first day is only history for those forecasts.

The parent SIGKILLs the child at ``--kills`` random moments (seeded), restarts it, and
the child resumes from what the store holds: it resubmits the last interval the store
booked (the client's retry of a batch that may have been half done; every reading is
then a duplicate) and goes on from there, running each hour's round again (a round
done returns its record, one half done finishes).

At the end the store is audited (:func:`audit`): the ledger verifies, every
(instance, interval) is booked exactly once and every accrual entry has its booked
keys, every hour's round is done once with one auction per tier and one pool offer and
close at most, credits and money are conserved (minted less burnt, from the journal,
equals what the accounts hold), no balance is negative.

The audit checks that nothing was booked twice or lost (a CEM decision recorded twice
for one hour included). It does not compare with an unkilled run (``--kills 0``); done by
hand on the default run, every booking, trade and settlement matched it.
"""

from __future__ import annotations

import multiprocessing
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from benchmarks._report import Figure
from benchmarks.live import fleet_of
from benchmarks.live_round import forecast_of, open_market, owner_values, seed_books
from data.readings import ReadingBatch
from data.synthetic import DEFAULT_START, generate_fleet
from market.agents.forecast import InstanceForecast
from market.cem.live import ACCRUAL, MISSING, LiveAccrual
from market.cem.live_tables import booked as t_booked
from market.cem.tiers import POOL_REVENUE_ACCOUNT, load_config
from market.clock import ManualClock, to_micros
from market.decisions import decision_log_table
from market.ledger import FUNDS, Ledger, SqlStore, create_store_engine
from market.round_tables import rounds as t_rounds
from market.rounds import round_id_of
from market.venue.tables import auctions as t_auctions
from market.venue.tables import trades as t_trades
from serving.market_service import MarketService

STEP = timedelta(minutes=5)
PER_HOUR = 12
PER_DAY = 24 * PER_HOUR
# readings are submitted this long after their interval ends
_LAG = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class KillRun:
    """What a kill run simulates and how it kills."""

    instances: int = 200
    days: int = 7
    kills: int = 5
    seed: int = 5
    # seconds a child runs before it is killed, drawn uniformly
    kill_after: tuple[float, float] = (0.5, 6.0)
    # each tier's pool level at the start, as a share of its capacity: bronze and silver
    # start empty, so the CEM swaps into them and their instances draw on the priced pool
    pool_fill: tuple[float, ...] = (0.0, 0.0, 0.9, 0.9)

    @property
    def start(self) -> datetime:
        """Return the start of the first interval booked (the trace's second day)."""
        return DEFAULT_START + timedelta(days=1)

    @property
    def intervals(self) -> int:
        """Return how many intervals the loop books per instance."""
        return self.days * PER_DAY

    def hours(self) -> list[datetime]:
        """Return the hours whose rounds the loop runs, in order."""
        return [self.start + timedelta(hours=h + 1) for h in range(self.days * 24)]


@dataclass
class KillTally:
    """What the parent saw: each kill's moment, and the audit's findings."""

    kills: list[str] = field(default_factory=list)
    kills_in_a_round: int = 0
    restarts: int = 0
    child_exit: int | None = None
    findings: Counter[str] = field(default_factory=Counter)
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        """Return every finding of the audit."""
        return sum(self.findings.values())


# ------------------------------------------------------------------ the fleet and its trace


def trace(run: KillRun) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Return the fleet's ids, tiers, vCPUs and readings (instances x intervals, percent)."""
    frame = generate_fleet(run.instances, run.days + 1, seed=run.seed)
    ids = [str(i) for i in frame["unique_id"].cat.categories]
    first = frame.groupby("unique_id", observed=True, sort=True).head(1)
    y = frame["y"].to_numpy(dtype=np.float64).reshape(run.instances, -1)
    return ids, first["tier"].astype(str).to_numpy(), first["vcpus"].to_numpy(), np.round(y, 3)


def served_forecasts(
    ids: list[str], hourly: np.ndarray, hour: int, at: datetime
) -> dict[str, InstanceForecast | None]:
    """Return each instance's forecast at hour ``hour`` of the trace: the same 24 hours of
    the day before (``hourly``, instances x hours of mean percent), ``q90`` above them."""
    point = hourly[:, hour - 24 : hour]
    upper = np.clip(point * 1.3 + 2, 0, 100)
    return {i: forecast_of(at, point[k], upper[k]) for k, i in enumerate(ids)}


def prepare(url: str, run: KillRun) -> None:
    """Make the store: the fleet, its credits, money and pools (as the round figure does)."""
    ids, tiers, vcpus, _ = trace(run)
    market = open_market(url, fleet_of(ids, tiers.tolist(), vcpus.tolist()), ManualClock(run.start))
    try:
        seed_books(market, np.random.default_rng(run.seed), pool_fill=run.pool_fill)
    finally:
        market.close()


# ------------------------------------------------------------------ the child: the live loop


def resume_from(engine: sa.Engine, run: KillRun) -> int:
    """Return the interval (index from the loop's start) to submit first: the last the
    store booked, retried, or the first."""
    with engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(t_booked.c.interval_us))).scalar()
    return 0 if last is None else index_of(last, run)


def live_loop(url: str, run: KillRun) -> None:
    """Run the loop from where the store stands to the end of the run's days."""
    ids, _, _, y = trace(run)
    hourly = y.reshape(run.instances, -1, PER_HOUR).mean(axis=2)
    values = owner_values(ids, np.random.default_rng(run.seed + 1))
    engine = create_store_engine(url)
    first = resume_from(engine, run)
    clock = ManualClock(run.start + first * STEP + STEP + _LAG)
    market = MarketService(engine, clock)
    live = LiveAccrual(market.ledger, market.tiers)
    names = np.array(ids, dtype=object)
    for k in range(first, run.intervals):
        end = run.start + (k + 1) * STEP
        clock.set(end + _LAG)
        stamp = np.full(len(ids), to_micros(end - STEP), dtype=np.int64)
        live.submit(ReadingBatch(names, stamp, y[:, PER_DAY + k], "kill-run"), end + _LAG)
        if (k + 1) % PER_HOUR == 0:
            hour = PER_DAY // PER_HOUR + (k + 1) // PER_HOUR
            market.rounds.run(end, served_forecasts(ids, hourly, hour, end), values)
    market.close()


# ------------------------------------------------------------------ the parent


def run_kills(run: KillRun, url: str, say: Callable[[str], None] = lambda _: None) -> KillTally:
    """Run the loop in children, SIGKILL ``run.kills`` of them at random, audit the store."""
    context = multiprocessing.get_context("fork")
    rng = random.Random(run.seed)
    tally = KillTally()
    while True:
        child = context.Process(target=live_loop, args=(url, run), daemon=True)
        child.start()
        if len(tally.kills) < run.kills:
            child.join(rng.uniform(*run.kill_after))
            if child.is_alive():
                child.kill()
                child.join()
                where, in_round = _where(url, run)
                tally.kills.append(where)
                tally.kills_in_a_round += in_round
                say(f"kill {len(tally.kills)}/{run.kills}: {tally.kills[-1]}")
                tally.restarts += 1
                continue
        child.join()
        tally.child_exit = child.exitcode
        break
    audit(url, run, tally)
    return tally


def _where(url: str, run: KillRun) -> tuple[str, bool]:
    # what the store held when a child died: its last booked interval and round, and
    # whether that round was under way
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            last = conn.execute(sa.select(sa.func.max(t_booked.c.interval_us))).scalar()
            stage = conn.execute(
                sa.select(t_rounds.c.round_id, t_rounds.c.stage)
                .order_by(t_rounds.c.hour_us.desc())
                .limit(1)
            ).first()
    finally:
        engine.dispose()
    booked = 0 if last is None else index_of(last, run) + 1
    latest = "none" if stage is None else f"{stage.round_id} {stage.stage}"
    return f"{booked} intervals booked, latest round {latest}", bool(
        stage and stage.stage != "done"
    )


def index_of(interval_us: int, run: KillRun) -> int:
    """Return the loop's index of the interval starting at ``interval_us``."""
    return (interval_us - to_micros(run.start)) // (STEP // timedelta(microseconds=1))


# ------------------------------------------------------------------ the audit


def audit(url: str, run: KillRun, tally: KillTally) -> None:
    """Check the store after the run; count each kind of finding in ``tally``."""
    engine = create_store_engine(url)
    ledger = Ledger(SqlStore(engine), lambda: run.start)
    try:
        _audit_ledger(ledger, tally)
        _audit_accrual(engine, ledger, run, tally)
        _audit_rounds(engine, ledger, run, tally)
    finally:
        ledger.close()
        engine.dispose()


def _audit_ledger(ledger: Ledger, tally: KillTally) -> None:
    # the journal replays to the balances; per asset, minted less burnt is what is held
    report = ledger.verify()
    tally.findings["ledger_mismatches"] += len(report.balance_mismatches) + len(report.asset_errors)
    tally.findings["asset_totals_not_zero"] += sum(t != 0 for t in report.asset_totals.values())
    tally.counts["ledger entries"] = report.entries
    accounts = ledger.store.all_accounts()
    minted: Counter[str] = Counter()
    burnt: Counter[str] = Counter()
    for entry in ledger.store.journal():
        for t in entry.transfers:
            if t.source.startswith("mint:"):
                minted[accounts[t.source].asset] += t.amount
            if t.destination.startswith("mint:"):
                minted[accounts[t.destination].asset] -= t.amount
            if t.destination.startswith("burn:"):
                burnt[accounts[t.destination].asset] += t.amount
            if t.source.startswith("burn:"):
                burnt[accounts[t.source].asset] -= t.amount
    held: Counter[str] = Counter()
    negative = 0
    for account_id, balance in ledger.balances().items():
        account = accounts[account_id]
        if not account_id.startswith(("mint:", "burn:")):
            held[account.asset] += balance
        negative += balance < 0 and not account.may_go_negative
    for asset in sorted(set(minted) | set(held)):
        if minted[asset] - burnt[asset] != held[asset]:
            tally.findings["not_conserved"] += 1
            tally.problems.append(
                f"{asset}: minted {minted[asset]} - burnt {burnt[asset]} != held {held[asset]}"
            )
    tally.findings["negative_balances"] += negative
    tally.counts["credits minted (milli)"] = sum(v for a, v in minted.items() if a != FUNDS)
    tally.counts["credits burnt (milli)"] = sum(v for a, v in burnt.items() if a != FUNDS)


def _audit_accrual(engine: sa.Engine, ledger: Ledger, run: KillRun, tally: KillTally) -> None:
    # every (instance, interval) of the run booked once, every accrual entry with its keys
    first_us = to_micros(run.start)
    last_us = to_micros(run.start + (run.intervals - 1) * STEP)
    with engine.connect() as conn:
        per_instance = conn.execute(
            sa.select(
                t_booked.c.instance_id,
                sa.func.count(),
                sa.func.min(t_booked.c.interval_us),
                sa.func.max(t_booked.c.interval_us),
            ).group_by(t_booked.c.instance_id)
        ).all()
        bookings = set(conn.execute(sa.select(t_booked.c.booking_id).distinct()).scalars())
        total = conn.execute(sa.select(sa.func.count()).select_from(t_booked)).scalar_one()
        missing = conn.execute(
            sa.select(sa.func.count()).where(t_booked.c.source == MISSING)
        ).scalar_one()
    wrong = [
        r.instance_id
        for r in per_instance
        if (r[1], r[2], r[3]) != (run.intervals, first_us, last_us)
    ]
    tally.findings["instances_not_booked_once_per_interval"] += len(wrong) + max(
        0, run.instances - len(per_instance)
    )
    parts = Counter(
        (str(e.metadata.get("booking")), e.metadata.get("part"))
        for e in ledger.entries(reason=ACCRUAL)
    )
    tally.findings["accrual_entries_twice"] += sum(n - 1 for n in parts.values() if n > 1)
    tally.findings["accrual_entries_without_keys"] += len({b for b, _ in parts} - bookings)
    tally.counts["(instance, interval) booked"] = total
    tally.counts["intervals booked per instance"] = run.intervals
    tally.counts["(instance, interval) booked without a reading"] = missing


def _audit_rounds(engine: sa.Engine, ledger: Ledger, run: KillRun, tally: KillTally) -> None:
    # every hour's round done once: one auction per tier, one pool offer and close at most
    expected = [round_id_of(h) for h in run.hours()]
    with engine.connect() as conn:
        stages = dict(conn.execute(sa.select(t_rounds.c.round_id, t_rounds.c.stage)).all())
        auctions = set(conn.execute(sa.select(t_auctions.c.auction_id)).scalars())
        trades = conn.execute(sa.select(sa.func.count()).select_from(t_trades)).scalar_one()
        cem = conn.execute(
            sa.select(
                decision_log_table.c.subject,
                decision_log_table.c.at_us,
                decision_log_table.c.outcome,
                sa.func.count(),
            )
            .where(decision_log_table.c.kind == "cem")
            .group_by(  # two swaps into one tier differ in their detail; a repeat does not
                decision_log_table.c.subject,
                decision_log_table.c.at_us,
                decision_log_table.c.outcome,
                decision_log_table.c.detail,
            )
        ).all()
    tiers = [t.name for t in load_config().tiers()]
    wanted = {f"{t}-{r}" for r in expected for t in tiers}
    tally.findings["rounds_not_done"] += sum(stages.get(r) != "done" for r in expected)
    tally.findings["rounds_unexpected"] += len(set(stages) - set(expected))
    tally.findings["auctions_missing"] += len(wanted - auctions)
    tally.findings["auctions_unexpected"] += len(auctions - wanted)
    for reason in ("pool-offer", "pool-offer-close", "pool-settle"):
        at = Counter(e.created_at for e in ledger.entries(reason=reason))
        tally.findings[f"{reason}_twice_in_a_round"] += sum(n - 1 for n in at.values() if n > 1)
    tally.findings["cem_repeated"] += sum(r[3] - 1 for r in cem if r[3] > 1)
    outcomes: Counter[str] = Counter()
    for r in cem:
        outcomes[r[2]] += r[3]
    tally.counts["CEM rate steps"] = outcomes["rate"]
    tally.counts["CEM rates held"] = outcomes["rate_held"]
    tally.counts["CEM swaps"] = outcomes["swap"]
    tally.counts["rounds done"] = sum(stages.get(r) == "done" for r in expected)
    tally.counts["auctions cleared"] = len(auctions & wanted)
    tally.counts["trades settled"] = trades
    tally.counts["priced-pool hours settled"] = len(ledger.entries(reason="pool-settle"))
    tally.counts["pool revenue (draws, offers), minor units"] = ledger.balance(POOL_REVENUE_ACCOUNT)


# ------------------------------------------------------------------ the figures


def kill_run_figures(run: KillRun, say: Callable[[str], None] = lambda _: None) -> list[Figure]:
    """Run the kill run on a fresh SQLite store and return its figures."""
    started, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="creditx-bench-live-kill-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        prepare(url, run)
        tally = run_kills(run, url, say)
    wall = time.perf_counter() - started
    children = _children_cpu()
    for problem in tally.problems[:20]:
        say(problem)
    figures = [
        Figure(
            f"kill run: {run.days} days of {run.instances} instances, kills",
            len(tally.kills),
            "kills",
            f">= {run.kills}",
        ),
        Figure("kill run: kills that stopped a round under way", tally.kills_in_a_round, "kills"),
        Figure("kill run: last child's exit code", float(tally.child_exit or 0), "", "<= 0"),
        Figure("kill run: violations (every finding below)", tally.violations, "findings", "<= 0"),
    ]
    figures += [
        Figure(f"kill run: {name.replace('_', ' ')}", n, "findings", "<= 0")
        for name, n in sorted(tally.findings.items())
    ]
    figures += [Figure(f"kill run: {name}", n, "") for name, n in tally.counts.items()]
    figures += [
        Figure("kill run: wall time", wall, "s"),
        Figure(
            "kill run: CPU time, this process (setup, audit)", time.process_time() - cpu, "cpu-s"
        ),
        Figure("kill run: CPU time, the children (the loop)", children, "cpu-s"),
    ]
    return figures


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
