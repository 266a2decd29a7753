"""The Resource Tier Manager: defaults, config loading, pools and their capacity."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from market.cem.registry import Registry
from market.cem.tiers import (
    Host,
    Instance,
    format_rate,
    load_config,
    parse_decimal,
    rate_to_micro,
)
from market.clock import ManualClock
from market.errors import (
    ConfigError,
    DuplicateId,
    HostNotFound,
    InstanceNotFound,
    InvalidParameter,
    TierNotFound,
)
from market.ledger import EntryRequest, Ledger, MemoryStore, Transfer
from market.migrations import upgrade


def test_defaults_are_aws_like() -> None:
    tiers = load_config()
    assert [t.name for t in tiers.tiers()] == ["bronze", "silver", "gold", "platinum"]
    assert [t.baseline_bps for t in tiers.tiers()] == [500, 1000, 2000, 4000]
    assert [format_rate(t.exchange_rate) for t in tiers.tiers()] == ["1", "1.5", "2.2", "3.5"]
    silver = tiers.tier("silver")
    # A t3.micro: 2 vCPUs at a 10 % baseline earn 12 credits an hour and hold at most 288.
    assert silver.hourly_earnings(2) == 12_000
    assert silver.balance_cap(2) == 288_000
    assert silver.hardware.ssd == "nvme"
    assert tiers.instance("vm-platinum-1").pool_draw is False
    assert tiers.exchange.fee_bps == 20


def test_pool_capacity_is_spare_host_capacity() -> None:
    tiers = load_config()
    gold = tiers.tier("gold")
    hosts = sum(h.vcpus for h in tiers.hosts("gold"))
    reserved = sum(i.vcpus for i in tiers.instances("gold")) * gold.baseline_bps / 10_000
    expected = (hosts - reserved) * 60 * 24 * 1000
    assert tiers.pool_capacity("gold") == expected
    tiers.assign_host(Host("gold-h2", "gold", 16))
    assert tiers.pool_capacity("gold") == expected + 16 * 60 * 24 * 1000
    # Oversubscribed: more baseline than hosts hold leaves no room at all.
    for n in range(200):
        tiers.add_instance(Instance(f"big-{n}", "gold", 8, "o"))
    assert tiers.pool_capacity("gold") == 0


def test_pools_read_available_credits_from_the_ledger(clock: ManualClock) -> None:
    tiers = load_config()
    ledger = Ledger(MemoryStore(), clock)
    tiers.open_accounts(ledger)
    ledger.post(
        EntryRequest((Transfer("mint:credits:silver", "pool:silver", 4_500),), "grant", "t")
    )
    pools = {p.tier: p for p in tiers.pools(ledger)}
    assert pools["silver"].available == 4_500
    assert pools["silver"].headroom == tiers.pool_capacity("silver") - 4_500
    assert pools["bronze"].available == 0
    assert tiers.pool(ledger, "silver") == pools["silver"]


def test_unknown_and_duplicate_ids() -> None:
    tiers = load_config()
    with pytest.raises(TierNotFound, match="'diamond'"):
        tiers.tier("diamond")
    with pytest.raises(HostNotFound, match="'nope'"):
        tiers.host("nope")
    with pytest.raises(InstanceNotFound, match="'nope'"):
        tiers.instance("nope")
    with pytest.raises(TierNotFound):
        tiers.assign_host(Host("h9", "diamond", 4))
    with pytest.raises(DuplicateId, match="instance 'vm-gold-1'"):
        tiers.add_instance(Instance("vm-gold-1", "gold", 2, "o"))
    with pytest.raises(InvalidParameter, match="instance vcpus"):
        Instance("x", "gold", 0, "o")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.5, "not a float"),
        ("nan", "finite"),
        ("-1", "positive"),
        ("0", "positive"),
        ("1.0000001", "more than 6 decimal places"),
        ("abc", "finite decimal"),
    ],
)
def test_rates_are_exact_decimals(value: object, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        rate_to_micro(value)


def test_rate_conversion_is_exact() -> None:
    assert rate_to_micro("2.2") == 2_200_000
    assert rate_to_micro(Decimal("0.000001")) == 1
    assert format_rate(rate_to_micro("3.141592")) == "3.141592"
    assert parse_decimal("x", "2.50", 2) == Decimal("2.5")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[tiers]]\nname = 'x'\n", "missing"),
        (
            "[[tiers]]\nname = 'x'\ncpu_ghz = 1\nmemory_gib_per_vcpu = 1\nssd = 's'\n"
            "network_gbps = 1\nbaseline_pct = 'nan'\nexchange_rate = 1\n",
            "baseline_pct",
        ),
        ("[[hosts]]\nid = 'h'\ntier = 'ghost'\nvcpus = 4\n", "unknown tier 'ghost'"),
        ("not = [toml", "cannot read"),
        ("[surprise]\n", "unknown sections"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tiers.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_registry_round_trip_keeps_audited_rates(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    registry = Registry(sqlite_url)
    tiers = load_config()
    registry.save(tiers)
    loaded = registry.load()
    assert loaded.tiers() == tiers.tiers()
    assert loaded.hosts() == sorted(tiers.hosts(), key=lambda h: h.id)
    assert {i.id: i for i in loaded.instances()} == {i.id: i for i in tiers.instances()}
    assert loaded.exchange == tiers.exchange
    # Saving a config again never resets a rate stored before.
    from datetime import UTC, datetime

    from market.cem.exchange import RateChange

    registry.record_rate_change(
        RateChange(
            "gold", 2_200_000, 2_600_000, "admin", "demand", datetime(2026, 1, 1, tzinfo=UTC)
        )
    )
    registry.save(load_config())
    assert registry.load().tier("gold").exchange_rate == 2_600_000
    assert [c.new_rate for c in registry.rate_changes("gold")] == [2_600_000]
    registry.close()
