"""The live exchange's hourly market round at fleet scale, for ``creditx bench live``.

A store of 10,000 instances over the four tiers, opened as the service opens it
(:class:`serving.market_service.MarketService`, whose :class:`market.rounds.MarketRounds`
the API's rounds route runs): every instance holds credits (up to its balance cap) and
money, the pools are filled to different levels (the fuller ones offer), most owners
set a value, and every instance has a served forecast (an hourly profile per instance,
its next hour, day and week with ``q50`` and ``q90``). One round of one hour is timed:
the agents' decisions and submission, each tier's call auction settled, the pools'
offers closed and the CEM's interval.

The stages are told apart by the commits the round passes (:mod:`market.crashpoints`,
observed through a hook that only records the time): the pools' offer, the auction
submission, the commit that closes the offers, the round's record.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import Figure
from benchmarks.ledger import _fresh_pg_schema
from benchmarks.live import fleet
from market.agents.forecast import HorizonForecast, InstanceForecast
from market.cem.exchange import DEPOSIT
from market.cem.registry import Registry
from market.cem.tiers import TierManager
from market.clock import ManualClock
from market.crashpoints import set_crash_hook
from market.ledger import (
    FUNDS,
    EntryRequest,
    Transfer,
    create_store_engine,
    credits_asset,
    instance_credits,
    instance_funds,
    mint_account,
    pool_account,
)
from market.rounds import RoundOutcome
from serving.market_service import MarketService
from serving.migrations import upgrade

ROUND_HOUR = datetime(2026, 11, 24, 15, tzinfo=UTC)
POOL_FILL = (0.95, 0.80, 0.60, 0.30)
"""Each tier's pool level, as a share of its capacity, in the tiers' order."""
STARTING_FUNDS = 10_000_000
# instances per opening entry: a transfer's position is a SMALLINT
_PER_ENTRY = 16_000

STAGES = ("offer", "decide+submit", "auctions+settle", "CEM+record")
"""The stages of a round, in order, as :func:`stage_times` splits it."""


@dataclass(frozen=True, slots=True)
class Mark:
    """A commit the round passed, when (wall, perf counter) and at what CPU time."""

    point: str
    wall: float
    cpu: float


def stage_times(
    marks: Sequence[Mark], start: Mark, end: Mark
) -> dict[str, tuple[float, float] | None]:
    """Split a round's ``start``-``end`` span into :data:`STAGES` by the commits it passed.

    Returns each stage's ``(wall seconds, CPU seconds)``; ``None`` for a stage whose
    boundary commit was not passed (a round resumed past it). The offer ends at the
    first ledger commit; the agents' submission at the auction submission's commit (or the
    stage's own, when no order was accepted); the auctions at the first ledger commit
    after the last auction's (the offers' close).
    """
    points = [m.point for m in marks]

    def first(names: Iterable[str], after: int) -> int | None:
        wanted = set(names)
        return next((k for k in range(after, len(points)) if points[k] in wanted), None)

    offer = first(("ledger.post.after_commit",), 0)
    if offer is not None and any(p.startswith("venue.") for p in points[:offer]):
        offer = None  # the round offered nothing: that commit is the submission's
    submit = first(
        ("venue.auction_submit.after_commit", "round.stage.after_commit"),
        0 if offer is None else offer + 1,
    )
    auctions = [k for k, p in enumerate(points) if p == "venue.auction_run.after_commit"]
    close = first(("ledger.post.after_commit",), auctions[-1] + 1) if auctions else None
    edges = [start, *(None if k is None else marks[k] for k in (offer, submit, close)), end]
    out: dict[str, tuple[float, float] | None] = {}
    for stage, since, until in zip(STAGES, edges, edges[1:], strict=False):
        if since is None or until is None:
            out[stage] = None
        else:
            out[stage] = (until.wall - since.wall, until.cpu - since.cpu)
    return out


def now_mark(point: str) -> Mark:
    """Return a :class:`Mark` of ``point`` at this moment."""
    return Mark(point, time.perf_counter(), time.process_time())


# ------------------------------------------------------------------ the books


def open_market(url: str, tiers: TierManager, clock: ManualClock) -> MarketService:
    """Store ``tiers`` in a fresh store at ``url`` and open its market as the service does."""
    upgrade(url)
    engine = create_store_engine(url)
    Registry(engine).save(tiers)
    return MarketService(engine, clock)


def seed_books(
    market: MarketService,
    rng: np.random.Generator,
    *,
    funds: int = STARTING_FUNDS,
    pool_fill: Sequence[float] = POOL_FILL,
) -> None:
    """Give every instance credits (uniform up to its cap) and ``funds``, and fill the pools.

    The credits are booked as the replay books its opening balances and the money as
    the exchange books an administrator's deposits (:data:`market.cem.exchange.DEPOSIT`),
    each in entries of at most 16,000 instances rather than one entry per instance.
    """
    tiers = market.tiers
    instances = tiers.instances()
    for first in range(0, len(instances), _PER_ENTRY):
        opening, deposits = [], []
        for instance in instances[first : first + _PER_ENTRY]:
            cap = tiers.tier(instance.tier).balance_cap(instance.vcpus)
            credits = int(rng.integers(0, cap + 1))
            asset = credits_asset(instance.tier)
            if credits:
                opening.append(
                    Transfer(mint_account(asset), instance_credits(instance.id), credits)
                )
            deposits.append(Transfer(mint_account(FUNDS), instance_funds(instance.id), funds))
        if opening:
            market.ledger.post(EntryRequest(tuple(opening), "opening", "admin"))
        market.ledger.post(EntryRequest(tuple(deposits), DEPOSIT, "admin"))
    pools = []
    for tier, fill in zip(market.round.tier_names, pool_fill, strict=False):
        level = int(tiers.pool_capacity(tier) * fill)
        if level:
            pools.append(Transfer(mint_account(credits_asset(tier)), pool_account(tier), level))
    if pools:
        market.ledger.post(EntryRequest(tuple(pools), "opening", "admin"))


def owner_values(
    ids: Sequence[str], rng: np.random.Generator, share: float = 0.8
) -> dict[str, int]:
    """Return values (minor units per credit) set by a ``share`` of the owners, spread
    from 10 to 1,000 around the policy's default of 100."""
    chosen = rng.random(len(ids)) < share
    values = np.round(np.exp(rng.uniform(np.log(10), np.log(1_000), len(ids)))).astype(np.int64)
    return {i: int(v) for i, v, c in zip(ids, values, chosen, strict=True) if c}


def profile_forecasts(
    ids: Sequence[str], generated_at: datetime, rng: np.random.Generator
) -> dict[str, InstanceForecast]:
    """Return a served-style forecast per instance from a synthetic hourly profile.

    Each instance has a level (most idle near baseline, a tail busy), a daily cycle
    peaking at its own hour and noise; its ``hour``, ``day`` and ``week`` horizons
    hold the point (``yhat``, also ``q50``) and ``q90`` above it.
    """
    n = len(ids)
    level = rng.gamma(1.2, 15.0, n)
    peak = rng.integers(0, 24, n)
    hours = generated_at.hour + 1 + np.arange(168)
    daily = 1 + 0.6 * np.cos(2 * np.pi * (hours[None, :] - peak[:, None]) / 24)
    point = np.clip(level[:, None] * daily * rng.lognormal(0, 0.2, (n, 168)), 0, 100)
    upper = np.clip(point * 1.3 + 2, 0, 100)
    return {
        instance_id: forecast_of(generated_at, point[k], upper[k])
        for k, instance_id in enumerate(ids)
    }


def forecast_of(generated_at: datetime, point: np.ndarray, upper: np.ndarray) -> InstanceForecast:
    """Return an instance's forecast whose horizons start with ``point`` and ``upper``
    (``q90``), hour by hour from the next hour; a week's horizon only when both hold
    168 hours."""
    horizons = {}
    for name, hours in (("hour", 1), ("day", 24), ("week", 168)):
        if len(point) < hours:
            continue
        mid = tuple(point[:hours].tolist())
        horizons[name] = HorizonForecast(mid, {"q50": mid, "q90": tuple(upper[:hours].tolist())})
    return InstanceForecast(generated_at, horizons, "bench")


# ------------------------------------------------------------------ the round figure


def _timed_round(
    market: MarketService,
    forecasts: Mapping[str, InstanceForecast | None],
    values: Mapping[str, int],
) -> tuple[RoundOutcome, Mark, Mark, list[Mark]]:
    marks: list[Mark] = []
    previous = set_crash_hook(lambda point: marks.append(now_mark(point)))
    try:
        start = now_mark("start")
        outcome = market.rounds.run(ROUND_HOUR, forecasts, values)
        end = now_mark("end")
    finally:
        set_crash_hook(previous)
    return outcome, start, end, marks


def round_figures(kind: str, url: str, instances: int, seed: int = 11) -> list[Figure]:
    """Time one market round of ``instances`` agents on the store at ``url``."""
    rng = np.random.default_rng(seed)
    clock = ManualClock(ROUND_HOUR)
    market = open_market(url, fleet(instances), clock)
    try:
        seed_books(market, rng)
        ids = [i.id for i in market.tiers.instances()]
        values = owner_values(ids, rng)
        forecasts = profile_forecasts(ids, ROUND_HOUR, rng)
        outcome, start, end, marks = _timed_round(market, forecasts, values)
        if not market.ledger.verify().ok:
            raise RuntimeError(f"the {kind} ledger does not verify after the round")
    finally:
        market.close()
    if outcome.stage != "done" or outcome.record is None:
        raise RuntimeError(f"the {kind} round ended at stage {outcome.stage}")
    return _round_report(kind, instances, outcome.record, start, end, marks, len(values))


def _round_report(
    kind: str,
    instances: int,
    record: Mapping[str, Any],
    start: Mark,
    end: Mark,
    marks: list[Mark],
    valued: int,
) -> list[Figure]:
    # the round's wall and CPU time, its stages, and what it traded
    agents = record.get("agents") or {}
    auctions = record["auctions"]
    figures = [
        Figure(
            f"{kind} market round, {instances:,} agents (decide, auction, settle, CEM)",
            end.wall - start.wall,
            "s",
            "<= 30",
        ),
        Figure(f"{kind} market round CPU time (this process)", end.cpu - start.cpu, "cpu-s"),
    ]
    for stage, spent in stage_times(marks, start, end).items():
        if spent is not None:
            figures += [
                Figure(f"{kind} round stage {stage}", spent[0], "s"),
                Figure(f"{kind} round stage {stage} CPU", spent[1], "cpu-s"),
            ]
    figures += [
        Figure(f"{kind} round: owners with a value set", valued, "instances"),
        Figure(f"{kind} round: orders placed", agents.get("orders_placed", 0), "orders"),
        Figure(f"{kind} round: orders refused", agents.get("orders_refused", 0), "orders"),
        Figure(f"{kind} round: pool offers", len(record["offers"]), "orders"),
        Figure(f"{kind} round: trades", sum(a["trades"] for a in auctions), "trades"),
        Figure(f"{kind} round: swaps", len(record["swaps"]), "swaps"),
    ]
    for auction in auctions:
        price = auction["clearing_price"]
        figures.append(
            Figure(
                f"{kind} round: {auction['tier']} clearing price "
                f"({auction['volume_credits']:,.0f} credits traded)",
                float("nan") if price is None else price,
                "minor/credit",
            )
        )
    return figures


def rounds(instances: int, pg_url: str) -> list[Figure]:
    """Return the round figures on SQLite and, with ``pg_url``, on PostgreSQL."""
    with tempfile.TemporaryDirectory(prefix="creditx-bench-live-round-") as tmp:
        figures = round_figures("sqlite", f"sqlite:///{Path(tmp) / 'ledger.db'}", instances)
    if pg_url:
        url, drop = _fresh_pg_schema(pg_url)
        try:
            figures += round_figures("postgres", url, instances)
        finally:
            drop()
    return figures
