"""Bank-style concurrency: 8 worker threads x 2,000 random trades and swaps each on one
store; afterwards every total is exact, no update is lost and every acknowledged entry
is in the journal exactly once.

The stores run with ``durable=False`` here: this test is about isolation (no lost or
doubled update under contention); the crash test holds durability with full flushing.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from market.cem.exchange import CreditExchange
from market.cem.tiers import load_config
from market.clock import ManualClock
from market.errors import ExchangeError
from market.ledger import (
    Entry,
    EntryRequest,
    Ledger,
    SqlStore,
    Transfer,
    mint_account,
    pool_account,
)
from market.migrations import upgrade

WORKERS = 8
OPERATIONS = 2_000
TIERS = ("bronze", "silver", "gold", "platinum")

CONFIG = "\n".join(
    [
        '[exchange]\nfee_bps = 25\nadministrators = ["root"]',
        *(
            f'[[tiers]]\nname = "{t}"\ncpu_ghz = "3"\nmemory_gib_per_vcpu = "2"\nssd = "nvme"\n'
            f'network_gbps = "10"\nbaseline_pct = "{5 * 2**i}"\nexchange_rate = "{r}"\n'
            f'[[hosts]]\nid = "h-{t}"\ntier = "{t}"\nvcpus = 64'
            for i, (t, r) in enumerate(zip(TIERS, ("1", "1.5", "2.2", "3.5"), strict=True))
        ),
        *(
            f'[[instances]]\nid = "{t}-{n}"\ntier = "{t}"\nvcpus = 2\nowner = "o"'
            for t in TIERS
            for n in range(4)
        ),
    ]
)


def worker(url: str, config: Path, seed: int) -> tuple[list[Entry], int]:
    """Run random trades and swaps on a store of its own; return acknowledged entries."""
    rng = random.Random(seed)
    tiers = load_config(config)
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    ledger = Ledger(SqlStore(url, durable=False), clock)
    cem = CreditExchange(ledger, tiers, clock)
    names = [t.name for t in tiers.tiers()]
    acknowledged: list[str] = []
    refused = 0
    for op in range(OPERATIONS):
        try:
            if rng.random() < 0.8:
                tier = rng.choice(names)
                seller, buyer = rng.sample([i.id for i in tiers.instances(tier)], 2)
                entry_id = cem.facilitate_trade(
                    seller,
                    buyer,
                    rng.randint(1, 4_000),
                    rng.randint(1, 900),
                    idempotency_key=f"w{seed}-{op}",
                ).trade_id
            else:
                source, destination = rng.sample(names, 2)
                entry_id = cem.perform_credit_swap(
                    source,
                    destination,
                    rng.randint(1, 5_000),
                    actor="root",
                    idempotency_key=f"w{seed}-{op}",
                ).entry.id
        except ExchangeError:
            refused += 1
            continue
        acknowledged.append(entry_id)
    # what the store holds of each acknowledged entry, read once the work is done
    entries = {e.id: e for e in ledger.entries()}
    ledger.close()
    return [entries[i] for i in acknowledged], refused


def seed_store(url: str, config: Path) -> dict[str, int]:
    upgrade(url)
    tiers = load_config(config)
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    ledger = Ledger(SqlStore(url), clock)
    tiers.open_accounts(ledger)
    cem = CreditExchange(ledger, tiers, clock)
    grants = []
    for tier in tiers.tiers():
        asset = f"credits:{tier.name}"
        grants.append(Transfer(mint_account(asset), pool_account(tier.name), 2_000_000))
        for instance in tiers.instances(tier.name):
            grants.append(Transfer(mint_account(asset), f"instance:{instance.id}:credits", 300_000))
            cem.deposit_funds(instance.id, 200_000, actor="root")
    ledger.post(EntryRequest(tuple(grants), "grant", "root"))
    balances = ledger.balances()
    ledger.close()
    return balances


def run_workers(url: str, tmp_path: Path) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(CONFIG)
    initial = seed_store(url, config)
    # Each worker thread has its own engine and connections, as separate processes would.
    with ThreadPoolExecutor(WORKERS) as pool:
        reports = list(pool.map(lambda n: worker(url, config, n), range(WORKERS)))
    acknowledged = [entry for entries, _ in reports for entry in entries]
    assert sum(len(entries) + refused for entries, refused in reports) == WORKERS * OPERATIONS
    # Most operations must have gone through, or the test proves little.
    assert len(acknowledged) > WORKERS * OPERATIONS // 2

    ledger = Ledger(SqlStore(url), ManualClock(datetime(2026, 1, 1, tzinfo=UTC)))
    expected: defaultdict[str, int] = defaultdict(int, initial)
    for entry in acknowledged:
        for t in entry.transfers:
            expected[t.source] -= t.amount
            expected[t.destination] += t.amount
    assert ledger.balances() == dict(expected), "an update was lost or applied twice"

    journal = Counter(e.id for e in ledger.store.journal())
    assert all(journal[entry.id] == 1 for entry in acknowledged)
    setup_entries = 1 + 16
    assert sum(journal.values()) == len(acknowledged) + setup_entries

    report = ledger.verify()
    assert report.ok, report
    funds = {a: b for a, b in ledger.balances().items() if a.endswith(":funds") and b > 0}
    assert sum(funds.values()) == 16 * 200_000
    ledger.close()


@pytest.mark.slow
def test_concurrent_workers_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    run_workers(sqlite_url, tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_workers_on_postgres(pg_url: str, tmp_path: Path) -> None:
    run_workers(pg_url, tmp_path)
