"""Hypothesis stateful test: random accruals, spends, swaps, trades, deposits, batches and
refused operations never create or lose anything, on every store.

After every step: each asset's balances sum to exactly zero (mint accounts hold minus
what was issued), no account that may not go negative is below zero, the stored
balances equal a model built from the entries the ledger returned, and replaying the
journal rebuilds every balance.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from market.cem.accounting import BurstableAccountant
from market.cem.exchange import CreditExchange
from market.cem.tiers import ExchangeConfig, HardwareProfile, Host, Instance, Tier, TierManager
from market.clock import ManualClock
from market.errors import (
    CrossTierTrade,
    InsufficientCredits,
    InsufficientFunds,
    InsufficientHeadroom,
    InsufficientPoolCredits,
    InvalidParameter,
)
from market.ledger import (
    Entry,
    EntryRequest,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidAmount,
    Ledger,
    MemoryStore,
    SqlStore,
    Transfer,
    instance_credits,
)
from market.migrations import upgrade

START = datetime(2026, 1, 5, tzinfo=UTC)
INSTANCES = ["a1", "a2", "a3", "b1", "b2"]
HW = HardwareProfile(cpu_ghz=1, memory_gib_per_vcpu=1, ssd="nvme", network_gbps=1)  # type: ignore[arg-type]


def fleet() -> TierManager:
    # Small hosts so pools reach their capacity and swaps run out of headroom.
    return TierManager(
        [
            Tier(
                name="alpha",
                hardware=HW,
                baseline_bps=1000,
                exchange_rate=1_000_000,
                pool_horizon_hours=1,
            ),
            Tier(
                name="beta",
                hardware=HW,
                baseline_bps=2000,
                exchange_rate=2_200_000,
                pool_horizon_hours=1,
            ),
        ],
        [Host("ha", "alpha", 1), Host("hb", "beta", 1)],
        [
            Instance("a1", "alpha", 2, "o"),
            Instance("a2", "alpha", 1, "o", pool_draw=False),
            Instance("a3", "alpha", 4, "o"),
            Instance("b1", "beta", 2, "o"),
            Instance("b2", "beta", 1, "o"),
        ],
        ExchangeConfig(fee_bps=30, administrators=frozenset({"root"})),
    )


def reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE ledger_transfers, ledger_entries, ledger_accounts")
    engine.dispose()


def machine_for(store_kind: str, pg_url: str | None) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        @initialize()
        def open_fleet(self) -> None:
            self.clock = ManualClock(START)
            self.workdir: Path | None = None
            if store_kind == "memory":
                store: MemoryStore | SqlStore = MemoryStore()
            elif store_kind == "sqlite":
                self.workdir = Path(tempfile.mkdtemp(prefix="creditx-ledger-"))
                url = f"sqlite:///{self.workdir / 'ledger.db'}"
                upgrade(url)
                store = SqlStore(url)
            else:
                assert pg_url is not None
                reset_postgres(pg_url)
                store = SqlStore(pg_url)
            self.ledger = Ledger(store, self.clock)
            self.tiers = fleet()
            self.tiers.open_accounts(self.ledger)
            self.cem = CreditExchange(self.ledger, self.tiers, self.clock)
            self.accountant = BurstableAccountant(self.ledger, self.tiers)
            self.model: dict[str, int] = defaultdict(int)
            self.keys: dict[str, Entry] = {}

        def teardown(self) -> None:
            if hasattr(self, "ledger"):
                self.ledger.close()
            if getattr(self, "workdir", None) is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)

        def book(self, entry: Entry | None) -> None:
            if entry is None:
                return
            for t in entry.transfers:
                self.model[t.source] -= t.amount
                self.model[t.destination] += t.amount

        def refused(self) -> dict[str, int]:
            return self.ledger.balances()

        @rule(
            instance=st.sampled_from(INSTANCES),
            seconds=st.sampled_from([60, 300, 3600, 24 * 3600]),
            utilisation=st.one_of(st.sampled_from([0.0, 0.0, 100.0]), st.floats(0, 100)),
        )
        def accrue_and_spend(self, instance: str, seconds: int, utilisation: float) -> None:
            self.clock.advance(timedelta(seconds=seconds))
            outcome = self.accountant.settle(instance, seconds, utilisation)
            self.book(outcome.entry)
            assert outcome.spent + outcome.throttled == outcome.demand
            assert outcome.balance == self.ledger.balance(instance_credits(instance))
            for name in ("to_pool", "from_pool", "forfeited", "throttled"):
                if getattr(outcome, name):
                    event(f"interval {name}")

        @rule(instance=st.sampled_from(INSTANCES), amount=st.integers(1, 50_000))
        def deposit(self, instance: str, amount: int) -> None:
            self.book(self.cem.deposit_funds(instance, amount, actor="root"))

        @rule(
            seller=st.sampled_from(INSTANCES),
            buyer=st.sampled_from(INSTANCES),
            amount_share=st.integers(1, 120),
            price_share=st.integers(1, 120),
        )
        def trade(self, seller: str, buyer: str, amount_share: int, price_share: int) -> None:
            # Sizes relative to what the parties hold, so most trades could settle and
            # shares above 100 % are refused; a cross-tier pair is refused up front.
            if seller[0] != buyer[0] and amount_share % 4:
                buyer = {"a": "a3", "b": "b2"}[seller[0]]
            credits = self.model[instance_credits(seller)]
            funds = self.model[f"instance:{buyer}:funds"]
            amount = max(1, credits * amount_share // 100)
            # a price per credit that spends that share of the buyer's funds on the value
            price = max(1, funds * price_share // 100 * 1_000 // amount)
            before = self.ledger.balances()
            try:
                trade = self.cem.facilitate_trade(seller, buyer, amount, price)
            except CrossTierTrade:
                assert seller[0] != buyer[0]
                assert self.ledger.balances() == before
                event("trade refused: cross-tier")
                return
            except (InsufficientCredits, InsufficientFunds, InvalidParameter) as exc:
                assert self.ledger.balances() == before
                event(f"trade refused: {type(exc).__name__}")
                return
            event("trade settled")
            assert trade.value == amount * price // 1_000
            assert trade.fee == trade.value * 30 // 10_000
            (entry,) = (e for e in self.ledger.entries(reason="trade") if e.id == trade.trade_id)
            self.book(entry)

        @rule(tier=st.sampled_from(["alpha", "beta"]), amount=st.integers(1, 12_000))
        def grant_to_pool(self, tier: str, amount: int) -> None:
            transfer = Transfer(f"mint:credits:{tier}", f"pool:{tier}", amount)
            self.book(self.ledger.post(EntryRequest((transfer,), "grant", "root")))

        @rule(source=st.sampled_from(["alpha", "beta"]), share=st.integers(1, 120))
        def swap(self, source: str, share: int) -> None:
            amount = max(1, self.model[f"pool:{source}"] * share // 100)
            destination = "beta" if source == "alpha" else "alpha"
            before = self.ledger.balances()
            try:
                swap = self.cem.perform_credit_swap(source, destination, amount, actor="root")
            except (InsufficientPoolCredits, InsufficientHeadroom, InvalidParameter) as exc:
                assert self.ledger.balances() == before
                event(f"swap refused: {type(exc).__name__}")
                return
            event("swap booked")
            assert (
                swap.amount_in * swap.source_rate
                == swap.amount_out * swap.destination_rate + swap.remainder
            )
            assert 0 <= swap.remainder < swap.destination_rate
            self.book(swap.entry)

        @rule(
            pairs=st.lists(
                st.tuples(
                    st.sampled_from(["a1", "a2", "a3"]),
                    st.sampled_from(["a1", "a2", "a3"]),
                    st.integers(1, 30_000),
                ),
                min_size=1,
                max_size=6,
            )
        )
        def batch_of_moves(self, pairs: list[tuple[str, str, int]]) -> None:
            requests = [
                EntryRequest((Transfer(instance_credits(s), instance_credits(d), n),), "move", "t")
                for s, d, n in pairs
                if s != d
            ]
            before = self.ledger.balances()
            try:
                entries = self.ledger.post_batch(requests)
            except InsufficientBalance:
                assert self.ledger.balances() == before
                event("batch refused")
                return
            event("batch posted")
            for entry in entries:
                self.book(entry)

        @rule(
            instance=st.sampled_from(INSTANCES),
            amount=st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.just(10**16)),
        )
        def refused_amount(self, instance: str, amount: object) -> None:
            before = self.ledger.balances()
            with pytest.raises(InvalidAmount):
                self.cem.deposit_funds(instance, amount, actor="root")  # type: ignore[arg-type]
            assert self.ledger.balances() == before

        @rule(key=st.sampled_from(["k1", "k2"]), amount=st.integers(1, 3))
        def keyed_deposit(self, key: str, amount: int) -> None:
            before = self.ledger.balances()
            try:
                entry = self.cem.deposit_funds("a1", amount, actor="root", idempotency_key=key)
            except IdempotencyConflict:
                assert self.keys[key].transfers[0].amount != amount
                assert self.ledger.balances() == before
                return
            if key in self.keys:
                assert entry == self.keys[key]
                assert self.ledger.balances() == before
            else:
                self.keys[key] = entry
                self.book(entry)

        @invariant()
        def conserved_and_consistent(self) -> None:
            if not hasattr(self, "ledger"):
                return
            stored = self.ledger.balances()
            assert {a: b for a, b in stored.items() if b} == {
                a: b for a, b in self.model.items() if b
            }
            accounts = self.ledger.store.all_accounts()
            totals: dict[str, int] = defaultdict(int)
            for account_id, balance in stored.items():
                totals[accounts[account_id].asset] += balance
                if not accounts[account_id].may_go_negative:
                    assert balance >= 0, account_id
            assert all(total == 0 for total in totals.values()), totals

        @invariant()
        def journal_replays(self) -> None:
            if hasattr(self, "ledger"):
                assert self.ledger.verify().ok

    return LedgerMachine


_FAST = {"suppress_health_check": [HealthCheck.too_slow], "deadline": None}


def test_stateful_memory() -> None:
    run_state_machine_as_test(
        machine_for("memory", None),
        settings=settings(max_examples=100, stateful_step_count=40, **_FAST),
    )


@pytest.mark.slow
def test_stateful_sqlite() -> None:
    run_state_machine_as_test(
        machine_for("sqlite", None),
        settings=settings(max_examples=15, stateful_step_count=30, **_FAST),
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_stateful_postgres(pg_url: str) -> None:
    upgrade(pg_url)
    run_state_machine_as_test(
        machine_for("postgres", pg_url),
        settings=settings(max_examples=6, stateful_step_count=25, **_FAST),
    )
