"""The Resource Tier Manager (RTM): tiers, the hosts assigned to them, their instances,
and each tier's credit pool.

Units
-----
* ``baseline_bps``: the per-vCPU baseline in basis points of one vCPU (10 % = 1000).
* ``exchange_rate``: integer micro-units of value per credit (1.5 = 1_500_000).
* Credits: integer milli-credits; one credit is one vCPU at 100 % for one minute, so a
  tier earns ``baseline_bps * 6`` milli-credits per vCPU-hour (t3.micro: 2 vCPUs at
  10 % earn 12 credits an hour) and caps a balance at 24 hours of earnings.
* A pool's capacity is its hosts' spare physical capacity: the vCPU-minutes the hosts
  hold beyond their instances' baselines, over the tier's pool horizon (24 h default).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from market.errors import (
    ConfigError,
    DuplicateId,
    HostNotFound,
    InstanceNotFound,
    InvalidParameter,
    TierNotFound,
)
from market.ledger import (
    FEES_ACCOUNT,
    FUNDS,
    AccountKind,
    Ledger,
    burn_account,
    conversion_account,
    credits_asset,
    instance_credits,
    instance_funds,
    mint_account,
    pool_account,
    rounding_account,
)
from market.units import BPS, MILLI_PER_CREDIT

MICRO = 1_000_000
VALUE = "value"
"""The asset swaps are valued in: milli-credits times micro-units of exchange rate."""

_MAX_VCPUS = 4096
_MAX_RATE = 1_000 * MICRO
_MAX_DECIMAL = Decimal(10**9)


POOL_REVENUE_ACCOUNT = "revenue:pools:funds"
"""The provider's account for what the tiers' pools sell (asset ``funds``)."""


def _positive_int(name: str, value: object, upper: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(name, value, "must be an int")
    if not 0 < value <= upper:
        raise InvalidParameter(name, value, f"must lie in 1..{upper}")
    return value


def _name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value or ":" in value or value != value.strip():
        raise InvalidParameter(f"{kind} id", value, "must be a non-empty string without ':'")
    return value


def parse_decimal(name: str, value: object, places: int) -> Decimal:
    """Return ``value`` (str, int or Decimal; never float) as a finite positive Decimal.

    Raises
    ------
    InvalidParameter
        For floats, NaN, infinity, non-positive values or more than ``places`` decimals.
    """
    if isinstance(value, bool | float):
        raise InvalidParameter(name, value, "give it as a string or an int, not a float")
    try:
        number = Decimal(value) if isinstance(value, str | int | Decimal) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise InvalidParameter(name, value, "must be a finite decimal number")
    if number <= 0:
        raise InvalidParameter(name, value, "must be positive")
    if number > _MAX_DECIMAL:
        raise InvalidParameter(name, value, f"exceeds {_MAX_DECIMAL}")
    if number != number.quantize(Decimal(1).scaleb(-places)):
        raise InvalidParameter(name, value, f"has more than {places} decimal places")
    return number


def rate_to_micro(value: object) -> int:
    """Return an exchange rate as integer micro-units: ``"1.5"`` or ``1_500_000`` ints.

    Strings and Decimals are rates (``"1.5"``); ints are already micro-units.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return _positive_int("exchange rate (micro-units)", value, _MAX_RATE)
    micro = int(parse_decimal("exchange rate", value, 6) * MICRO)
    return _positive_int("exchange rate (micro-units)", micro, _MAX_RATE)


def format_rate(micro: int) -> str:
    """Return integer micro-units as a decimal string, e.g. ``1_500_000 -> "1.5"``."""
    return str((Decimal(micro) / MICRO).normalize())


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareProfile:
    """The physical hardware class of a tier."""

    cpu_ghz: Decimal
    memory_gib_per_vcpu: Decimal
    ssd: str
    network_gbps: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Tier:
    """A resource tier: hardware, per-vCPU baseline, exchange rate and pool horizon."""

    name: str
    hardware: HardwareProfile
    baseline_bps: int
    exchange_rate: int
    pool_horizon_hours: int = 24

    def __post_init__(self) -> None:
        _name("tier", self.name)
        _positive_int("baseline_bps", self.baseline_bps, BPS)
        _positive_int("exchange_rate", self.exchange_rate, _MAX_RATE)
        _positive_int("pool_horizon_hours", self.pool_horizon_hours, 24 * 365)

    @property
    def earn_rate(self) -> int:
        """Return the milli-credits one vCPU earns per hour at this tier's baseline."""
        return self.baseline_bps * 60 * MILLI_PER_CREDIT // BPS

    def hourly_earnings(self, vcpus: int) -> int:
        """Return the milli-credits an instance of ``vcpus`` earns per hour."""
        return vcpus * self.earn_rate

    def balance_cap(self, vcpus: int) -> int:
        """Return the most milli-credits an instance may hold: 24 hours of earnings."""
        return 24 * self.hourly_earnings(vcpus)

    @property
    def asset(self) -> str:
        """Return the ledger asset of this tier's credits."""
        return credits_asset(self.name)


@dataclass(frozen=True, slots=True)
class Host:
    """A physical host assigned to a tier."""

    id: str
    tier: str
    vcpus: int

    def __post_init__(self) -> None:
        _name("host", self.id)
        _positive_int("host vcpus", self.vcpus, _MAX_VCPUS)


@dataclass(frozen=True, slots=True)
class Instance:
    """A burstable instance: its tier, size, owner, and whether it may draw on the pool."""

    id: str
    tier: str
    vcpus: int
    owner: str
    pool_draw: bool = True

    def __post_init__(self) -> None:
        _name("instance", self.id)
        _positive_int("instance vcpus", self.vcpus, _MAX_VCPUS)
        if not isinstance(self.owner, str) or not self.owner:
            raise InvalidParameter("owner", self.owner, "must be a non-empty string")


@dataclass(frozen=True, slots=True)
class Pool:
    """A tier's credit pool as the ledger and the hosts see it now."""

    tier: str
    available: int
    capacity: int
    exchange_rate: int

    @property
    def headroom(self) -> int:
        """Return how many more milli-credits the pool can take."""
        return max(0, self.capacity - self.available)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeConfig:
    """The CEM's settings: its trade fee and who may act as an administrator."""

    fee_bps: int = 20
    administrators: frozenset[str] = field(default_factory=lambda: frozenset({"admin"}))

    def __post_init__(self) -> None:
        if isinstance(self.fee_bps, bool) or not isinstance(self.fee_bps, int):
            raise InvalidParameter("fee_bps", self.fee_bps, "must be an int")
        if not 0 <= self.fee_bps < BPS:
            raise InvalidParameter("fee_bps", self.fee_bps, f"must lie in 0..{BPS - 1}")


class TierManager:
    """The tiers, hosts and instances of a fleet, and the capacity of each tier's pool."""

    def __init__(
        self,
        tiers: Iterable[Tier],
        hosts: Iterable[Host] = (),
        instances: Iterable[Instance] = (),
        exchange: ExchangeConfig | None = None,
    ) -> None:
        self._tiers: dict[str, Tier] = {}
        self._hosts: dict[str, Host] = {}
        self._instances: dict[str, Instance] = {}
        self.exchange = exchange or ExchangeConfig()
        for tier in tiers:
            self.add_tier(tier)
        for host in hosts:
            self.assign_host(host)
        for instance in instances:
            self.add_instance(instance)

    # definitions

    def add_tier(self, tier: Tier) -> Tier:
        """Define a tier."""
        if tier.name in self._tiers:
            raise DuplicateId("tier", tier.name)
        self._tiers[tier.name] = tier
        return tier

    def assign_host(self, host: Host) -> Host:
        """Assign a physical host to its tier."""
        self.tier(host.tier)
        if host.id in self._hosts:
            raise DuplicateId("host", host.id)
        self._hosts[host.id] = host
        return host

    def add_instance(self, instance: Instance) -> Instance:
        """Register an instance in its tier."""
        self.tier(instance.tier)
        if instance.id in self._instances:
            raise DuplicateId("instance", instance.id)
        self._instances[instance.id] = instance
        return instance

    def set_exchange_rate(self, tier: str, exchange_rate: int) -> Tier:
        """Replace a tier's exchange rate (micro-units) and return the updated tier."""
        updated = replace(self.tier(tier), exchange_rate=exchange_rate)
        self._tiers[tier] = updated
        return updated

    # lookups

    def tier(self, name: str) -> Tier:
        """Return a tier by name, or raise ``TierNotFound``."""
        try:
            return self._tiers[name]
        except (KeyError, TypeError):
            raise TierNotFound(str(name)) from None

    def host(self, host_id: str) -> Host:
        """Return a host by id, or raise ``HostNotFound``."""
        try:
            return self._hosts[host_id]
        except (KeyError, TypeError):
            raise HostNotFound(str(host_id)) from None

    def instance(self, instance_id: str) -> Instance:
        """Return an instance by id, or raise ``InstanceNotFound``."""
        try:
            return self._instances[instance_id]
        except (KeyError, TypeError):
            raise InstanceNotFound(str(instance_id)) from None

    def tiers(self) -> list[Tier]:
        """Return every tier in definition order."""
        return list(self._tiers.values())

    def hosts(self, tier: str | None = None) -> list[Host]:
        """Return the hosts, of one tier if given."""
        if tier is not None:
            self.tier(tier)
        return [h for h in self._hosts.values() if tier is None or h.tier == tier]

    def instances(self, tier: str | None = None) -> list[Instance]:
        """Return the instances, of one tier if given."""
        if tier is not None:
            self.tier(tier)
        return [i for i in self._instances.values() if tier is None or i.tier == tier]

    # pools

    def pool_capacity(self, tier: str) -> int:
        """Return the pool capacity of ``tier`` in milli-credits.

        The hosts' vCPUs beyond what the tier's instances hold at baseline, as
        vCPU-minutes over the tier's pool horizon; zero when the tier is oversubscribed.
        """
        spec = self.tier(tier)
        physical = sum(h.vcpus for h in self.hosts(tier)) * BPS
        reserved = sum(i.vcpus for i in self.instances(tier)) * spec.baseline_bps
        spare_bps = max(0, physical - reserved)
        return spare_bps * 60 * spec.pool_horizon_hours * MILLI_PER_CREDIT // BPS

    def pools(self, ledger: Ledger) -> list[Pool]:
        """Return every tier's pool: available credits from the ledger, capacity from hosts."""
        balances = ledger.balances("pool:")
        return [
            Pool(
                tier=t.name,
                available=balances.get(pool_account(t.name), 0),
                capacity=self.pool_capacity(t.name),
                exchange_rate=t.exchange_rate,
            )
            for t in self._tiers.values()
        ]

    def pool(self, ledger: Ledger, tier: str) -> Pool:
        """Return one tier's pool."""
        spec = self.tier(tier)
        return Pool(
            tier=tier,
            available=ledger.balance(pool_account(tier)),
            capacity=self.pool_capacity(tier),
            exchange_rate=spec.exchange_rate,
        )

    def open_accounts(self, ledger: Ledger) -> None:
        """Open every ledger account the fleet needs; already open ones stay as they are."""
        definitions: list[tuple[str, str, AccountKind]] = [
            (mint_account(FUNDS), FUNDS, AccountKind.MINT),
            (burn_account(FUNDS), FUNDS, AccountKind.BURN),
            (FEES_ACCOUNT, FUNDS, AccountKind.FEES),
            (POOL_REVENUE_ACCOUNT, FUNDS, AccountKind.FEES),
            (conversion_account(VALUE), VALUE, AccountKind.CONVERSION),
            (rounding_account(VALUE), VALUE, AccountKind.ROUNDING),
        ]
        for t in self._tiers.values():
            definitions += [
                (pool_account(t.name), t.asset, AccountKind.POOL),
                (mint_account(t.asset), t.asset, AccountKind.MINT),
                (burn_account(t.asset), t.asset, AccountKind.BURN),
                (conversion_account(t.asset), t.asset, AccountKind.CONVERSION),
            ]
        for i in self._instances.values():
            definitions += [
                (instance_credits(i.id), self._tiers[i.tier].asset, AccountKind.INSTANCE),
                (instance_funds(i.id), FUNDS, AccountKind.INSTANCE),
            ]
        ledger.open_accounts(definitions)


# configuration


def default_config_path() -> Path:
    """Return the path of the built-in default tier configuration."""
    return Path(__file__).resolve().parent / "default_tiers.toml"


def load_config(path: Path | None = None) -> TierManager:
    """Build a ``TierManager`` from a TOML file (the built-in defaults when ``None``).

    Raises
    ------
    ConfigError
        When the file is missing, is not TOML, or defines something invalid; the
        message names the file and the offending table.
    """
    source = path or default_config_path()
    try:
        document = tomllib.loads(source.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read tier config {source}: {exc}") from exc
    try:
        return config_from_mapping(document)
    except KeyError as exc:
        raise ConfigError(f"invalid tier config {source}: missing key {exc}") from exc
    except (InvalidParameter, DuplicateId, TierNotFound, TypeError) as exc:
        raise ConfigError(f"invalid tier config {source}: {exc}") from exc


def _literal(value: object) -> object:
    # A TOML float is read back exactly as written (1.5 -> "1.5"), never as binary.
    return repr(value) if isinstance(value, float) else value


def config_from_mapping(document: Mapping[str, Any]) -> TierManager:
    """Build a ``TierManager`` from the parsed contents of a tier configuration."""
    unknown = set(document) - {"exchange", "tiers", "hosts", "instances"}
    if unknown:
        raise ConfigError(f"unknown sections {sorted(unknown)}")
    exchange = document.get("exchange", {})
    config = ExchangeConfig(
        fee_bps=exchange.get("fee_bps", 20),
        administrators=frozenset(exchange.get("administrators", ["admin"])),
    )
    tiers = []
    for spec in document.get("tiers", []):
        baseline = parse_decimal("baseline_pct", _literal(spec["baseline_pct"]), 2)
        tiers.append(
            Tier(
                name=spec["name"],
                hardware=HardwareProfile(
                    cpu_ghz=parse_decimal("cpu_ghz", _literal(spec["cpu_ghz"]), 3),
                    memory_gib_per_vcpu=parse_decimal(
                        "memory_gib_per_vcpu", _literal(spec["memory_gib_per_vcpu"]), 3
                    ),
                    ssd=str(spec["ssd"]),
                    network_gbps=parse_decimal("network_gbps", _literal(spec["network_gbps"]), 3),
                ),
                baseline_bps=int(baseline * 100),
                exchange_rate=rate_to_micro(_literal(spec["exchange_rate"])),
                pool_horizon_hours=spec.get("pool_horizon_hours", 24),
            )
        )
    hosts = [Host(h["id"], h["tier"], h["vcpus"]) for h in document.get("hosts", [])]
    instances = [
        Instance(i["id"], i["tier"], i["vcpus"], i["owner"], i.get("pool_draw", True))
        for i in document.get("instances", [])
    ]
    return TierManager(tiers, hosts, instances, config)
