"""Scenarios: the fleet's tiers, sizes, hosts, market and forecast settings.

:func:`load_scenario` reads a TOML file (the standard scenario when none is given,
``standard_scenario.toml`` beside this module, documented in ``docs/scenario.md``).
:func:`assign_fleet` gives each instance of a trace its tier: instances sorted by id,
tiers round-robin in the scenario's order.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

from data.forecasts import MEDIAN_COL, UPPER_COL
from pipelines.replay.errors import ScenarioError

_PATH = Path(__file__).resolve().parent / "standard_scenario.toml"
_SECTIONS = {"fleet", "tiers", "market", "forecast", "cem", "owners"}
_SCENARIOS = Path(__file__).resolve().parent / "scenarios"
_QUANTILES = (MEDIAN_COL, UPPER_COL)
_CANDIDATES = ("naive", "seasonal_naive", "lightgbm")


def _decimal(field: str, value: object, *, low: Decimal, high: Decimal) -> Decimal:
    if isinstance(value, bool | float):
        raise ScenarioError(field, value, 'give it as a decimal string such as "0.5"')
    try:
        number = Decimal(value) if isinstance(value, str | int) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or not low <= number <= high:
        raise ScenarioError(field, value, f"must be a decimal number in {low}..{high}")
    return number


def _int(field: str, value: object, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ScenarioError(field, value, f"must be an int in {low}..{high}")
    return value


@dataclass(frozen=True, slots=True)
class TierSpec:
    """One tier of a scenario: baseline percent per vCPU and starting exchange rate."""

    name: str
    baseline_pct: Decimal
    exchange_rate: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerValues:
    """What each owner puts on a throttled vCPU-minute (minor units per credit).

    One value for every owner (``value``), a value per tier (``tiers``, tier name to
    value; tiers not named take ``value``), or a seeded lognormal draw
    (``median``, ``sigma``, ``seed``), and per-instance values over any of them
    (``instances``).
    """

    value: int = 100
    tiers: tuple[tuple[str, int], ...] = ()
    median: int | None = None
    sigma: Decimal = Decimal(1)
    seed: int = 0
    instances: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        _int("owners.value", self.value, low=1, high=10**9)
        for name, value in self.tiers:
            _int(f"owners.tiers.{name}", value, low=1, high=10**9)
        for name, value in self.instances:
            _int(f"owners.instances.{name}", value, low=1, high=10**9)
        if self.median is not None:
            _int("owners.median", self.median, low=1, high=10**9)
            if self.tiers:
                raise ScenarioError("owners", "median and tiers", "give one or the other")
        if not 0 <= self.sigma <= 5:
            raise ScenarioError("owners.sigma", self.sigma, "must lie in 0..5")
        _int("owners.seed", self.seed, low=0, high=2**32 - 1)

    def of(self, instance_ids: Sequence[str], tiers: Sequence[str]) -> np.ndarray:
        """Return the owners' values of ``instance_ids`` (whose tiers are ``tiers``).

        A lognormal draw gives each instance, sorted by id, one draw of a generator seeded
        with ``seed``, so an instance keeps its value whatever else is in the fleet's order.
        """
        by_tier = dict(self.tiers)
        values = np.array([by_tier.get(t, self.value) for t in tiers], dtype=np.int64)
        if self.median is not None:
            order = np.argsort(np.asarray(instance_ids, dtype=str), kind="stable")
            draws = np.random.default_rng(self.seed).lognormal(
                0.0, float(self.sigma), len(instance_ids)
            )
            drawn = np.empty(len(instance_ids))
            drawn[order] = draws
            values = np.maximum(1, np.rint(self.median * drawn)).astype(np.int64)
        overrides = dict(self.instances)
        for i, iid in enumerate(instance_ids):
            if iid in overrides:
                values[i] = overrides[iid]
        return values


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """Everything a replay needs besides the telemetry.

    Parameters
    ----------
    tiers
        The tiers, in the round-robin order instances are assigned to them.
    vcpus
        vCPUs of every instance.
    starting_balance_share
        Each instance starts with this share of its balance cap.
    physical_vcpus_per_vcpu
        Physical vCPUs of each tier's hosts per instance vCPU in the tier.
    fee_bps
        The market's fee, basis points of each trade's value, paid by the buyer.
    starting_funds
        Minor units each instance holds to buy credits with.
    throttle_cost
        What one throttled vCPU-minute costs an owner where ``owners`` sets no value.
    owners
        Each owner's value of a throttled vCPU-minute (:class:`OwnerValues`): what the
        value-weighted figures weigh throttling by and what the agents price from.
    risk_quantile
        The forecast quantile agents buy for.
    retrain_every_hours, horizon_hours, candidates
        The forecast cadence: refit every so many hours on the telemetry before the
        refit, forecast ``horizon_hours`` ahead every hour, from these candidates.
    cem_automatic_rates
        Whether the CEM automation moves the exchange rates with forecast demand; when
        false the starting rates stay, as if an administrator had set them.
    cem_reserve_bps, cem_gain_bps, cem_max_step_bps
        The CEM automation's reserve (basis points of a source pool's own forecast
        demand), rate gain and largest rate step per hour
        (:class:`market.cem.automation.CemPolicy`).
    """

    tiers: tuple[TierSpec, ...]
    vcpus: int = 2
    starting_balance_share: Decimal = Decimal("0.5")
    physical_vcpus_per_vcpu: Decimal = Decimal("0.6")
    fee_bps: int = 20
    starting_funds: int = 1_000_000
    throttle_cost: int = 100
    risk_quantile: str = UPPER_COL
    retrain_every_hours: int = 24
    horizon_hours: int = 24
    candidates: tuple[str, ...] = ("naive", "seasonal_naive")
    cem_reserve_bps: int = 1_000
    cem_gain_bps: int = 1_000
    cem_max_step_bps: int = 500
    cem_automatic_rates: bool = True
    owners: OwnerValues | None = None

    @property
    def owner_values(self) -> OwnerValues:
        """Return the owners' values; one value, ``throttle_cost``, when none is set."""
        return self.owners or OwnerValues(value=self.throttle_cost)

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ScenarioError("tiers", self.tiers, "a scenario needs at least one tier")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ScenarioError("tiers", names, "tier names must be unique")
        _int("vcpus", self.vcpus, low=1, high=4096)
        _int("fee_bps", self.fee_bps, low=0, high=9_999)
        _int("starting_funds", self.starting_funds, low=0, high=10**15)
        _int("throttle_cost", self.throttle_cost, low=1, high=10**9)
        _int("retrain_every_hours", self.retrain_every_hours, low=1, high=24 * 365)
        _int("horizon_hours", self.horizon_hours, low=1, high=168)
        _int("cem_reserve_bps", self.cem_reserve_bps, low=0, high=10**6)
        _int("cem_gain_bps", self.cem_gain_bps, low=1, high=10**6)
        _int("cem_max_step_bps", self.cem_max_step_bps, low=1, high=9_999)
        if not isinstance(self.cem_automatic_rates, bool):
            raise ScenarioError(
                "cem.automatic_rates", self.cem_automatic_rates, "must be true or false"
            )
        if self.risk_quantile not in _QUANTILES:
            raise ScenarioError("risk_quantile", self.risk_quantile, f"must be one of {_QUANTILES}")
        unknown = sorted(set(self.candidates) - set(_CANDIDATES))
        if unknown or not self.candidates:
            raise ScenarioError("candidates", self.candidates, f"must be a subset of {_CANDIDATES}")
        if not 0 <= self.starting_balance_share <= 1:
            raise ScenarioError(
                "starting_balance_share", self.starting_balance_share, "must lie in 0..1"
            )
        if not 0 < self.physical_vcpus_per_vcpu <= 64:
            raise ScenarioError(
                "physical_vcpus_per_vcpu", self.physical_vcpus_per_vcpu, "must lie in (0, 64]"
            )


def scenario_from_mapping(document: Mapping[str, Any]) -> Scenario:
    """Build a :class:`Scenario` from the parsed contents of a scenario file.

    Raises
    ------
    ScenarioError
        For an unknown section or key, or a value out of range.
    """
    unknown = sorted(set(document) - _SECTIONS)
    if unknown:
        raise ScenarioError("sections", unknown, f"unknown; expected some of {sorted(_SECTIONS)}")
    tiers = tuple(_tier(i, spec) for i, spec in enumerate(document.get("tiers", [])))
    fields: dict[str, Any] = {"tiers": tiers}
    allowed = {
        "fleet": {"vcpus", "starting_balance_share", "physical_vcpus_per_vcpu"},
        "market": {"fee_bps", "starting_funds", "throttle_cost", "risk_quantile"},
        "forecast": {"retrain_every_hours", "horizon_hours", "candidates"},
        "cem": {"reserve_bps", "gain_bps", "max_step_bps", "automatic_rates"},
    }
    if "owners" in document:
        fields["owners"] = _owners(document["owners"])
    for section, keys in allowed.items():
        values = document.get(section, {})
        if not isinstance(values, Mapping):
            raise ScenarioError(section, values, "must be a table")
        extra = sorted(set(values) - keys)
        if extra:
            raise ScenarioError(
                f"{section}.{extra[0]}",
                values[extra[0]],
                f"unknown key; expected some of {sorted(keys)}",
            )
        prefix = "cem_" if section == "cem" else ""
        fields.update({prefix + k: v for k, v in values.items()})
    for key in ("starting_balance_share", "physical_vcpus_per_vcpu"):
        if key in fields:
            fields[key] = _decimal(key, fields[key], low=Decimal(0), high=Decimal(64))
    if "candidates" in fields:
        fields["candidates"] = tuple(fields["candidates"])
    return Scenario(**fields)


def _tier(i: int, spec: object) -> TierSpec:
    if not isinstance(spec, Mapping) or set(spec) != {"name", "baseline_pct", "exchange_rate"}:
        raise ScenarioError(
            f"tiers[{i}]", spec, "needs exactly name, baseline_pct and exchange_rate"
        )
    name = spec["name"]
    if not isinstance(name, str) or not name or ":" in name:
        raise ScenarioError(f"tiers[{i}].name", name, "must be a non-empty string without ':'")
    return TierSpec(
        name,
        _decimal(
            f"tiers[{i}].baseline_pct",
            spec["baseline_pct"],
            low=Decimal("0.01"),
            high=Decimal(100),
        ),
        _decimal(
            f"tiers[{i}].exchange_rate",
            spec["exchange_rate"],
            low=Decimal("0.000001"),
            high=Decimal(1000),
        ),
    )


def _owners(section: object) -> OwnerValues:
    if not isinstance(section, Mapping):
        raise ScenarioError("owners", section, "must be a table")
    keys = {"value", "tiers", "median", "sigma", "seed", "instances"}
    extra = sorted(set(section) - keys)
    if extra:
        raise ScenarioError(
            f"owners.{extra[0]}", section[extra[0]], f"unknown key; expected some of {sorted(keys)}"
        )
    fields: dict[str, Any] = {k: section[k] for k in ("value", "median", "seed") if k in section}
    for key in ("tiers", "instances"):
        table = section.get(key, {})
        if not isinstance(table, Mapping):
            raise ScenarioError(f"owners.{key}", table, "must be a table of name = value")
        fields[key] = tuple((str(k), v) for k, v in table.items())
    if "sigma" in section:
        fields["sigma"] = _decimal(
            "owners.sigma", section["sigma"], low=Decimal(0), high=Decimal(5)
        )
    return OwnerValues(**fields)


def scenario_names() -> tuple[str, ...]:
    """Return the names of the scenarios shipped beside the standard one."""
    return ("standard", *sorted(p.stem for p in _SCENARIOS.glob("*.toml")))


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Read a scenario file, or a shipped scenario by name; the standard one for ``None``.

    ``path`` may name a shipped scenario (``"scarce-values"``, see
    :func:`scenario_names`) instead of a file.

    Raises
    ------
    ScenarioError
        If the file cannot be read, is not TOML, or holds an invalid scenario.
    """
    source = Path(path) if path is not None else _PATH
    if path is not None and str(path) in scenario_names():
        source = _PATH if str(path) == "standard" else _SCENARIOS / f"{path}.toml"
    try:
        document = tomllib.loads(source.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError("file", str(source), f"cannot be read: {exc}") from exc
    return scenario_from_mapping(document)


def assign_fleet(instance_ids: Sequence[str], scenario: Scenario) -> dict[str, str]:
    """Return each instance's tier: ids sorted, tiers round-robin in the scenario's order."""
    names = [t.name for t in scenario.tiers]
    return {iid: names[i % len(names)] for i, iid in enumerate(sorted(instance_ids))}
