"""Persistence of the Resource Tier Manager in the creditx SQL store: tiers, hosts,
instances, the CEM's settings, and the audit trail of exchange-rate changes."""

from __future__ import annotations

import json
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from market.cem.exchange import RateChange
from market.cem.tiers import ExchangeConfig, HardwareProfile, Host, Instance, Tier, TierManager
from market.clock import from_micros, to_micros
from market.errors import TierNotFound
from market.ledger import create_store_engine, read_connection
from market.schema import metadata

tiers_table = sa.Table(
    "rtm_tiers",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("cpu_ghz", sa.String(40), nullable=False),
    sa.Column("memory_gib_per_vcpu", sa.String(40), nullable=False),
    sa.Column("ssd", sa.String(40), nullable=False),
    sa.Column("network_gbps", sa.String(40), nullable=False),
    sa.Column("baseline_bps", sa.Integer, nullable=False),
    sa.Column("exchange_rate", sa.BigInteger, nullable=False),
    sa.Column("pool_horizon_hours", sa.Integer, nullable=False),
)
hosts_table = sa.Table(
    "rtm_hosts",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("tier", sa.String(100), sa.ForeignKey("rtm_tiers.name"), nullable=False),
    sa.Column("vcpus", sa.Integer, nullable=False),
)
instances_table = sa.Table(
    "rtm_instances",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("tier", sa.String(100), sa.ForeignKey("rtm_tiers.name"), nullable=False),
    sa.Column("vcpus", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("pool_draw", sa.Boolean, nullable=False),
)
settings_table = sa.Table(
    "rtm_settings",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
rate_changes_table = sa.Table(
    "rtm_rate_changes",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("tier", sa.String(100), sa.ForeignKey("rtm_tiers.name"), nullable=False),
    sa.Column("old_rate", sa.BigInteger, nullable=False),
    sa.Column("new_rate", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("changed_at_us", sa.BigInteger, nullable=False),
)


class Registry:
    """The tiers, hosts, instances and rate audit of one creditx store.

    Create its tables with ``market.migrations.upgrade``.
    """

    def __init__(self, url_or_engine: str | Engine) -> None:
        self.engine = (
            create_store_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        )

    def save(self, tiers: TierManager) -> None:
        """Store a fleet definition; tiers already stored keep their exchange rate.

        Exchange rates change only through audited ``record_rate_change`` calls, so
        loading a config again never silently resets them.
        """
        with self.engine.begin() as conn:
            stored_rates = dict(
                conn.execute(sa.select(tiers_table.c.name, tiers_table.c.exchange_rate)).all()
            )
            conn.execute(instances_table.delete())
            conn.execute(hosts_table.delete())
            conn.execute(settings_table.delete())
            kept = [t.name for t in tiers.tiers()]
            conn.execute(tiers_table.delete().where(tiers_table.c.name.not_in(kept)))
            for position, t in enumerate(tiers.tiers()):
                row = {
                    "position": position,
                    "cpu_ghz": str(t.hardware.cpu_ghz),
                    "memory_gib_per_vcpu": str(t.hardware.memory_gib_per_vcpu),
                    "ssd": t.hardware.ssd,
                    "network_gbps": str(t.hardware.network_gbps),
                    "baseline_bps": t.baseline_bps,
                    "pool_horizon_hours": t.pool_horizon_hours,
                }
                if t.name in stored_rates:
                    conn.execute(
                        tiers_table.update().where(tiers_table.c.name == t.name).values(**row)
                    )
                else:
                    conn.execute(
                        tiers_table.insert().values(
                            name=t.name, exchange_rate=t.exchange_rate, **row
                        )
                    )
            hosts = [{"id": h.id, "tier": h.tier, "vcpus": h.vcpus} for h in tiers.hosts()]
            if hosts:
                conn.execute(hosts_table.insert(), hosts)
            instances = [
                {
                    "id": i.id,
                    "tier": i.tier,
                    "vcpus": i.vcpus,
                    "owner": i.owner,
                    "pool_draw": i.pool_draw,
                }
                for i in tiers.instances()
            ]
            if instances:
                conn.execute(instances_table.insert(), instances)
            conn.execute(
                settings_table.insert(),
                [
                    {"key": "fee_bps", "value": json.dumps(tiers.exchange.fee_bps)},
                    {
                        "key": "administrators",
                        "value": json.dumps(sorted(tiers.exchange.administrators)),
                    },
                ],
            )

    def add_instances(self, instances: list[Instance]) -> list[Instance]:
        """Store the instances not stored yet and return them; stored ones are kept as they are.

        Each instance's tier must be stored already.
        """
        with self.engine.begin() as conn:
            stored = set(conn.execute(sa.select(instances_table.c.id)).scalars())
            tiers = set(conn.execute(sa.select(tiers_table.c.name)).scalars())
            added = [i for i in instances if i.id not in stored]
            for instance in added:
                if instance.tier not in tiers:
                    raise TierNotFound(instance.tier)
            if added:
                conn.execute(
                    instances_table.insert(),
                    [
                        {
                            "id": i.id,
                            "tier": i.tier,
                            "vcpus": i.vcpus,
                            "owner": i.owner,
                            "pool_draw": i.pool_draw,
                        }
                        for i in added
                    ],
                )
        return added

    def load(self) -> TierManager:
        """Return the fleet definition stored here (empty if nothing was saved)."""
        with read_connection(self.engine) as conn:
            tier_rows = conn.execute(sa.select(tiers_table).order_by(tiers_table.c.position))
            tiers = [
                Tier(
                    name=r.name,
                    hardware=HardwareProfile(
                        cpu_ghz=Decimal(r.cpu_ghz),
                        memory_gib_per_vcpu=Decimal(r.memory_gib_per_vcpu),
                        ssd=r.ssd,
                        network_gbps=Decimal(r.network_gbps),
                    ),
                    baseline_bps=r.baseline_bps,
                    exchange_rate=r.exchange_rate,
                    pool_horizon_hours=r.pool_horizon_hours,
                )
                for r in tier_rows
            ]
            hosts = [
                Host(r.id, r.tier, r.vcpus)
                for r in conn.execute(sa.select(hosts_table).order_by(hosts_table.c.id))
            ]
            instances = [
                Instance(r.id, r.tier, r.vcpus, r.owner, bool(r.pool_draw))
                for r in conn.execute(sa.select(instances_table).order_by(instances_table.c.id))
            ]
            settings = {r.key: json.loads(r.value) for r in conn.execute(sa.select(settings_table))}
        exchange = ExchangeConfig(
            fee_bps=settings.get("fee_bps", 20),
            administrators=frozenset(settings.get("administrators", ["admin"])),
        )
        return TierManager(tiers, hosts, instances, exchange)

    def record_rate_change(self, change: RateChange) -> None:
        """Store a tier's new exchange rate and its audit record in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(
                tiers_table.update()
                .where(tiers_table.c.name == change.tier)
                .values(exchange_rate=change.new_rate)
            )
            conn.execute(
                rate_changes_table.insert().values(
                    tier=change.tier,
                    old_rate=change.old_rate,
                    new_rate=change.new_rate,
                    actor=change.actor,
                    reason=change.reason,
                    changed_at_us=to_micros(change.changed_at),
                )
            )

    def rate_changes(self, tier: str | None = None) -> list[RateChange]:
        """Return the recorded exchange-rate changes, of one tier if given, oldest first."""
        query = sa.select(rate_changes_table).order_by(rate_changes_table.c.seq)
        if tier is not None:
            query = query.where(rate_changes_table.c.tier == tier)
        with read_connection(self.engine) as conn:
            return [
                RateChange(
                    r.tier,
                    r.old_rate,
                    r.new_rate,
                    r.actor,
                    r.reason,
                    from_micros(r.changed_at_us),
                )
                for r in conn.execute(query)
            ]

    def close(self) -> None:
        """Release the engine."""
        self.engine.dispose()
