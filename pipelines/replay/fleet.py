"""The replayed fleet: telemetry turned into per-step demand, tiers, hosts and capacity.

Demand is integer milli-credits per 5-minute step (one milli-credit is one
milli-vCPU-minute): ``vcpus * y * 50`` rounded half up, as the live accrual books it
(:func:`~market.cem.accrual.interval_demand`). Instances are held in tier order (tiers
in the scenario's order, ids sorted within a tier), so each tier is one contiguous slice
of every array.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

import numpy as np
import pandas as pd

from market.cem.accrual import cpu_micro_of, interval_demand
from market.cem.tiers import ExchangeConfig, HardwareProfile, Host, Instance, Tier, TierManager
from market.cem.tiers import load_config as load_tier_config
from market.units import MILLI_PER_CREDIT
from pipelines.replay.errors import TraceError
from pipelines.replay.scenario import Scenario, assign_fleet

STEP_SECONDS = 300
STEPS_PER_HOUR = 12
_STEP = pd.Timedelta(seconds=STEP_SECONDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayFleet:
    """A fleet ready to replay: arrays over instances (tier order) and steps.

    Attributes
    ----------
    ids
        Instance ids in tier order.
    tier_names
        The scenario's tiers.
    tier_of
        Each instance's tier index.
    starts
        First instance of each tier (``np.add.reduceat`` offsets).
    demand
        ``(n, steps)`` int64 milli-credits each instance asks for in each step.
    utilisation
        ``(n, steps)`` float64 percent of the instance's vCPUs, as measured.
    vcpus
        vCPUs of each instance.
    earned
        Milli-credits each instance earns per step at its tier's baseline.
    cap
        Each instance's balance cap (24 hours of earnings).
    start_balance
        Each instance's opening balance.
    host_vcpus
        Physical vCPUs of each tier's hosts.
    capacity
        Milli-credits each tier's hosts can serve per step (vCPU-minutes x 1000).
    start
        Start of the first step (UTC).
    value
        Each instance's owner value: minor units one throttled vCPU-minute costs it.
    """

    ids: np.ndarray
    tier_names: tuple[str, ...]
    tier_of: np.ndarray
    starts: np.ndarray
    demand: np.ndarray
    utilisation: np.ndarray
    vcpus: np.ndarray
    earned: np.ndarray
    cap: np.ndarray
    start_balance: np.ndarray
    host_vcpus: np.ndarray
    capacity: np.ndarray
    start: datetime
    tiers: tuple[Tier, ...]
    value: np.ndarray

    @property
    def hours(self) -> int:
        """Return the number of whole hours replayed."""
        return int(self.demand.shape[1]) // STEPS_PER_HOUR

    def tier_manager(self, fee_bps: int) -> TierManager:
        """Return a fresh Resource Tier Manager holding this fleet's tiers, hosts and instances."""
        hosts = [
            Host(f"{name}-hosts", name, int(v))
            for name, v in zip(self.tier_names, self.host_vcpus, strict=True)
        ]
        instances = [
            Instance(str(i), self.tier_names[t], int(v), owner=str(i))
            for i, t, v in zip(self.ids, self.tier_of, self.vcpus, strict=True)
        ]
        exchange = ExchangeConfig(fee_bps=fee_bps, administrators=frozenset({"cem"}))
        return TierManager(self.tiers, hosts, instances, exchange)


def _tiers(scenario: Scenario) -> tuple[Tier, ...]:
    defaults = {t.name: t.hardware for t in load_tier_config().tiers()}
    generic = HardwareProfile(
        cpu_ghz=Decimal("2.5"), memory_gib_per_vcpu=Decimal(2), ssd="nvme", network_gbps=Decimal(5)
    )
    return tuple(
        Tier(
            name=spec.name,
            hardware=defaults.get(spec.name, generic),
            baseline_bps=int(spec.baseline_pct * 100),
            exchange_rate=int(spec.exchange_rate * 1_000_000),
        )
        for spec in scenario.tiers
    )


def _trace_steps(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int, pd.Timestamp]:
    """Return the utilisation, each row's 5-minute step, the whole hours and the start."""
    missing = [c for c in ("unique_id", "ds", "y") if c not in frame.columns]
    if missing:
        raise TraceError(f"missing columns {missing}")
    if frame.empty:
        raise TraceError("the frame has no rows")
    y = frame["y"].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(y) | (y < 0) | (y > 100)
    if bad.any():
        where = frame.loc[bad, "unique_id"].iloc[0]
        raise TraceError(
            f"utilisation of {where!r} is {y[bad][0]!r}; it must be a finite percentage 0..100"
        )
    try:
        ds = pd.DatetimeIndex(pd.to_datetime(frame["ds"], utc=True))
    except (TypeError, ValueError) as exc:
        raise TraceError(f"unreadable timestamps: {exc}") from exc
    t0 = ds.min()
    offset = (ds - t0).to_numpy(dtype="timedelta64[ns]").astype(np.int64)
    step_ns = int(_STEP.value)
    if (offset % step_ns).any():
        raise TraceError("timestamps are not on one 5-minute grid")
    steps = offset // step_ns
    hours = (int(steps.max()) + 1) // STEPS_PER_HOUR
    if hours == 0:
        raise TraceError("the trace is shorter than one hour")
    return y, steps, hours, t0


def _host_vcpus(tier_vcpus: np.ndarray, per_vcpu: Decimal) -> np.ndarray:
    """Return each tier's physical vCPUs: its instances' vCPUs times the ratio, at least 1."""
    return np.array(
        [
            max(1, int((Decimal(int(v)) * per_vcpu).to_integral_value(ROUND_FLOOR))) if v else 0
            for v in tier_vcpus
        ],
        dtype=np.int64,
    )


def _utilisation(
    order: list[str], ids: np.ndarray, y: np.ndarray, steps: np.ndarray, hours: int
) -> np.ndarray:
    """Return ``(instances, steps)`` utilisation, rows in ``order``, whole hours only.

    Raises
    ------
    TraceError
        If an instance has two readings for one interval.
    """
    total = int(steps.max()) + 1
    row_of = {iid: r for r, iid in enumerate(order)}
    rows = np.fromiter((row_of[i] for i in ids), dtype=np.int64, count=len(ids))
    counts = np.bincount(rows * total + steps, minlength=len(order) * total)
    if (counts > 1).any():
        raise TraceError("an instance has two readings for the same 5-minute interval")
    utilisation = np.zeros((len(order), total), dtype=np.float64)
    utilisation[rows, steps] = y
    return utilisation[:, : hours * STEPS_PER_HOUR]


def _without_empty_tiers(
    present: np.ndarray,
    tier_of: np.ndarray,
    names: tuple[str, ...],
    tiers: tuple[Tier, ...],
    host_vcpus: np.ndarray,
) -> tuple[np.ndarray, tuple[str, ...], tuple[Tier, ...], np.ndarray]:
    # Tiers without instances are left out of the replay.
    keep = np.flatnonzero(present)
    remap = -np.ones(len(names), dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    return (
        remap[tier_of],
        tuple(names[k] for k in keep),
        tuple(tiers[k] for k in keep),
        host_vcpus[keep],
    )


def prepare_fleet(frame: pd.DataFrame, scenario: Scenario) -> ReplayFleet:
    """Turn a telemetry frame (the frame contract, 5-minute steps) into a replayable fleet.

    Intervals missing from an instance's series count as no demand; a trailing
    partial hour is left out.

    Raises
    ------
    TraceError
        If a column is missing, the frame is empty or shorter than an hour, the
        timestamps are not on one 5-minute grid, an interval repeats, or a
        utilisation is NaN, infinite or outside 0..100.
    """
    y, steps, hours, t0 = _trace_steps(frame)
    ids = frame["unique_id"].astype(str).to_numpy()
    tier_by_id = assign_fleet(list(pd.unique(ids)), scenario)
    names = tuple(t.name for t in scenario.tiers)
    order = sorted(tier_by_id, key=lambda i: (names.index(tier_by_id[i]), i))
    value = scenario.owner_values.of(order, [tier_by_id[i] for i in order])
    utilisation = _utilisation(order, ids, y, steps, hours)
    n = len(order)
    tier_of = np.array([names.index(tier_by_id[i]) for i in order], dtype=np.int64)
    tiers = _tiers(scenario)
    vcpus = np.full(n, scenario.vcpus, dtype=np.int64)
    # what the live accrual books of the same readings (exact, rounded half up)
    demand = interval_demand(vcpus[:, None], cpu_micro_of(utilisation), STEP_SECONDS)
    baseline = np.array([t.baseline_bps for t in tiers], dtype=np.int64)[tier_of]
    earned = vcpus * baseline * STEP_SECONDS // 600
    cap = np.array([tiers[t].balance_cap(int(v)) for t, v in zip(tier_of, vcpus, strict=True)])
    share = scenario.starting_balance_share
    start_balance = np.array(
        [int((Decimal(int(c)) * share).to_integral_value(ROUND_FLOOR)) for c in cap], dtype=np.int64
    )
    tier_vcpus = np.bincount(tier_of, weights=vcpus, minlength=len(names)).astype(np.int64)
    host_vcpus = _host_vcpus(tier_vcpus, scenario.physical_vcpus_per_vcpu)
    present = tier_vcpus > 0
    if not present.all():
        tier_of, names, tiers, host_vcpus = _without_empty_tiers(
            present, tier_of, names, tiers, host_vcpus
        )
    starts = np.searchsorted(tier_of, np.arange(len(names)))
    capacity = host_vcpus * STEP_SECONDS // 60 * MILLI_PER_CREDIT
    return ReplayFleet(
        ids=np.asarray(order, dtype=object),
        tier_names=names,
        tier_of=tier_of,
        starts=starts,
        demand=demand,
        utilisation=utilisation,
        vcpus=vcpus,
        earned=earned,
        cap=cap.astype(np.int64),
        start_balance=start_balance,
        host_vcpus=host_vcpus,
        capacity=capacity.astype(np.int64),
        start=t0.to_pydatetime(),
        tiers=tiers,
        value=value,
    )
